// Replicas of one Postgres store started together with different --state-key-file (SPEC §6: never
// half-start): the start-up check saw an empty state, so each creates records the other cannot open.
// A replica meeting one while running is not ready, saying which key sealed it and which it holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { seal } from '../../src/store/sealed-state.js';
import { adminQuery, dropSchema, PG_URL, sleep, testSchema } from '../store-postgres/helpers.js';
import { dataplaneYaml, meshIdentityYaml, yamlDocs } from '../helpers/yaml.js';

test('a CA record sealed by a replica with another state key, met while serving: /readyz not ready naming the state key and both key ids', { timeout: 60_000 }, async (t) => {
  const schema = testSchema();
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-keys-'));
  t.after(async () => {
    await dropSchema(schema);
    await rm(root, { recursive: true, force: true });
  });
  const mine = await generateStateKeyFile(join(root, 'mine.key'));
  const theirs = await generateStateKeyFile(join(root, 'theirs.key'));
  const server = await startServer({
    store: `${PG_URL}?schema=${schema}`, stateDir: root, stateKeyFile: join(root, 'mine.key'),
    listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent'),
  });
  t.after(() => server.close());
  assert.deepEqual(await server.store.apply(yamlDocs(meshIdentityYaml('one', { trustDomain: 'one.example' }), dataplaneYaml('web-1', { app: 'web' })), 'a.yaml'), []);
  await server.ready;
  const ready = async () => {
    for (let i = 0; i < 100 && !server.readiness.evaluate().ready; i++) await sleep(100);
    return server.readiness.evaluate();
  };
  assert.equal((await ready()).ready, true);

  // What the other replica created first for the identity about to be applied.
  const stateKey = 'ca/default/_/two/two.example';
  await adminQuery(`INSERT INTO "${schema}".state (key, value) VALUES ($1, $2)`, [stateKey, seal(theirs, stateKey, JSON.stringify(generateCertificateAuthority('two.example')))]);
  assert.deepEqual(await server.store.apply(meshIdentityYaml('two', { trustDomain: 'two.example' }), 'b.yaml'), []);

  let report = server.readiness.evaluate();
  for (let i = 0; i < 100 && !report.checks.some((c) => c.name === 'state-key' && !c.ok); i++) {
    await sleep(100);
    report = server.readiness.evaluate();
  }
  assert.equal(report.ready, false);
  const check = report.checks.find((c) => c.name === 'state-key');
  assert.equal(check?.ok, false, JSON.stringify(report.checks));
  const reason = new RegExp(`state ${stateKey} is sealed with state key id ${theirs.id}, but --state-key-file has key id ${mine.id}: every replica sharing this state must use the same --state-key-file`);
  assert.match(check.detail ?? '', reason);
  const two = [...server.authorities.current!.identities.values()].find((s) => s.identity.name === 'two');
  assert.match(two?.conditions.find((c) => c.type === 'Ready')?.message ?? '', reason, 'the identity says why too');
});
