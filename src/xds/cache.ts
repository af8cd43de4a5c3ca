// Versioned, already-encoded secrets keyed by a cache key, with key-indexed watches.
// Notifications are batched: every change is recorded first, and watchers are called only after
// the mutation is complete, each once per batch with all of its changed keys. So a watcher may
// read or write the cache from its callback without seeing half-applied state or recursing
// (go-control-plane#503/#875), and a cancelled watch leaves nothing behind (#597/#882).
import type { EncodedResource } from './resource.js';

export type WatchCallback = (changedKeys: string[]) => void;

export interface SecretCacheOptions {
  /**
   * 'microtask' (default): a batch is delivered in a microtask after its first change, so all
   * synchronous updates of one snapshot coalesce. 'manual': only `flush()` delivers.
   */
  readonly delivery?: 'microtask' | 'manual';
  /**
   * With microtask delivery, at most this many watchers are called per event-loop turn (500);
   * the rest follow after the loop has done I/O. Each watcher is still called once per batch.
   */
  readonly chunk?: number;
  /** Called with whatever a watcher throws; the other watchers are still notified. */
  readonly onError?: (err: unknown) => void;
}

interface Watch {
  /** Deduplicated; an array, not a Set: a stream watches a handful of keys for days (memory). */
  keys: readonly string[];
  readonly onChange: WatchCallback;
  active: boolean;
  /** The delivery round its pending keys were last added in (see collectInto). */
  round: number;
  /** Its pending keys, while they were carried over from an earlier round and may come again. */
  seen?: Set<string>;
}

/** Rounds one flush delivers before yielding, so watchers that keep changing keys cannot starve the loop. */
const MAX_ROUNDS_PER_FLUSH = 64;

export class SecretCache {
  readonly #entries = new Map<string, EncodedResource>();
  /** Watchers per key: most keys (a proxy's own) have one watcher, held without a Set. */
  readonly #index = new Map<string, Watch | Set<Watch>>();
  #pending = new Set<string>();
  /** Watchers of a large batch not called yet (delivered in chunks, see `chunk`). */
  #deferred = new Map<Watch, string[]>();
  readonly #chunk: number;
  #scheduled = false;
  #flushing = false;
  #watches = 0;
  #round = 0;
  readonly #delivery: 'microtask' | 'manual';
  readonly #onError: (err: unknown) => void;

  constructor(opts: SecretCacheOptions = {}) {
    this.#delivery = opts.delivery ?? 'microtask';
    this.#chunk = opts.chunk ?? 500;
    this.#onError = opts.onError ?? ((err) => process.emitWarning(`SecretCache watcher threw: ${String(err)}`));
  }

