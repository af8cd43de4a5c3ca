// A state value past the file state's 64 MiB bound is refused by the PostgreSQL state too, with the
// key and its size, after a small query: a co-tenant's huge row is never fetched (every second, by
// the revocation refresh of every replica).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REVOKED_STATE_KEY, TokenAuthority } from '../../src/server/tokens.js';
import { adminQuery, openFreshStore } from './helpers.js';

const HUGE = 64 * 1024 * 1024 + 1;

test('a state value larger than 64 MiB is refused by get and update, naming the key and its size', async (t) => {
  const { store, schema } = await openFreshStore(t);
  await store.state.put('big', 'x');
  await store.state.put('small', 'ok');
  await adminQuery(`UPDATE "${schema}".state SET value = repeat('y', $1) WHERE key = 'big'`, [HUGE]);
  const named = (err: unknown): boolean => {
    assert.match((err as Error).message, /state key big/);
    assert.match((err as Error).message, new RegExp(`${HUGE} bytes`));
    assert.match((err as Error).message, /64 MiB/);
    return true;
  };
  await assert.rejects(store.state.get('big'), named);
  await assert.rejects(store.state.getOrCreate('big', () => assert.fail('must not create')), named);
  await assert.rejects(store.state.update('big', () => 'replaced'), named);
  const left = await adminQuery<{ n: number }>(`SELECT octet_length(value) AS n FROM "${schema}".state WHERE key = 'big'`);
  assert.equal(left.rows[0]!.n, HUGE, 'a refused update wrote nothing');
  assert.equal(await store.state.get('small'), 'ok', 'other keys are still read');
  await store.state.put('big', 'fine again');
  assert.equal(await store.state.get('big'), 'fine again');
});

test('a revocation list larger than 64 MiB fails the refresh and the last list read stays in force', async (t) => {
  const { store, schema } = await openFreshStore(t);
  const ta = await TokenAuthority.open(store.state);
  await ta.revoke('jti-1');
  assert.ok(ta.isRevoked('jti-1'));
  await adminQuery(`UPDATE "${schema}".state SET value = '[' || repeat(' ', $1) || ']' WHERE key = $2`, [HUGE, REVOKED_STATE_KEY]);
  await assert.rejects(ta.refreshRevocations(), new RegExp(`state key ${REVOKED_STATE_KEY}.*bytes`));
  assert.ok(ta.isRevoked('jti-1'), 'the revoked token stays revoked');
  await assert.rejects(TokenAuthority.open(store.state), /larger than 64 MiB/, 'a fresh replica refuses to start on it');
});

test('a large state value read again unchanged (the revocation list, every second on every replica) is not sent again; a change by plain SQL, a deletion and the bound are still seen', async (t) => {
  const { store, schema } = await openFreshStore(t);
  const pool = (store.state as unknown as { pool: { query: (...a: unknown[]) => Promise<{ rows: { value?: string | null }[] }> } }).pool;
  const query = pool.query.bind(pool);
  let textSent = 0;
  pool.query = async (...a: unknown[]) => {
    const res = await query(...a);
    for (const row of res.rows) textSent += typeof row.value === 'string' ? row.value.length : 0;
    return res;
  };
  const big = 'r'.repeat(1024 * 1024);
  await adminQuery(`INSERT INTO "${schema}".state (key, value) VALUES ('auth/revoked', $1)`, [big]);
  assert.equal(await store.state.get('auth/revoked'), big);
  const first = textSent;
  assert.equal(first, big.length);
  for (let i = 0; i < 5; i++) assert.equal(await store.state.get('auth/revoked'), big);
  assert.equal(textSent, first, 'unchanged: not sent again');
  await adminQuery(`UPDATE "${schema}".state SET value = $1 WHERE key = 'auth/revoked'`, [`${big}s`]);
  assert.equal(await store.state.get('auth/revoked'), `${big}s`);
  await adminQuery(`UPDATE "${schema}".state SET value = repeat('y', $1) WHERE key = 'auth/revoked'`, [HUGE]);
  await assert.rejects(store.state.get('auth/revoked'), /larger than 64 MiB/);
  await adminQuery(`DELETE FROM "${schema}".state WHERE key = 'auth/revoked'`);
  assert.equal(await store.state.get('auth/revoked'), undefined);
  await adminQuery(`INSERT INTO "${schema}".state (key, value) VALUES ('auth/revoked', $1)`, [big]);
  assert.equal(await store.state.get('auth/revoked'), big, 'inserted again: read');
});
