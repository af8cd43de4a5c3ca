// A database that stops answering mid-session (a network partition, a frozen host: nothing is
// refused or reset, bytes just stop moving), end to end through the server: streams keep being
// served from memory, /readyz and /metrics say the store is what is wrong, and once the database
// answers again (on new connections; the old ones stay dead) changes flow and it is ready again.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';
import { PG_URL, dropSchema, makeCaPem, sleep, testSchema } from '../store-postgres/helpers.js';
import { startStallProxy } from './stall-proxy.js';
import { watchTrust } from './streams.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(250);
  }
}

/** The value of `mesh_sds_ready_check{check="<check>"}`, undefined when absent. */
async function readyCheckMetric(s: RunningServer, check: string): Promise<number | undefined> {
  const text = await (await fetch(`${s.admin!.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`mesh_sds_ready_check{check="${check}"}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

test('a database black-holed mid-session: streams stay served, /readyz and the ready-check metric name the store, and after it answers again changes arrive and it is ready', { timeout: 180_000 }, async () => {
  const schema = testSchema();
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-blackhole-'));
  const proxy = await startStallProxy();
  cleanups.push(async () => {
    await proxy.close();
    await dropSchema(schema);
    await rm(dir, { recursive: true, force: true });
  });
  const stateKeyFile = join(dir, 'state.key');
  await generateStateKeyFile(stateKeyFile);
  const store = `postgres://postgres@127.0.0.1:${proxy.port}/test?schema=${schema}`;
  const s = await startServer({ store, stateDir: dir, stateKeyFile, listen: '127.0.0.1:0', admin: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent'), postgresHeartbeatMs: 1000 });
  cleanups.push(() => s.close());
  await s.ready;
  // Writes come straight from the database, as another replica's would.
  const writer = await PostgresStore.open(PG_URL, { schema });
  cleanups.push(() => writer.close());
  const world = yamlDocs(meshIdentityYaml('identity'), dataplaneYaml('web-1', { app: 'web', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' }));
  assert.deepEqual(await writer.apply(world, 'world.yaml'), []);
  const open = watchTrust(s.address, 'default.web-1');
  cleanups.push(async () => open.close());
  await open.until((d) => d.length > 0, 15_000, 'first trust bundle');
  const readyz = async () => (await fetch(`${s.admin!.url}/readyz?verbose`)).text();
  await waitFor('ready', 15_000, async () => /\nready\n$/.test(await readyz()));
  assert.equal(await readyCheckMetric(s, 'store'), 1);

  proxy.stall();
  await waitFor('/readyz failing on the store', 40_000, async () => /\[-\]store failed: .*postgres/.test(await readyz()));
  assert.equal(await readyCheckMetric(s, 'store'), 0, 'the metric says the store check fails');
  assert.equal(await readyCheckMetric(s, 'draining'), 1);
  // A stream opened during the stall is served from memory.
  const fresh = watchTrust(s.address, 'default.web-1');
  cleanups.push(async () => fresh.close());
  await fresh.until((d) => d.length > 0, 5000, 'a new stream during the stall');
  assert.deepEqual(await writer.apply(meshTrustYaml('partner', 'partner.example', [makeCaPem('partner')]), 'partner.yaml'), []);
  await sleep(3000);
  assert.equal(open.broken(), undefined, 'the open stream stayed');

  proxy.heal();
  await open.until((d) => d.includes('partner.example'), 90_000, 'the change written during the stall');
  await waitFor('ready again', 60_000, async () => /\nready\n$/.test(await readyz()));
  assert.equal(await readyCheckMetric(s, 'store'), 1);
});
