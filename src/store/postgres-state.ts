// The StateStore of the PostgreSQL store: one row per key in the `state` table, shared by replicas.
import type pg from 'pg';
import type { StateStore, UpdateFn } from './types.js';
import { inTransaction } from './postgres-tx.js';

/** Attempts of one update() before giving up; only a racing first insert of the same key retries. */
const UPDATE_ATTEMPTS = 20;

/** Another process inserted the first row of a key meanwhile: that attempt is rolled back and retried. */
class FirstWriteRaced extends Error {}

export class PostgresStateStore implements StateStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly table: string,
  ) {}

  async get(key: string): Promise<string | undefined> {
    const res = await this.pool.query<{ value: string }>(`SELECT value FROM ${this.table} WHERE key = $1`, [key]);
    return res.rows[0]?.value;
  }

  async getOrCreate(key: string, create: () => Promise<string> | string): Promise<string> {
    const existing = await this.get(key);
    if (existing !== undefined) return existing;
    const value = await create();
    // First writer wins: a replica that lost the race reads the winner's value instead of its own.
    const inserted = await this.pool.query<{ value: string }>(
      `INSERT INTO ${this.table} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING value`,
      [key, value],
    );
    if (inserted.rows[0]) return inserted.rows[0].value;
    const winner = await this.get(key);
    if (winner === undefined) throw new Error(`state ${key}: value was deleted while being created`);
    return winner;
  }

  /**
   * Row lock (SELECT … FOR UPDATE) held from the read to the write, so concurrent updates of one key
   * from any number of processes serialise. A missing row cannot be locked: two first inserts race,
   * the loser's INSERT … DO NOTHING writes nothing and that attempt starts over.
   */
  async update(key: string, fn: UpdateFn): Promise<string | undefined> {
    for (let attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
      try {
        return await inTransaction(this.pool, async (c) => {
          const res = await c.query<{ value: string }>(`SELECT value FROM ${this.table} WHERE key = $1 FOR UPDATE`, [key]);
          const old = res.rows[0]?.value;
          const next = fn(old);
          if (next === undefined) {
            if (old !== undefined) await c.query(`DELETE FROM ${this.table} WHERE key = $1`, [key]);
          } else if (old !== undefined) {
            await c.query(`UPDATE ${this.table} SET value = $2, updated_at = now() WHERE key = $1`, [key, next]);
          } else {
            const ins = await c.query(`INSERT INTO ${this.table} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, [key, next]);
            if ((ins.rowCount ?? 0) === 0) throw new FirstWriteRaced();
          }
          return next;
        });
      } catch (err) {
        if (!(err instanceof FirstWriteRaced)) throw err;
      }
    }
    throw new Error(`state ${key}: update kept racing with concurrent first writes, gave up after ${UPDATE_ATTEMPTS} attempts`);
  }

  async put(key: string, value: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.table} (key, value) VALUES ($1, $2)
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
      [key, value],
    );
  }

  async delete(key: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${this.table} WHERE key = $1`, [key]);
  }

  async keys(): Promise<string[]> {
    const res = await this.pool.query<{ key: string }>(`SELECT key FROM ${this.table} ORDER BY key`);
    return res.rows.map((r) => r.key);
  }
}
