// Any role that can connect may NOTIFY the change channel. While reads of the resources table fail
// (another session holds it locked), the rows forged notices name must not pile up in memory
// without bound: past what is read by key, they are one full read owed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { adminQuery, dataplaneYaml, PG_URL, sleep, waitForSnapshot, withStores } from './helpers.js';
import { CHANGES_CHANNEL } from '../../src/store/postgres-schema.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMb = () => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

test('forged notices naming 30,000 distinct rows of 4 KB names while the table is locked: memory stays bounded, and once the lock is gone the rows are read and a real change arrives', { timeout: 120_000 }, async () => {
  await withStores(1, async ([store], schema) => {
    const locker = new pg.Client({ connectionString: PG_URL });
    const flooder = new pg.Client({ connectionString: PG_URL });
    await locker.connect();
    await flooder.connect();
    try {
      const before = heapMb();
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".resources IN ACCESS EXCLUSIVE MODE`);
      for (let batch = 0; batch < 30; batch++) {
        await flooder.query(
          `SELECT pg_notify($1, json_build_object('schema', $2::text, 'kind', 'Dataplane', 'mesh', 'default', 'namespace', '', 'name', 'forged-' || $3::int || '-' || g || '-' || repeat('x', 4000))::text)
           FROM generate_series(1, 1000) g`,
          [CHANGES_CHANNEL, schema, batch],
        );
      }
      // Every notice has been delivered once a notice sent after them is (one channel, in order).
      await flooder.query(`SELECT pg_notify($1, $2)`, [CHANGES_CHANNEL, JSON.stringify({ schema, kind: 'Dataplane', mesh: 'default', namespace: '', name: 'last' })]);
      await sleep(2000);
      const grown = heapMb() - before;
      // 30,000 names of 4 KB held until they can be read are 120 MB.
      assert.ok(grown < 40, `heap grew by ${grown.toFixed(0)} MB while the table was locked`);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      await flooder.end();
    }
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-1', $1)`, [dataplaneYaml('dp-1', 'web')]);
    await waitForSnapshot(store!, (x) => x.resources.has('Dataplane/default//dp-1'), 15_000);
    for (const until = Date.now() + 10_000; !store!.health().ok && Date.now() < until; ) await sleep(100);
    assert.equal(store!.health().ok, true, store!.health().detail);
  }, { queryTimeoutMs: 1000 });
});
