// The StateStore of the PostgreSQL store: one row per key in the `state` table, shared by replicas.
import type pg from 'pg';
import type { StateStore, UpdateFn } from './types.js';
import { inTransaction } from './postgres-tx.js';

/** Attempts of one update() before giving up; only a racing first insert of the same key retries. */
const UPDATE_ATTEMPTS = 20;

/** Another process inserted the first row of a key meanwhile: that attempt is rolled back and retried. */
class FirstWriteRaced extends Error {}

/** The file state's bound (file-state.ts): a state value (a CA, the revocation list) is far smaller. */
const MAX_STATE_VALUE_BYTES = 64 * 1024 * 1024;

/**
 * Value column that is NULL past the bound, with its size (octet_length reads the stored size, not
 * the value): a huge row, read every second by the revocation refresh, costs a small query.
 */
const BOUNDED_VALUE = `octet_length(value) AS bytes, CASE WHEN octet_length(value) <= ${MAX_STATE_VALUE_BYTES} THEN value END AS value`;

interface BoundedRow {
  bytes: number;
  value: string | null;
}

/** The row's value, or an error naming the key and the size when it is past the bound. */
function boundedValue(key: string, row: BoundedRow | undefined): string | undefined {
  if (row === undefined) return undefined;
  if (row.value === null) {
    throw new Error(`state key ${key} is larger than 64 MiB (${row.bytes} bytes): not read`);
  }
  return row.value;
}

/**
 * Values at least this large are kept with their row version (`xmin`, new with every write of the
 * row) and not sent again while it is unchanged. The revocation list is read every second by
 * every replica: at 60 MB (one plain-SQL statement away) each read cost ~200 ms of the main thread.
 */
const REREAD_BY_VERSION_BYTES = 64 * 1024;

export class PostgresStateStore implements StateStore {
  private readonly large = new Map<string, { version: string; value: string }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly table: string,
  ) {}

  async get(key: string): Promise<string | undefined> {
    const cached = this.large.get(key);
    const res = await this.pool.query<BoundedRow & { version: string }>(
      `SELECT xmin::text AS version, octet_length(value) AS bytes,
         CASE WHEN xmin::text = $2 THEN NULL WHEN octet_length(value) <= ${MAX_STATE_VALUE_BYTES} THEN value END AS value
       FROM ${this.table} WHERE key = $1`,
      [key, cached?.version ?? null],
    );
    const row = res.rows[0];
    if (cached && row?.version === cached.version) return cached.value;
    this.large.delete(key);
    const value = boundedValue(key, row);
    if (value !== undefined && row!.bytes >= REREAD_BY_VERSION_BYTES) this.large.set(key, { version: row!.version, value });
    return value;
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
          const res = await c.query<BoundedRow>(`SELECT ${BOUNDED_VALUE} FROM ${this.table} WHERE key = $1 FOR UPDATE`, [key]);
          const old = boundedValue(key, res.rows[0]);
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
