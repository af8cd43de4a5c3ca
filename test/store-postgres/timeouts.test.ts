// Every query has a timeout (SPEC §6): a stalled table fails queries within the limit instead of
// holding them, the last snapshot stays, and changes flow again once the stall ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres.js';
import { dataplaneYaml, PG_URL, waitForSnapshot, withStores } from './helpers.js';

test('with the resources table locked, queries fail within the timeout, the snapshot stays, and changes arrive after the lock is released', async () => {
  await withStores(2, async ([a, b], schema) => {
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
    const kept = await waitForSnapshot(b!, (s) => s.resources.has('Dataplane/default//dp-1'), 5000);
    const locker = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".resources IN ACCESS EXCLUSIVE MODE`);
      const t0 = Date.now();
      await assert.rejects(b!.list(), /statement timeout|canceling statement|timeout/i);
      const took = Date.now() - t0;
      assert.ok(took >= 900 && took < 3000, `the query gave up after ${took} ms (limit 1 s)`);
      const write = a!.apply(dataplaneYaml('dp-2', 'web'), 'b.yaml');
      await assert.rejects(write, /timeout|canceling statement/i);
      assert.equal(b!.snapshot, kept, 'the last snapshot is kept');
      assert.equal(b!.health().ok, true, 'the change feed itself is still live');
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    assert.deepEqual(await a!.apply(dataplaneYaml('dp-3', 'web'), 'c.yaml'), []);
    await waitForSnapshot(b!, (s) => s.resources.has('Dataplane/default//dp-3'), 5000);
  }, { queryTimeoutMs: 1000 });
});

test('a read-only open (get, inspect, export-trust) of a schema whose version table another session holds locked fails within the query timeout, naming the stall, instead of waiting for ever', async () => {
  await withStores(1, async (_stores, schema) => {
    const locker = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".schema_version IN ACCESS EXCLUSIVE MODE`);
      const t0 = Date.now();
      const opened = PostgresStore.open(PG_URL, { schema, readOnly: true, queryTimeoutMs: 1000 });
      const hung = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 8000).unref());
      const outcome = await Promise.race([opened.then((s) => s.close().then(() => 'opened'), (e: Error) => e), hung]);
      assert.ok(outcome instanceof Error, `expected an error, got ${String(outcome)}`);
      assert.match(outcome.message, new RegExp(`postgres schema "${schema}": the database gave up on a statement at the time limit .*lock on the store's tables`));
      const took = Date.now() - t0;
      assert.ok(took < 3000, `gave up after ${took} ms (limit 1 s)`);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
  });
});
