// A secret set where a file path (or a URL, a boolean) is expected — a Kubernetes env-from-Secret
// mix-up — is never printed on stderr; the message names the flag, and an ordinary path is still named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';

const PEM_KEY = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IkJySGVCRS1hZW91QWt4bzAifQ.eyJtZXNoIjoiZGVmYXVsdCIsIm5hbWUiOiJiYWNrZW5kLTEifQ.xOgzzKDB2y_lDTQwFlyZusv_busckcZUwg7tUlwtdhc';
const STATE_KEY = randomBytes(32).toString('base64');
/** Pieces of each secret: none may appear on stderr. */
const FRAGMENTS = [PEM_KEY.split('\n')[1]!.slice(0, 24), 'PRIVATE KEY', JWT.slice(0, 40), JWT.slice(-24), STATE_KEY.slice(0, 24), 's3cret-pw'];

function assertNoSecret(stderr: string, what: string): void {
  for (const f of FRAGMENTS) assert.ok(!stderr.includes(f), `${what}: stderr holds ${f}:\n${stderr}`);
}

test('a key, a token or a password given in place of a file path, URL or boolean is described on stderr, never echoed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-echo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cert = join(dir, 'tls.crt');
  await writeFile(cert, 'not read further: the key fails first\n');
  const keyFile = join(dir, 'state.key');
  await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`);
  const serve = ['serve', '--resources', join(dir, 'r'), '--state-dir', join(dir, 's'), '--auth', 'none', '--listen', '127.0.0.1:0'];
  const fetch = ['fetch', '--server', '127.0.0.1:1', '--node', 'default.backend-1', '--timeout', '1s'];
  const cases: { what: string; args: string[]; env?: NodeJS.ProcessEnv; says: RegExp }[] = [
    { what: 'MESH_SDS_STATE_KEY_FILE=<key>', args: serve, env: { MESH_SDS_STATE_KEY_FILE: STATE_KEY }, says: /cannot read --state-key-file: .*; its value is not shown \(44 characters, looks like a base64 key or token\)/ },
    { what: 'MESH_SDS_STATE_OLD_KEY_FILE=<key>', args: serve, env: { MESH_SDS_STATE_KEY_FILE: keyFile, MESH_SDS_STATE_OLD_KEY_FILE: STATE_KEY }, says: /cannot read --state-old-key-file: .*; its value is not shown/ },
    { what: 'MESH_SDS_TLS_KEY=<PEM>', args: [...serve, '--tls-cert', cert], env: { MESH_SDS_TLS_KEY: PEM_KEY }, says: /cannot read --tls-key: .*; its value is not shown \(\d+ characters, looks like a PEM private key\)/ },
    { what: '--federation-ca-file <PEM>', args: [...serve, '--federation-ca-file', PEM_KEY], says: /cannot read --federation-ca-file: .*; its value is not shown/ },
    { what: '--bundle-endpoint-tls-key <PEM>', args: [...serve, '--bundle-endpoint', '127.0.0.1:0', '--bundle-endpoint-tls-cert', cert, '--bundle-endpoint-tls-key', PEM_KEY], says: /cannot read --bundle-endpoint-tls-key: .*; its value is not shown/ },
    { what: 'MESH_SDS_INSECURE=<token>', args: serve, env: { MESH_SDS_INSECURE: JWT }, says: /MESH_SDS_INSECURE=<not shown: \d+ characters, looks like a JWT>: must be one of true, false/ },
    { what: '--auth <token> (commander quotes choices)', args: [...serve.filter((a) => a !== 'none' && a !== '--auth'), '--auth', JWT], says: /--auth <mode>' argument '\[REDACTED\]' is invalid/ },
    { what: '--store mysql://user:password@…', args: ['get', 'meshidentity', '--store', 'mysql://mesh:s3cret-pw@db.internal/mesh'], says: /--store mysql:\/\/\[REDACTED\]@db\.internal\/mesh: only postgres:\/\/ URLs are supported/ },
    { what: 'MESH_SDS_TOKEN_FILE=<token>', args: fetch, env: { MESH_SDS_TOKEN_FILE: JWT }, says: /cannot read --token-file: .*; its value is not shown \(\d+ characters, looks like a JWT\)/ },
    { what: 'fetch --ca-file <PEM>', args: [...fetch, '--ca-file', PEM_KEY], says: /cannot read --ca-file: .*; its value is not shown/ },
    { what: 'token revoke --token-file <token>', args: ['token', 'revoke', '--state-dir', join(dir, 's'), '--token-file', JWT], says: /cannot read --token-file: .*; its value is not shown/ },
  ];
  for (const c of cases) {
    await t.test(c.what, async () => {
      const r = await meshSds(c.args, { env: c.env });
      assert.notEqual(r.code, 0);
      assertNoSecret(r.stderr + r.stdout, c.what);
      assert.match(r.stderr, c.says);
    });
  }
});

test('a missing file given by an ordinary path is still named, with the reason', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-echo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cert = join(dir, 'tls.crt');
  await writeFile(cert, 'x\n');
  const serve = ['serve', '--resources', join(dir, 'r'), '--state-dir', join(dir, 's'), '--auth', 'none', '--listen', '127.0.0.1:0'];
  const tls = await meshSds([...serve, '--tls-cert', cert, '--tls-key', join(dir, 'tls.key')]);
  assert.match(tls.stderr, new RegExp(`cannot read --tls-key ${join(dir, 'tls.key')}: no such file or directory \\(ENOENT\\)`));
  const token = await meshSds(['fetch', '--server', '127.0.0.1:1', '--node', 'default.backend-1', '--token-file', join(dir, 'token')]);
  assert.match(token.stderr, new RegExp(`cannot read --token-file ${join(dir, 'token')}: no such file or directory \\(ENOENT\\)`));
  const revoke = await meshSds(['token', 'revoke', '--state-dir', join(dir, 's'), '--token-file', join(dir, 'token')]);
  assert.match(revoke.stderr, new RegExp(`cannot read --token-file ${join(dir, 'token')}: no such file or directory \\(ENOENT\\)`));
  const notPem = join(dir, 'ca.der');
  await writeFile(notPem, JWT);
  const ca = await meshSds(['fetch', '--server', '127.0.0.1:1', '--node', 'default.backend-1', '--ca-file', notPem]);
  assert.match(ca.stderr, new RegExp(`--ca-file ${notPem} holds no PEM certificate`));
  assertNoSecret(ca.stderr, 'a --ca-file holding a token');
});

test('a state key given as --state-dir that cannot be used as one is described, not echoed through the system\'s own message', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'mesh-sds-echo-'));
  t.after(() => rm(cwd, { recursive: true, force: true }));
  // A key without '/' names one entry of the working directory; a file there is no state directory (ENOTDIR).
  let key = STATE_KEY;
  while (key.includes('/')) key = randomBytes(32).toString('base64');
  await writeFile(join(cwd, key), 'x\n');
  await mkdir(join(cwd, 'r'));
  for (const args of [['serve', '--resources', 'r', '--auth', 'none', '--listen', '127.0.0.1:0'], ['get', 'meshidentity', '--resources', 'r'], ['inspect', '--dataplane', 'default.x', '--resources', 'r']]) {
    const r = await meshSds(args, { cwd, env: { MESH_SDS_STATE_DIR: key } });
    assert.notEqual(r.code, 0);
    assert.ok(!(r.stderr + r.stdout).includes(key.slice(0, 24)), `${args[0]}: the key is echoed:\n${r.stderr}`);
    assert.match(r.stderr, /--state-dir <not a file path: 44 characters, looks like a base64 key or token; not shown> cannot be used as the state directory: not a directory \(ENOTDIR\)/, args[0]);
  }
});

test('a --store URL whose password holds an unencoded #, ? or / is refused naming that, without printing any of the password', async (t) => {
  // The URL parser ends the host part at the first of them: "2024" was read as a port, "mesh" as the
  // host, and the message quoted the whole URL (or "x@127.0.0.1/test" as an unknown query parameter).
  for (const [url, password] of [
    ['postgres://mesh:2024#Winter@db.internal:5432/mesh', '2024#Winter'],
    ['postgres://mesh:1234?Winter@127.0.0.1:5432/test', '1234?Winter'],
    ['postgres://mesh:pass/Winter@127.0.0.1:5432/test', 'pass/Winter'],
    // An '@' in the password too: the parser takes "mesh:p" as the user part, "ss" as the host.
    ['postgres://mesh:p@ss#Winter@db.internal:5432/mesh', 'p@ss#Winter'],
  ] as const) {
    await t.test(url.replace(password, '…'), async () => {
      const r = await meshSds(['get', 'meshtrust', '--store', url]);
      assert.equal(r.code, 1);
      assert.ok(!(r.stderr + r.stdout).includes('Winter'), `the password is printed:\n${r.stderr}`);
      assert.match(r.stderr, /--store postgres:\/\/\[REDACTED\]@[^ ]*: its user or password holds '#', '\?' or '\/' as it is/);
    });
  }
  // An '@' in the query (a user given as a parameter) is no password: the URL is used as it is.
  const inQuery = await meshSds(['get', 'meshtrust', '--store', 'postgres://127.0.0.1:1/test?user=me@corp']);
  assert.match(inQuery.stderr, /cannot connect to the database/);
});
