// The PostgreSQL store against a real PostgreSQL server (SPEC §6): each test uses its own schema.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resourceKey, type MeshTrust, type SecretResource } from '../../src/api/types.js';
import { PostgresStore, type StoreLogger } from '../../src/store/postgres.js';
import {
  adminQuery, dataplaneYaml, dropSchema, k8sDataplaneYaml, makeCaPem, meshTrustYaml, PG_URL, sleep, testSchema,
  waitForSnapshot, withStores,
} from './helpers.js';

const MT_KEY = 'MeshTrust/default//trust-a';
const DP1_KEY = 'Dataplane/default//dp-1';
const DP2_KEY = 'Dataplane/default//dp-2';

let caPem = '';
let caPem2 = '';
before(() => {
  caPem = makeCaPem('ca-one');
  caPem2 = makeCaPem('ca-two');
});

describe('PostgresStore', () => {
  test('apply stores every document and the next snapshot holds them, CA bundle intact', async () => {
    await withStores(1, async ([store], schema) => {
      const first = await waitForSnapshot(store!, () => true);
      assert.equal(first.resources.size, 0, 'an empty schema starts with an empty snapshot');

      const text = [meshTrustYaml('trust-a', 'default.zone-a.mesh.local', caPem), dataplaneYaml('dp-1', 'web'),
        k8sDataplaneYaml('dp-k', 'apps')].join('---\n');
      const errors = await store!.apply(text, 'mesh.yaml');
      assert.deepEqual(errors, []);

      const snap = await waitForSnapshot(store!, (s) => s.resources.has(MT_KEY));
      assert.ok(snap.revision > first.revision, 'revision increases per publish');
      assert.deepEqual([...snap.resources.keys()].sort(), [DP1_KEY, 'Dataplane/default/apps/dp-k', MT_KEY].sort());
      const mt = snap.resources.get(MT_KEY) as MeshTrust;
      assert.equal(mt.spec.trustDomain, 'default.zone-a.mesh.local');
      assert.equal(mt.spec.caBundles[0]?.pem.value.trim(), caPem);
      assert.deepEqual(snap.resources.get(DP1_KEY)?.labels, { app: 'web' });
      assert.equal(snap.resources.get('Dataplane/default/apps/dp-k')?.labels['k8s.kuma.io/service-account'], 'sa-dp-k');

      // The source column keeps each original document, not the whole file.
      const rows = await adminQuery<{ source: string; source_name: string }>(
        `SELECT source, source_name FROM "${schema}".resources WHERE name = 'dp-1'`,
      );
      assert.equal(rows.rows[0]?.source.trim(), dataplaneYaml('dp-1', 'web').trim());
      assert.equal(rows.rows[0]?.source_name, 'mesh.yaml');

      assert.deepEqual((await store!.list('Dataplane')).map((r) => r.name), ['dp-1', 'dp-k']);
    });
  });

  test('a freshly opened store loads what an earlier one stored (persistence, idempotent migrations)', async () => {
    const schema = testSchema();
    try {
      const a = await PostgresStore.open(PG_URL, { schema });
      await a.start();
      assert.deepEqual(await a.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
      await a.close();
      const b = await PostgresStore.open(`${PG_URL}?schema=${schema}`);
      try {
        assert.equal(b.schema, schema, 'schema may come from the URL');
        await b.start();
        const snap = b.snapshot;
        assert.equal(snap?.resources.get(DP1_KEY)?.labels.app, 'web');
      } finally {
        await b.close();
      }
    } finally {
      await dropSchema(schema);
    }
  });

  test('an invalid document returns errors naming the file and writes nothing, not even the valid documents', async () => {
    await withStores(1, async ([store], schema) => {
      const before = store!.snapshot!;
      const bad = `type: MeshTrust\nname: broken\nmesh: default\nspec:\n  trustDomain: x.local\n  caBundles: []\n`;
      const errors = await store!.apply([dataplaneYaml('dp-1', 'web'), bad].join('---\n'), 'bad.yaml');
      assert.ok(errors.length > 0, 'errors are returned');
      assert.equal(errors[0]?.file, 'bad.yaml');
      assert.equal(errors[0]?.document, 1);
      assert.match(errors[0]?.path ?? '', /caBundles/);
      const rows = await adminQuery(`SELECT 1 FROM "${schema}".resources`);
      assert.equal(rows.rowCount, 0, 'nothing was written');
      await sleep(150);
      assert.equal(store!.snapshot, before, 'no new snapshot was published');
    });
  });

  test('re-applying identical text publishes no new snapshot', async () => {
    await withStores(1, async ([store]) => {
      await store!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml');
      const snap = await waitForSnapshot(store!, (s) => s.resources.has(DP1_KEY));
      assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
      await sleep(200);
      assert.equal(store!.snapshot, snap);

      // A real change does publish, and unchanged resources keep their identity.
      await store!.apply(dataplaneYaml('dp-2', 'api'), 'b.yaml');
      const next = await waitForSnapshot(store!, (s) => s.resources.has(DP2_KEY));
      assert.equal(next.revision, snap.revision + 1);
      assert.equal(next.resources.get(DP1_KEY), snap.resources.get(DP1_KEY));
    });
  });

  test('a change applied through one replica reaches the other by its notification (the row read by key, not the table)', async () => {
    await withStores(2, async ([a, b]) => {
      const stats = { ...b!.feedStats };
      assert.deepEqual(await a!.apply(meshTrustYaml('trust-a', 'default.zone-a.mesh.local', caPem), 'mt.yaml'), []);
      const snap = await waitForSnapshot(b!, (s) => s.resources.has(MT_KEY));
      assert.equal(b!.feedStats.fullReloads, stats.fullReloads, 'no full read');
      assert.ok(b!.feedStats.keyedReads > stats.keyedReads, 'read by the key its notification named');
      assert.equal((snap.resources.get(MT_KEY) as MeshTrust).spec.caBundles[0]?.pem.value.trim(), caPem);

      // An update (a second CA) propagates too.
      const updated = meshTrustYaml('trust-a', 'default.zone-a.mesh.local', `${caPem}\n${caPem2}`);
      assert.deepEqual(await a!.apply(updated, 'mt.yaml'), []);
      const snap2 = await waitForSnapshot(
        b!,
        (s) => (s.resources.get(MT_KEY) as MeshTrust | undefined)?.spec.caBundles[0]?.pem.value.includes(caPem2) ?? false,
        1000,
      );
      assert.ok(snap2.revision > snap.revision);
    });
  });

  test('a notification for another schema does not make a replica publish', async () => {
    await withStores(1, async ([a]) => {
      await withStores(1, async ([other]) => {
        const before = a!.snapshot;
        await other!.apply(dataplaneYaml('dp-1', 'web'), 'x.yaml');
        await waitForSnapshot(other!, (s) => s.resources.has(DP1_KEY));
        await sleep(150);
        assert.equal(a!.snapshot, before);
        assert.equal(a!.snapshot?.resources.size, 0);
      });
    });
  });

  test('delete propagates to every replica and reports whether the resource existed', async () => {
    await withStores(2, async ([a, b]) => {
      await a!.apply([dataplaneYaml('dp-1', 'web'), dataplaneYaml('dp-2', 'api')].join('---\n'), 'dps.yaml');
      await waitForSnapshot(b!, (s) => s.resources.has(DP1_KEY) && s.resources.has(DP2_KEY));
      assert.equal(await b!.delete('Dataplane', 'default', '', 'dp-1'), true);
      assert.equal(await b!.delete('Dataplane', 'default', '', 'dp-1'), false);
      const snap = await waitForSnapshot(a!, (s) => !s.resources.has(DP1_KEY));
      assert.ok(snap.resources.has(DP2_KEY), 'other resources stay');
    });
  });

  test('getOrCreate raced by two replicas yields one value for both (one CA, not two)', async () => {
    await withStores(2, async ([a, b]) => {
      let creations = 0;
      const create = (v: string) => async () => {
        creations++;
        await sleep(30); // both replicas are inside create() at the same time
        return v;
      };
      const [va, vb] = await Promise.all([
        a!.state.getOrCreate('ca/default/mi-1', create('CA-from-a')),
        b!.state.getOrCreate('ca/default/mi-1', create('CA-from-b')),
      ]);
      assert.equal(creations, 2, 'both really raced');
      assert.equal(va, vb);
      assert.ok(va === 'CA-from-a' || va === 'CA-from-b');
      assert.equal(await a!.state.get('ca/default/mi-1'), va);
      // Once stored, create is not called again.
      assert.equal(await b!.state.getOrCreate('ca/default/mi-1', () => assert.fail('must not create')), va);

      await a!.state.put('k', 'v1');
      assert.equal(await b!.state.get('k'), 'v1');
      await b!.state.put('k', 'v2');
      assert.equal(await a!.state.get('k'), 'v2');
      await a!.state.delete('k');
      assert.equal(await b!.state.get('k'), undefined);
    });
  });

  test('losing the LISTEN connection keeps the last snapshot, then reconnects and catches up', async () => {
    const logged: string[] = [];
    const logger: StoreLogger = {
      info: (_o, msg) => logged.push(`info ${msg}`),
      warn: (_o, msg) => logged.push(`warn ${msg}`),
      error: (_o, msg) => logged.push(`error ${msg}`),
    };
    await withStores(2, async ([a, b]) => {
      await b!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml');
      const last = await waitForSnapshot(a!, (s) => s.resources.has(DP1_KEY));
      const pid = a!.listenerPid;
      assert.ok(pid);
      const killed = await adminQuery<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
      assert.equal(killed.rows[0]?.ok, true);
      await sleep(100);
      assert.equal(a!.listenerPid, undefined, 'the store noticed the loss');
      assert.equal(a!.snapshot, last, 'the last snapshot is kept');

      // Written while a cannot hear notifications: a must pick it up by reloading after reconnecting.
      await b!.apply(dataplaneYaml('dp-2', 'api'), 'b.yaml');
      const caught = await waitForSnapshot(a!, (s) => s.resources.has(DP2_KEY), 3000);
      assert.ok(caught.resources.has(DP1_KEY));
      assert.ok(a!.listenerPid && a!.listenerPid !== pid, 'a new LISTEN connection is up');

      // And notifications flow again on the new connection.
      await b!.apply(meshTrustYaml('trust-a', 'default.zone-a.mesh.local', caPem), 'mt.yaml');
      await waitForSnapshot(a!, (s) => s.resources.has(MT_KEY));
      assert.ok(logged.some((l) => l.startsWith('warn ') && l.includes('LISTEN connection lost')), logged.join('\n'));
      assert.ok(logged.some((l) => l.startsWith('info ') && l.includes('restored')), logged.join('\n'));
    }, { logger });
  });

  test('a row corrupted outside the store is reported and its last good version kept', async () => {
    await withStores(1, async ([store], schema) => {
      await store!.apply(meshTrustYaml('trust-a', 'default.zone-a.mesh.local', caPem), 'mt.yaml');
      const good = await waitForSnapshot(store!, (s) => s.resources.has(MT_KEY));
      await adminQuery(
        `UPDATE "${schema}".resources SET doc = jsonb_set(doc, '{spec,caBundles}', '"oops"') WHERE name = 'trust-a'`,
      );
      // No NOTIFY by hand: the table's trigger tells every replica about writes made with plain SQL.
      const snap = await waitForSnapshot(store!, (s) => s.errors.length > 0);
      assert.equal(snap.resources.get(MT_KEY), good.resources.get(MT_KEY), 'last good version kept');
      assert.match(snap.errors[0]?.file ?? '', new RegExp(`^postgres:${schema}\\.resources row MeshTrust/default//trust-a \\(applied from mt\\.yaml\\)$`));
      assert.equal(snap.errors[0]?.path, 'spec.caBundles');
    });
  });

  test('a Secret keeps its exact bytes through the database', async () => {
    await withStores(2, async ([a, b]) => {
      const bytes = Buffer.from([0, 1, 2, 250, 251, 255, 10, 13]);
      const yaml = `type: Secret\nname: ca-key\nmesh: default\ndata: ${bytes.toString('base64')}\n`;
      assert.deepEqual(await a!.apply(yaml, 's.yaml'), []);
      const snap = await waitForSnapshot(b!, (s) => s.resources.has('Secret/default//ca-key'));
      const secret = snap.resources.get('Secret/default//ca-key') as SecretResource;
      assert.ok(Buffer.isBuffer(secret.data));
      assert.deepEqual(secret.data, bytes);
    });
  });

  test('each item of a JSON list is stored with its own source text', async () => {
    await withStores(1, async ([store], schema) => {
      const list = JSON.stringify({ items: [
        { type: 'Dataplane', name: 'dp-1', mesh: 'default', labels: { app: 'web' } },
        { type: 'Dataplane', name: 'dp-2', mesh: 'default', labels: { app: 'api' } },
      ] });
      assert.deepEqual(await store!.apply(list, 'list.json'), []);
      await waitForSnapshot(store!, (s) => s.resources.has(DP1_KEY) && s.resources.has(DP2_KEY));
      const rows = await adminQuery<{ name: string; source: string }>(
        `SELECT name, source FROM "${schema}".resources ORDER BY name`,
      );
      assert.deepEqual(rows.rows.map((r) => [r.name, JSON.parse(r.source).name]), [['dp-1', 'dp-1'], ['dp-2', 'dp-2']]);
    });
  });

  test('resource keys in the snapshot are resourceKey() of each resource', async () => {
    await withStores(1, async ([store]) => {
      await store!.apply(k8sDataplaneYaml('dp-k', 'apps'), 'k.yaml');
      const snap = await waitForSnapshot(store!, (s) => s.resources.size === 1);
      for (const [k, r] of snap.resources) assert.equal(k, resourceKey(r));
    });
  });
});
