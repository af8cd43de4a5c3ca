// The server on Postgres keeps serving through bad rows and a stalled database (SPEC §6).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { firstValueFrom } from 'rxjs';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { PG_URL, adminQuery, dropSchema, makeCaPem, sleep, testSchema } from '../store-postgres/helpers.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';
import { INVALID_FIXTURES, storedShape } from '../helpers/invalid-resources.js';
import { watchTrust, type TrustWatch } from './streams.js';

const schemas: string[] = [];
const dirs: string[] = [];
const servers: RunningServer[] = [];
const watches: TrustWatch[] = [];
after(async () => {
  for (const w of watches) w.close();
  await Promise.all(servers.map((s) => s.close()));
  for (const s of schemas) await dropSchema(s);
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function serve(schema: string): Promise<RunningServer> {
  const stateDir = await mkdtemp(join(tmpdir(), 'mesh-sds-pg-'));
  dirs.push(stateDir);
  // Replicas of one store share one state key (the Postgres store refuses unsealed private keys).
  const stateKeyFile = join(stateDir, '..', `${schema}.key`);
  if (!existsSync(stateKeyFile)) await generateStateKeyFile(stateKeyFile);
  dirs.push(stateKeyFile);
  const s = await startServer({ store: `${PG_URL}?schema=${schema}`, stateDir, stateKeyFile, listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent') });
  servers.push(s);
  await s.ready;
  return s;
}

function watch(s: RunningServer, node = 'default.web-1'): TrustWatch {
  const w = watchTrust(s.address, node);
  watches.push(w);
  return w;
}

// The identity's default SPIFFE path names the namespace and service account, so the Dataplane has both.
const world = yamlDocs(
  meshIdentityYaml('identity'),
  dataplaneYaml('web-1', { app: 'web', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' }),
);

test('bad rows written with SQL while streams are open: a later valid change still reaches the streams, and a fresh replica becomes ready', async () => {
  const schema = testSchema();
  schemas.push(schema);
  const a = await serve(schema);
  assert.deepEqual(await a.store.apply(world, 'world.yaml'), []);
  const stream = watch(a);
  await stream.until((d) => d.length > 0, 15_000, 'first trust bundle');
  const before = stream.domains();

  // Every shared invalid fixture, plus a MeshIdentity whose spiffeID is {} (it froze the identity pipeline).
  const rows: Record<string, unknown>[] = INVALID_FIXTURES.map(storedShape);
  rows.push({
    kind: 'MeshIdentity', mesh: 'default', namespace: '', name: 'empty-spiffe', labels: {},
    spec: {
      selector: { dataplane: { matchLabels: { app: 'nothing' } } },
      spiffeID: {},
      provider: { type: 'Bundled', bundled: { meshTrustCreation: 'Disabled', insecureAllowSelfSigned: true, autogenerate: { enabled: true }, certificateParameters: { expiry: '24h', expiryMs: 86_400_000 } } },
    },
  });
  for (const doc of rows) {
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ($1, 'default', '', $2, $3::jsonb)`, [
      doc.kind, doc.name, JSON.stringify(doc),
    ]);
  }
  const caPem = makeCaPem('partner');
  assert.deepEqual(await a.store.apply(meshTrustYaml('partner', 'partner.example', [caPem]), 'partner.yaml'), []);
  await stream.until((d) => d.includes('partner.example'), 10_000, 'the later MeshTrust');
  assert.deepEqual(stream.domains(), [...before, 'partner.example'].sort());
  const snap = await firstValueFrom(a.store.snapshots$);
  for (const doc of rows.slice(0, -1)) {
    assert.ok(snap.errors.some((e) => e.file.includes(` row ${String(doc.kind)}/default//${String(doc.name)}`)), `${String(doc.name)} is reported`);
  }

  // A replica started now, with the bad rows in the table, becomes ready and serves.
  const fresh = await serve(schema);
  const s2 = watch(fresh);
  await s2.until((d) => d.includes('partner.example'), 15_000, 'trust from the fresh replica');
  assert.equal(stream.broken(), undefined);
});

test('with the tables locked for 20 s, open streams stay, new streams are served from memory, and changes flow after the lock is released', async () => {
  const schema = testSchema();
  schemas.push(schema);
  const a = await serve(schema);
  assert.deepEqual(await a.store.apply(world, 'world.yaml'), []);
  const open = Array.from({ length: 5 }, () => watch(a));
  for (const w of open) await w.until((d) => d.length > 0, 15_000, 'first trust bundle');

  const locker = new pg.Client({ connectionString: PG_URL });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${schema}".resources, "${schema}".state IN ACCESS EXCLUSIVE MODE`);
    const lockedAt = Date.now();
    // Something for the store to read while it cannot: a notification naming a row.
    await adminQuery(`SELECT pg_notify('mesh_sds_changes', $1)`, [JSON.stringify({ schema, kind: 'Dataplane', mesh: 'default', namespace: '', name: 'web-1' })]);
    for (const at of [1000, 8000, 17_000]) {
      await sleep(Math.max(0, lockedAt + at - Date.now()));
      const t0 = Date.now();
      const fresh = watch(a);
      await fresh.until((d) => d.length > 0, 3000, `a new stream's first response ${at / 1000} s into the stall`);
      assert.ok(Date.now() - t0 < 3000);
      fresh.close();
    }
    await sleep(Math.max(0, lockedAt + 20_000 - Date.now()));
    for (const w of open) assert.equal(w.broken(), undefined, 'no open stream ended during the stall');
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
  assert.deepEqual(await a.store.apply(meshTrustYaml('partner', 'partner.example', [makeCaPem('partner')]), 'partner.yaml'), []);
  for (const w of open) await w.until((d) => d.includes('partner.example'), 10_000, 'the change after the stall');
});
