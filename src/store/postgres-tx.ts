import type pg from 'pg';

/** Runs `fn` in one transaction on a pooled connection: COMMIT on success, ROLLBACK on any throw. */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch((e: Error) => {
      broken = e; // the connection itself is gone: do not return it to the pool
    });
    throw err;
  } finally {
    c.release(broken);
  }
}
