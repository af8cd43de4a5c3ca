// Nothing prints a token (SPEC §5): grpc-js's own log lines go through our logger and are scrubbed.
// The real server is spawned and sent, over raw HTTP/2, an authorization value that grpc-js refuses
// (a non-ASCII character), which it used to quote whole on stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { safeGrpcMessage, scrubCredentials } from '../../src/server/grpc-logging.js';
import { PATHS, SECRET_TYPE, discoveryRequest, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';
import { REPO } from '../e2e/world.js';
import { startProc } from '../e2e/procs.js';

const b64url = (n: number) => randomBytes(n).toString('base64url');
/** A JWT-shaped token (header.payload.signature) that appears nowhere else. */
const fakeJwt = () => `eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.${b64url(90)}.${b64url(64)}`;

/** Every run of 16 characters of `secret` found in `text` (a token fragment is a leak too). */
function fragmentsIn(text: string, secret: string, size = 16): string[] {
  const hits: string[] = [];
  for (let i = 0; i + size <= secret.length; i += 4) {
    const part = secret.slice(i, i + size);
    if (text.includes(part)) hits.push(part);
  }
  return hits;
}

test('scrubbing: a refused metadata value is never quoted; bearer values, JWTs, key blocks and long base64 runs are removed', () => {
  const jwt = fakeJwt();
  const refused = `Failed to add metadata entry authorization: Bearer ${jwt}é. Metadata string value "Bearer ${jwt}é" contains illegal characters. For more information see https://github.com/grpc/grpc-node/issues/1173`;
  const safe = safeGrpcMessage(refused);
  assert.match(safe, /dropped metadata entry "authorization": it contains characters outside printable ASCII/);
  assert.deepEqual(fragmentsIn(safe, jwt), []);
  for (const leak of [`Bearer ${jwt}`, `token=${jwt}`, `x ${b64url(40)} y`, '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----']) {
    const out = scrubCredentials(`connection failed: ${leak}`);
    assert.ok(out.startsWith('connection failed: '), out);
    assert.ok(!out.includes(leak.slice(-20)), out);
  }
  assert.equal(scrubCredentials('Received RST_STREAM with code 2 on 127.0.0.1:443'), 'Received RST_STREAM with code 2 on 127.0.0.1:443');
});

test('peer text loses what log lines lose too: a URL password and a credential query parameter (short, plain words)', () => {
  assert.equal(scrubCredentials('no such secret postgres://sds:hunter2@db:5432/x'), 'no such secret postgres://[REDACTED]@db:5432/x');
  assert.equal(scrubCredentials('GET /debug/proxies?access_token=letmein&x=1'), 'GET /debug/proxies?access_token=[REDACTED]&x=1');
});

test('scrubbing keeps the names logs and /debug are read for (node ids, KRIs, serials, error names) and the text after a key block cut short', () => {
  for (const kept of [
    'default.backend-1-7d9f8c6b5-x2x4z',
    'kri_mid_default_default_kuma-system_identity_',
    'serial 014CC3A517ADDB10468171F6D15E77C5, version b5827e0b67023bbc',
    'Proto constraint validation failed (TlsCertificateValidationError.CertificateChain: value is required)',
    'PEM block 1 is a PRIVATE KEY, not a CERTIFICATE',
    // Mixed-case names with dashes and slashes: SPIFFE IDs from label templates, label values, paths.
    'spiffe://prod.example/ns/payments/sa/CheckoutService-v2',
    'team Payments-Platform-EU-West',
    'cannot read /etc/envoy/Certs/FrontProxy/Ca',
  ]) {
    assert.equal(scrubCredentials(kept), kept);
  }
  // Random key bytes in either base64 alphabet are still removed. It is a heuristic (letter case
  // changing as often as random bytes change it): about 1 random 32-byte key in 5,000 changes case
  // too rarely to be recognised, so 200 keys may lose one or two (three: about once in 100,000 runs).
  const missed: string[] = [];
  for (let i = 0; i < 200; i++) {
    const key = randomBytes(32).toString(i % 2 ? 'base64' : 'base64url');
    if (scrubCredentials(`detail ${key} end`).includes(key.slice(0, 16))) missed.push(key);
  }
  assert.ok(missed.length <= 2, `${missed.length} of 200 random keys kept: ${missed.join(', ')}`);
  assert.equal(scrubCredentials(`unknown resource name "-----BEGIN PRIVATE KEY-----${randomBytes(45).toString('base64')}"... (9 more characters): no such secret`), 'unknown resource name "[REDACTED]"... (9 more characters): no such secret');
});

test('a token with a non-ASCII character reaches neither stdout nor stderr of the real server; whitespace gets an accurate refusal', async () => {
  const root = mkdtempSync(join(tmpdir(), 'mesh-sds-grpclog-'));
  mkdirSync(join(root, 'resources'));
  const server = startProc('mesh-sds serve', process.execPath, [
    join(REPO, 'bin', 'mesh-sds.js'), 'serve', '--resources', join(root, 'resources'), '--state-dir', join(root, 'state'),
    '--listen', '127.0.0.1:0', '--auth', 'token', '--log-level', 'debug',
  ], { cwd: root });
  try {
    const serving = JSON.parse(await server.waitForLine(/"msg":"mesh-sds serving"/, 20_000)) as { listen: string };
    const session = rawConnect(serving.listen);
    const body = [grpcFrame(discoveryRequest({ node: 'default.web', names: ['default'], typeUrl: SECRET_TYPE }))];
    const jwt = fakeJwt();
    const sent = [jwt];
    const call = async (authorization: string) => (await rawCall(session, PATHS.StreamSecrets, { headers: { authorization }, body }).ended);

    const nonAscii = await call(`Bearer ${jwt}é`);
    assert.equal(nonAscii.code, 16, 'UNAUTHENTICATED');
    for (const v of [`Bearer ${jwt.slice(0, -1)}ü`, `Bearer ${jwt}\u00a0`]) {
      sent.push(v.slice(7, -1));
      assert.equal((await call(v)).code, 16);
    }
    // Whitespace around the value: refused, and the message says why it may be missing.
    const padded = fakeJwt();
    sent.push(padded);
    const ws = await call(`Bearer ${padded} `);
    assert.equal(ws.code, 16);
    assert.match(ws.message, /whitespace around it/);
    // Wait for the refusals to be logged, then look at everything the process wrote.
    await server.waitForLine(/dropped metadata entry \\"authorization\\"/, 10_000);
    await server.waitForLine(/stream authentication failed/, 10_000);
    session.close();
    await server.stop();
    const out = server.stdout();
    const err = server.stderr();
    for (const t of sent) {
      assert.deepEqual(fragmentsIn(out, t), [], 'no fragment of a token on stdout');
      assert.deepEqual(fragmentsIn(err, t), [], 'no fragment of a token on stderr');
    }
    for (const line of `${out}\n${err}`.split('\n').filter((l) => l.trim() !== '')) {
      assert.doesNotThrow(() => JSON.parse(line), `every output line is a JSON log line: ${line.slice(0, 80)}`);
    }
  } finally {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
