// A plaintext state written by releases before sealing (SPEC §6) is sealed on the first start with a
// key, for the state dir and for Postgres: the raw files and rows then hold no private key in any
// encoding, the same CA and signing key keep being used, and a start without the key is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { startServer, type ServeConfig } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { generateStateKeyFile, loadStateKey } from '../../src/store/state-key.js';
import { adminQuery, dropSchema, PG_URL, testSchema } from '../store-postgres/helpers.js';
import { dataplaneYaml, meshIdentityYaml, yamlDocs } from '../helpers/yaml.js';

const TD = 'upgrade.example';
const CA_STATE_KEY = `ca/default/_/identity/${TD}`;
const resources = yamlDocs(meshIdentityYaml('identity', { trustDomain: TD }), dataplaneYaml('web-1', { app: 'web' }));

/** The state values exactly as the code before sealing wrote them: PEM inside JSON. */
function legacyState() {
  const ca = generateCertificateAuthority(TD);
  const { privateKey } = generateKeyPairSync('ed25519');
  const signingPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return {
    values: {
      [CA_STATE_KEY]: JSON.stringify(ca),
      'auth/signing-key': JSON.stringify({ version: 1, alg: 'EdDSA', privateKeyPem: signingPem }),
    },
    caCertPem: ca.certPem,
    tokenKeyId: createHash('sha256').update(spki).digest('base64url').slice(0, 16),
    secrets: [ca.keyPem, signingPem],
  };
}

/**
 * Every encoding of the private keys a careless store could hold: the whole DER as base64 and hex,
 * the private scalar (JWK `d`) as base64url, base64 and hex, and the base64 of the DER around the
 * scalar (what a PEM body shows). Public parts (also in certificates) are left out on purpose.
 */
function forbiddenFragments(keyPems: string[]): string[] {
  return keyPems.flatMap((pem) => {
    const key = createPrivateKey(pem);
    const der = key.export({ format: 'der', type: 'pkcs8' });
    const d = Buffer.from((key.export({ format: 'jwk' }) as { d: string }).d, 'base64url');
    const at = der.indexOf(d);
    assert.ok(at > 0, 'the scalar is inside the DER');
    const aligned = Math.ceil(at / 3) * 3;
    const pemWindow = der.toString('base64').slice((aligned / 3) * 4, (aligned / 3) * 4 + 32);
    return [der.toString('base64'), der.toString('hex'), d.toString('base64url'), d.toString('base64').replace(/=+$/, ''), d.toString('hex'), pemWindow];
  });
}

function assertNoKeyMaterial(where: string, text: string, fragments: string[]): void {
  assert.doesNotMatch(text, /PRIVATE KEY/, `${where} holds a PEM private key`);
  for (const f of fragments) assert.ok(!text.includes(f), `${where} holds private key bytes (${f.slice(0, 8)}…)`);
}

async function startAndCheck(cfg: Omit<ServeConfig, 'listen' | 'auth' | 'zone'>, legacy: ReturnType<typeof legacyState>): Promise<void> {
  const server = await startServer({ ...cfg, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') });
  try {
    await server.ready;
    const view = await firstValueFrom(server.authorities.views$.pipe(filter((v) => [...v.identities.values()].some((i) => i.ca)), timeout(20_000)));
    const ca = [...view.identities.values()][0]!.ca!;
    assert.equal(ca.trustPem.trim(), legacy.caCertPem.trim(), 'the CA written before the upgrade keeps being used');
    assert.equal(server.tokens!.keyId, legacy.tokenKeyId, 'the signing key written before the upgrade keeps being used');
  } finally {
    await server.close();
  }
}

async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesBelow(p)));
    else out.push(p);
  }
  return out;
}

test('a plaintext state dir from before sealing is sealed on the first start with a key; without the key it is refused', { timeout: 120_000 }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-upgrade-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const resourcesDir = join(root, 'resources');
  const stateDir = join(root, 'state');
  await mkdir(resourcesDir);
  await writeFile(join(resourcesDir, 'all.yaml'), resources);
  const legacy = legacyState();
  for (const [k, v] of Object.entries(legacy.values)) {
    await mkdir(join(stateDir, ...k.split('/').slice(0, -1)), { recursive: true });
    await writeFile(join(stateDir, ...k.split('/')), v, { mode: 0o600 });
  }
  const keyFile = join(root, 'state.key');
  await generateStateKeyFile(keyFile);

  await startAndCheck({ resourcesDir, stateDir, stateKeyFile: keyFile }, legacy);

  const fragments = forbiddenFragments(legacy.secrets);
  const files = await filesBelow(stateDir);
  assert.ok(files.length >= 2);
  for (const f of files) {
    assertNoKeyMaterial(f, await readFile(f, 'utf8'), fragments);
    assert.equal((await stat(f)).mode & 0o777, 0o600, `${f} is 0600`);
  }
  const kid = (await loadStateKey(keyFile)).id;
  assert.equal(JSON.parse(await readFile(join(stateDir, ...CA_STATE_KEY.split('/')), 'utf8')).kid, kid);

  // Restart with the key: same CA, same signing key. Without it: refused, naming the key id.
  await startAndCheck({ resourcesDir, stateDir, stateKeyFile: keyFile }, legacy);
  await assert.rejects(
    startServer({ resourcesDir, stateDir, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') }),
    new RegExp(`refusing to start.*state key id ${kid}.*no --state-key-file`),
  );
});

test('a plaintext Postgres schema from before sealing is sealed on the first start with a key; without the key it is refused', { timeout: 120_000 }, async (t) => {
  const schema = testSchema();
  const url = `${PG_URL}?schema=${schema}`;
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-upgrade-'));
  t.after(async () => {
    await dropSchema(schema);
    await rm(root, { recursive: true, force: true });
  });
  const legacy = legacyState();
  const store = await PostgresStore.open(url);
  try {
    assert.deepEqual(await store.apply(resources, 'all.yaml'), []);
  } finally {
    await store.close();
  }
  // Rows as the code before sealing wrote them.
  for (const [k, v] of Object.entries(legacy.values)) await adminQuery(`INSERT INTO "${schema}".state (key, value) VALUES ($1, $2)`, [k, v]);

  // Without a key, a schema holding plaintext keys is refused too (Postgres never keeps them unsealed by default).
  await assert.rejects(
    startServer({ store: url, stateDir: root, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') }),
    /refusing to start: the state holds unsealed private keys/,
  );

  const keyFile = join(root, 'state.key');
  await generateStateKeyFile(keyFile);
  await startAndCheck({ store: url, stateDir: root, stateKeyFile: keyFile }, legacy);

  const fragments = forbiddenFragments(legacy.secrets);
  const rows = (await adminQuery<{ key: string; value: string }>(`SELECT key, value FROM "${schema}".state`)).rows;
  assert.ok(rows.some((r) => r.key === CA_STATE_KEY) && rows.some((r) => r.key === 'auth/signing-key'));
  for (const r of rows) assertNoKeyMaterial(`row ${r.key}`, r.value, fragments);
  const kid = (await loadStateKey(keyFile)).id;

  await startAndCheck({ store: url, stateDir: root, stateKeyFile: keyFile }, legacy);
  await assert.rejects(
    startServer({ store: url, stateDir: root, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') }),
    new RegExp(`refusing to start.*state key id ${kid}.*no --state-key-file`),
  );
});