  get(key: string): EncodedResource | undefined {
    return this.#entries.get(key);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  keys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /**
   * Stores (or, with `undefined`, deletes) the resource under `key`. A resource with the same name
   * and version as the stored one is a no-op: versions identify content, and keeping the stored
   * object keeps its encoded bytes shared. Returns whether anything changed.
   */
  set(key: string, resource: EncodedResource | undefined): boolean {
    const old = this.#entries.get(key);
    if (resource === undefined) {
      if (old === undefined) return false;
      this.#entries.delete(key);
    } else {
      if (old !== undefined && old.version === resource.version && old.name === resource.name) return false;
      this.#entries.set(key, resource);
    }
    this.#markChanged(key);
    return true;
  }

  /** Applies many updates as one batch (they coalesce anyway; this is a convenience). */
  setMany(entries: Iterable<readonly [string, EncodedResource | undefined]>): number {
    let n = 0;
    for (const [key, r] of entries) if (this.set(key, r)) n++;
    return n;
  }

  /**
   * Notifies watchers of `key` without storing anything: for keys that stand for a set rather
   * than a resource (e.g. "the trust domains of mesh M changed", which wildcard streams watch).
   */
  touch(key: string): void {
    this.#markChanged(key);
  }

  /**
   * Watches `keys`; returns the cancel function (idempotent). The callback never runs after cancel.
   * A list without duplicates is kept as it is (a stream watches a few keys for days: no copy), so
   * the caller must not change it afterwards.
   */
  watch(keys: readonly string[], onChange: WatchCallback): () => void {
    const w: Watch = { keys: hasDuplicates(keys) ? [...new Set(keys)] : keys, onChange, active: true, round: 0 };
    for (const k of w.keys) {
      const held = this.#index.get(k);
      if (held === undefined) this.#index.set(k, w);
      else if (held instanceof Set) held.add(w);
      else this.#index.set(k, new Set([held, w]));
    }
    this.#watches++;
    return () => {
      if (!w.active) return;
      w.active = false;
      this.#watches--;
      for (const k of w.keys) {
        const held = this.#index.get(k);
        if (held === w) this.#index.delete(k);
        else if (held instanceof Set) {
          held.delete(w);
          if (held.size === 1) this.#index.set(k, held.values().next().value!);
        }
      }
      w.keys = [];
    };
  }

  /** Delivers pending notifications now. A call from inside a watcher returns at once: the running flush continues. */
  flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (let round = 0; this.#pending.size > 0 || this.#deferred.size > 0; round++) {
        if (round === MAX_ROUNDS_PER_FLUSH) {
          if (this.#delivery === 'microtask') this.#schedule(true);
          break;
        }
        if (this.#deliverOnce()) {
          // Part of a large batch is left: let the event loop write what the watchers sent
          // (and read ACKs) before the next chunk, instead of one long synchronous burst.
          this.#schedule(true);
          break;
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Active watches (for metrics and leak tests). */
  get watchCount(): number {
    return this.#watches;
  }

  /** Keys with at least one watcher; 0 once every watch is cancelled. */
  get indexedKeyCount(): number {
    return this.#index.size;
  }

  /** Changed keys and deferred watchers not yet delivered. */
  get pendingCount(): number {
    return this.#pending.size + this.#deferred.size;
  }

  #markChanged(key: string): void {
    this.#pending.add(key);
    if (this.#delivery === 'microtask' && !this.#flushing) this.#schedule(false);
  }

  #schedule(yieldToIo: boolean): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    if (yieldToIo) setImmediate(this.#run);
    else queueMicrotask(this.#run);
  }

  /** The scheduled flush, made once (a closure per schedule would be one more allocation per change). */
  readonly #run = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  /**
   * Delivers one batch; returns true when some watchers were deferred to a later chunk. The
   * deferred rest stays in the same map (delivered entries are deleted from its front), so a
   * fan-out to N watchers in chunks costs O(N), not O(N²/chunk) copies of what is left.
   */
  #deliverOnce(): boolean {
    const changed = this.#pending;
    this.#pending = new Set();
    // Collect first, call afterwards: each watcher once, with all of its changed keys.
    const batch = this.#deferred;
    const round = ++this.#round;
    for (const key of changed) {
      const held = this.#index.get(key);
      if (held === undefined) continue;
      if (held instanceof Set) for (const w of held) collectInto(batch, w, key, round);
      else collectInto(batch, held, key, round);
    }
    const limit = this.#delivery === 'microtask' ? this.#chunk : Infinity;
    let delivered = 0;
    for (const [w, keys] of batch) {
      if (delivered >= limit) break;
      batch.delete(w);
      w.seen = undefined;
      if (!w.active) continue; // cancelled by an earlier callback in this batch
      delivered++;
      try {
        w.onChange(keys);
      } catch (err) {
        this.#onError(err);
      }
    }
    return batch.size > 0;
  }
}

/**
 * Adds `key` to what `w` will be told about in this batch. A round's changed keys are distinct, so
 * only keys carried over from an earlier round (a deferred watcher) can come again: those are
 * looked up in a Set. A search of the list for each key cost O(keys²) per watcher: 78 ms for a
 * wildcard stream of a mesh with 4,000 trust domains when all of them changed.
 */
function collectInto(batch: Map<Watch, string[]>, w: Watch, key: string, round: number): void {
  const keys = batch.get(w);
  if (!keys) {
    batch.set(w, [key]);
    w.round = round;
    return;
  }
  if (w.round !== round) {
    w.round = round;
    w.seen = new Set(keys);
  }
  if (w.seen) {
    if (w.seen.has(key)) return;
    w.seen.add(key);
  }
  keys.push(key);
}

function hasDuplicates(keys: readonly string[]): boolean {
  if (keys.length > 16) return new Set(keys).size !== keys.length;
  for (let i = 1; i < keys.length; i++) if (keys.indexOf(keys[i]!, 0) < i) return true;
  return false;
}
