// In-process StateStore: for tests, `--auth none` demos and anything that needs no durability.
import type { StateStore, UpdateFn } from './types.js';

export class MemoryStateStore implements StateStore {
  private readonly values = new Map<string, string>();
  /** Creations in flight, so concurrent getOrCreate callers share one create() (first writer wins). */
  private readonly creating = new Map<string, Promise<string>>();

  async get(key: string): Promise<string | undefined> {
    return this.values.get(key);
  }

  getOrCreate(key: string, create: () => Promise<string> | string): Promise<string> {
    const existing = this.values.get(key);
    if (existing !== undefined) return Promise.resolve(existing);
    const pending = this.creating.get(key);
    if (pending) return pending;
    const p = (async () => {
      try {
        const value = await create();
        // A put() may have landed while create() ran; the stored value wins, as in a real store.
        const raced = this.values.get(key);
        if (raced !== undefined) return raced;
        this.values.set(key, value);
        return value;
      } finally {
        this.creating.delete(key);
      }
    })();
    this.creating.set(key, p);
    return p;
  }

  /** Read and write happen in one synchronous step, so nothing can land in between. */
  async update(key: string, fn: UpdateFn): Promise<string | undefined> {
    const next = fn(this.values.get(key));
    if (next === undefined) this.values.delete(key);
    else this.values.set(key, next);
    return next;
  }

  async put(key: string, value: string): Promise<void> {
    this.values.set(key, value);
  }

  async delete(key: string): Promise<void> {
    this.values.delete(key);
  }

  async keys(): Promise<string[]> {
    return [...this.values.keys()];
  }
}
