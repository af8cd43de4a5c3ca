// A plaintext state written by releases before sealing (SPEC §6) is sealed on the first start with a
// key, for the state dir and for Postgres: the raw files and rows then hold no private key (nor the
// token MAC key created at that start) in any encoding, the same CA keeps being used, tokens signed
// by the old Ed25519 key still verify, and a start without the key is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { startServer, type ServeConfig } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { generateStateKeyFile, loadStateKey } from '../../src/store/state-key.js';
import { isSealed, unseal } from '../../src/store/sealed-state.js';
import { MAC_KEY_STATE_KEY } from '../../src/server/tokens.js';
import { adminQuery, dropSchema, PG_URL, testSchema } from '../store-postgres/helpers.js';
import { dataplaneYaml, meshIdentityYaml, yamlDocs } from '../helpers/yaml.js';

const TD = 'upgrade.example';
const CA_STATE_KEY = `ca/default/_/identity/${TD}`;
const resources = yamlDocs(meshIdentityYaml('identity', { trustDomain: TD }), dataplaneYaml('web-1', { app: 'web' }));

/**
 * The state values exactly as the code before sealing wrote them (PEM inside JSON), and a token that
 * code signed with its Ed25519 key.
 */
async function legacyState() {
  const ca = generateCertificateAuthority(TD);
  const { privateKey } = generateKeyPairSync('ed25519');
  const signingPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const tokenKeyId = createHash('sha256').update(spki).digest('base64url').slice(0, 16);
  const token = await new SignJWT({ mesh: 'default', name: 'web-1' })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: tokenKeyId })
    .setIssuer('mesh-sds')
    .setSubject('default.web-1')
    .setIssuedAt()
    .setExpirationTime('1h')
    .setJti('legacy-token')
    .sign(privateKey);
  return {
    values: {
      [CA_STATE_KEY]: JSON.stringify(ca),
      'auth/signing-key': JSON.stringify({ version: 1, alg: 'EdDSA', privateKeyPem: signingPem }),
    },
    caCertPem: ca.certPem,
    tokenKeyId,
    token,
    secrets: [ca.keyPem, signingPem],
  };
}

/** The token MAC key as the server created it, opened with the state key (the raw value must be sealed). */
async function macSecret(rawValue: string | undefined, keyFile: string): Promise<Buffer> {
  assert.ok(rawValue !== undefined && isSealed(rawValue), `${MAC_KEY_STATE_KEY} is stored sealed`);
  const key = await loadStateKey(keyFile);
  const rec = JSON.parse(unseal(new Map([[key.id, key]]), MAC_KEY_STATE_KEY, rawValue)) as { secret: string };
  return Buffer.from(rec.secret, 'base64url');
}

/** Every encoding of the MAC secret a careless store could hold. */
const secretFragments = (secret: Buffer) => [secret.toString('base64url'), secret.toString('base64').replace(/=+$/, ''), secret.toString('hex')];

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

type Legacy = Awaited<ReturnType<typeof legacyState>>;

/** Starts, checks the CA and tokens, and returns the token MAC key id. */
async function startAndCheck(cfg: Omit<ServeConfig, 'listen' | 'auth' | 'zone'>, legacy: Legacy): Promise<string> {
  const server = await startServer({ ...cfg, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') });
  try {
    await server.ready;
    const view = await firstValueFrom(server.authorities.views$.pipe(filter((v) => [...v.identities.values()].some((i) => i.ca)), timeout(20_000)));
    const ca = [...view.identities.values()][0]!.ca!;
    assert.equal(ca.trustPem.trim(), legacy.caCertPem.trim(), 'the CA written before the upgrade keeps being used');
    const tokens = server.tokens!;
    assert.equal(tokens.legacyKeyId, legacy.tokenKeyId, 'the Ed25519 key written before the upgrade is still read');
    assert.equal((await tokens.verify(legacy.token)).jti, 'legacy-token', 'a token signed before the upgrade still verifies');
    const fresh = await tokens.generate({ mesh: 'default', name: 'web-1', validForMs: 60_000 });
    assert.equal(decodeProtectedHeader(fresh).alg, 'HS256', 'new tokens are HS256');
    assert.equal((await tokens.verify(fresh)).name, 'web-1');
    return tokens.keyId;
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
  const legacy = await legacyState();
  for (const [k, v] of Object.entries(legacy.values)) {
    await mkdir(join(stateDir, ...k.split('/').slice(0, -1)), { recursive: true });
    await writeFile(join(stateDir, ...k.split('/')), v, { mode: 0o600 });
  }
  const keyFile = join(root, 'state.key');
  await generateStateKeyFile(keyFile);

  const macKeyId = await startAndCheck({ resourcesDir, stateDir, stateKeyFile: keyFile }, legacy);

  const secret = await macSecret(await readFile(join(stateDir, ...MAC_KEY_STATE_KEY.split('/')), 'utf8'), keyFile);
  const fragments = [...forbiddenFragments(legacy.secrets), ...secretFragments(secret)];
  const files = await filesBelow(stateDir);
  assert.ok(files.length >= 3);
  for (const f of files) {
    assertNoKeyMaterial(f, await readFile(f, 'utf8'), fragments);
    assert.equal((await stat(f)).mode & 0o777, 0o600, `${f} is 0600`);
  }
  const kid = (await loadStateKey(keyFile)).id;
  assert.equal(JSON.parse(await readFile(join(stateDir, ...CA_STATE_KEY.split('/')), 'utf8')).kid, kid);

  // Restart with the key: same CA, same token keys. Without it: refused, naming the key id.
  assert.equal(await startAndCheck({ resourcesDir, stateDir, stateKeyFile: keyFile }, legacy), macKeyId);
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
  const legacy = await legacyState();
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
  const macKeyId = await startAndCheck({ store: url, stateDir: root, stateKeyFile: keyFile }, legacy);

  const rows = (await adminQuery<{ key: string; value: string }>(`SELECT key, value FROM "${schema}".state`)).rows;
  assert.ok(rows.some((r) => r.key === CA_STATE_KEY) && rows.some((r) => r.key === 'auth/signing-key'));
  const secret = await macSecret(rows.find((r) => r.key === MAC_KEY_STATE_KEY)?.value, keyFile);
  const fragments = [...forbiddenFragments(legacy.secrets), ...secretFragments(secret)];
  for (const r of rows) assertNoKeyMaterial(`row ${r.key}`, r.value, fragments);
  const kid = (await loadStateKey(keyFile)).id;

  assert.equal(await startAndCheck({ store: url, stateDir: root, stateKeyFile: keyFile }, legacy), macKeyId);
  await assert.rejects(
    startServer({ store: url, stateDir: root, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') }),
    new RegExp(`refusing to start.*state key id ${kid}.*no --state-key-file`),
  );
});
