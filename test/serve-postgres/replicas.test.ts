import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { PG_URL, dropSchema, testSchema } from '../store-postgres/helpers.js';
import { meshSds } from '../cli/run.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';

const schema = testSchema();
const url = `${PG_URL}?schema=${schema}`;
const raceSchema = testSchema();
const raceUrl = `${PG_URL}?schema=${raceSchema}`;
const servers: RunningServer[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await dropSchema(schema);
  await dropSchema(raceSchema);
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** The autogenerating identity for every dataplane, and one Dataplane named `dp`. */
const identityAnd = (dp: string) =>
  yamlDocs(
    meshIdentityYaml('identity', { namespace: 'kuma-system' }),
    dataplaneYaml(dp, { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' }),
  );
const identity = identityAnd('web-1');

/** Replicas of one store share one state key (the Postgres store refuses unsealed private keys). */
let stateKeyFile: Promise<string> | undefined;
const sharedStateKey = () =>
  (stateKeyFile ??= mkdtemp(join(tmpdir(), 'mesh-sds-key-')).then(async (d) => {
    dirs.push(d);
    await generateStateKeyFile(join(d, 'state.key'));
    return join(d, 'state.key');
  }));

async function replica(storeUrl: string): Promise<RunningServer> {
  const stateDir = await mkdtemp(join(tmpdir(), 'mesh-sds-replica-'));
  dirs.push(stateDir);
  const s = await startServer({ store: storeUrl, stateDir, stateKeyFile: await sharedStateKey(), listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent') });
  servers.push(s);
  await s.ready;
  return s;
}

const caOf = (s: RunningServer) =>
  firstValueFrom(
    s.authorities.views$.pipe(
      filter((v) => [...v.identities.values()].some((i) => i.ca)),
      timeout(10_000),
    ),
  ).then((v) => [...v.identities.values()][0]!.ca!.fingerprint);

test('apply and get work against the Postgres store from the CLI', async () => {
  const file = join(await mkdtemp(join(tmpdir(), 'mesh-sds-apply-')), 'identity.yaml');
  dirs.push(join(file, '..'));
  await (await import('node:fs/promises')).writeFile(file, identity);
  const applied = await meshSds(['apply', '-f', file, '--store', url]);
  assert.equal(applied.code, 0, applied.stderr);
  const got = await meshSds(['get', 'dataplane', '--store', url]);
  assert.equal(got.code, 0, got.stderr);
  assert.match(got.stdout, /^default\s+shop\s+web-1\s/m);
  const bad = await meshSds(['apply', '-f', '-', '--store', url], { input: meshTrustYaml('x', 'x.example', []) });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /spec\.caBundles: must not be empty/);
});

test('two replicas on one Postgres store racing to autogenerate a CA end up with the same one', async () => {
  // Both replicas are up before the identity exists, so both try to create its CA at once.
  const [a, b] = await Promise.all([replica(raceUrl), replica(raceUrl)]);
  const cas = Promise.all([caOf(a), caOf(b)]);
  assert.deepEqual(await a.store.apply(identity, 'identity.yaml'), []);
  const [fa, fb] = await cas;
  assert.equal(fa, fb, 'replicas must agree on one CA');
});

test('a resource applied through one replica reaches the other', async () => {
  const [a, b] = servers;
  assert.ok(a && b);
  const seen = firstValueFrom(b.authorities.views$.pipe(filter((v) => v.snapshot.resources.size >= 3), timeout(5000)));
  const errors = await a.store.apply(identityAnd('web-2'), 'more.yaml');
  assert.deepEqual(errors, []);
  const v = await seen;
  assert.ok([...v.snapshot.resources.values()].some((r) => r.name === 'web-2'));
});
