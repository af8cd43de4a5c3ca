// An immutable map for store snapshots: a new snapshot after a change of a few resources shares
// the previous one's entries instead of copying all of them (10,000 Dataplanes and 20 changes a
// second made the copies, and the full diffs behind them, a third of the server's churn CPU).

const REMOVED: unique symbol = Symbol('removed');
type Slot<V> = V | typeof REMOVED;

/** The delta is folded into a new base once it holds this many keys, or a quarter of the map. */
const MIN_COMPACT = 256;

let nextId = 1;

export class LayeredMap<V> implements ReadonlyMap<string, V> {
  /** Unique per map: `changedSince` recognises the map this one was made from. */
  readonly id = nextId++;

  private constructor(
    private readonly base: ReadonlyMap<string, V>,
    /** Keys set or removed since `base`. */
    private readonly delta: ReadonlyMap<string, Slot<V>>,
    readonly size: number,
    /** The map `with` was called on, and the keys that call changed. */
    private readonly parentId: number,
    private readonly changed: readonly string[],
  ) {}

  static from<V>(entries: Iterable<readonly [string, V]>): LayeredMap<V> {
    const base = new Map(entries);
    return new LayeredMap(base, new Map(), base.size, 0, []);
  }

  /** A new map with `changes` applied (an undefined value removes the key); this one stays as it is. */
  with(changes: ReadonlyMap<string, V | undefined>): LayeredMap<V> {
    const delta = new Map(this.delta);
    let size = this.size;
    const changed: string[] = [];
    for (const [k, v] of changes) {
      const had = this.has(k);
      if (v === undefined) {
        if (!had) continue;
        size--;
        if (this.base.has(k)) delta.set(k, REMOVED);
        else delta.delete(k);
      } else {
        if (!had) size++;
        else if (this.get(k) === v) continue;
        delta.set(k, v);
      }
      changed.push(k);
    }
    if (changed.length === 0) return this;
    if (delta.size >= Math.max(MIN_COMPACT, size / 4)) {
      const base = new Map<string, V>();
      for (const [k, v] of this.base) if (!delta.has(k)) base.set(k, v);
      for (const [k, v] of delta) if (v !== REMOVED) base.set(k, v);
      return new LayeredMap(base, new Map(), size, this.id, changed);
    }
    return new LayeredMap(this.base, delta, size, this.id, changed);
  }

  /**
   * The keys whose values differ from `previous`, when this map was made from it by one `with`;
   * undefined otherwise (the caller compares in full).
   */
  changedSince(previous: ReadonlyMap<string, unknown> | undefined): readonly string[] | undefined {
    return previous instanceof LayeredMap ? this.changedSinceId(previous.id) : undefined;
  }

  /** As `changedSince`, for a map known by its id only (a cache need not keep the map alive). */
  changedSinceId(previousId: number): readonly string[] | undefined {
    return previousId === this.parentId ? this.changed : undefined;
  }

  get(key: string): V | undefined {
    const v = this.delta.get(key);
    if (v !== undefined) return v === REMOVED ? undefined : v;
    return this.base.get(key);
  }

  has(key: string): boolean {
    const v = this.delta.get(key);
    if (v !== undefined) return v !== REMOVED;
    return this.base.has(key);
  }

  *entries(): MapIterator<[string, V]> {
    for (const [k, v] of this.base) if (!this.delta.has(k)) yield [k, v];
    for (const [k, v] of this.delta) if (v !== REMOVED) yield [k, v];
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  /** The fast way through every entry (the iterators above are generators: several times slower). */
  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    const delta = this.delta;
    this.base.forEach((v, k) => {
      if (!delta.has(k)) fn.call(thisArg, v, k, this);
    });
    delta.forEach((v, k) => {
      if (v !== REMOVED) fn.call(thisArg, v, k, this);
    });
  }
}
