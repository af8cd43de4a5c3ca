import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Metadata } from '@grpc/grpc-js';
import { createLogger } from '../../src/server/logger.js';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

const SECRETS = ['S3CRET-key', 'S3CRET-keyPem', 'S3CRET-private', 'S3CRET-token', 'S3CRET-auth', 'S3CRET-nested', 'S3CRET-md'];

test('logger never writes secret field values, at top level or nested, and keeps other fields', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream });
  const md = new Metadata();
  md.set('authorization', `Bearer ${SECRETS[6]}`);
  md.set('x-trace', 'abc');
  log.info(
    {
      key: SECRETS[0],
      svid: { keyPem: SECRETS[1], spiffeId: 'spiffe://td/ns/a/sa/b' },
      ca: { privateKey: SECRETS[2] },
      token: SECRETS[3],
      req: { authorization: SECRETS[4] },
      deep: { issued: { privateKey: SECRETS[5] } },
      metadata: md,
    },
    'issued',
  );
  log.info({ metadata: { authorization: 'Bearer S3CRET-plain-md' } }, 'plain metadata');
  const text = out.text();
  for (const s of [...SECRETS, 'S3CRET-plain-md']) assert.ok(!text.includes(s), `log output leaked ${s}`);
  const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.equal(lines.length, 2);
  const first = lines[0]!;
  assert.equal(first.key, '[REDACTED]');
  assert.equal(first.svid.keyPem, '[REDACTED]');
  assert.equal(first.svid.spiffeId, 'spiffe://td/ns/a/sa/b');
  assert.equal(first.ca.privateKey, '[REDACTED]');
  assert.equal(first.token, '[REDACTED]');
  assert.equal(first.req.authorization, '[REDACTED]');
  assert.equal(first.metadata.authorization, '[REDACTED]');
  assert.equal(first.metadata['x-trace'], 'abc', 'gRPC metadata is logged as a plain object');
  assert.equal(first.msg, 'issued');
  assert.equal(first.level, 'info');
  assert.equal(lines[1]!.metadata.authorization, '[REDACTED]');
});

test('logger honours the level', () => {
  const out = capture();
  const log = createLogger('warn', { destination: out.stream });
  log.info('hidden');
  log.warn('shown');
  const text = out.text();
  assert.ok(!text.includes('hidden'));
  assert.ok(text.includes('shown'));
});

test('logger redacts secrets inside arrays, errors and child bindings, and leaves the logged object unchanged', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream }).child({ component: 'x', auth: { token: 'S3CRET-binding' } });
  const err = Object.assign(new Error('refused'), { token: 'S3CRET-err' });
  const logged = { items: [{ name: 'a', keyPem: 'S3CRET-array' }], err, a: { b: { c: { password: 'S3CRET-deep' } } } };
  log.info(logged, 'mixed');
  const text = out.text();
  for (const s of ['S3CRET-binding', 'S3CRET-err', 'S3CRET-array', 'S3CRET-deep']) assert.ok(!text.includes(s), `log output leaked ${s}`);
  const line = JSON.parse(text.trim()) as Record<string, any>;
  assert.equal(line.items[0].name, 'a');
  assert.equal(line.items[0].keyPem, '[REDACTED]');
  assert.equal(line.err.message, 'refused', 'an error keeps its message');
  assert.equal(line.a.b.c.password, '[REDACTED]');
  assert.equal(logged.items[0]!.keyPem, 'S3CRET-array', 'the caller’s object is not modified');
  assert.equal(err.token, 'S3CRET-err');
});

/** The JSON lines written so far, and the raw text (to look for leaks anywhere in it). */
function parsedLines(out: { text: () => string }): Record<string, any>[] {
  return out.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
}

test('field names match in any case and by their ending; names that identify a key or a state entry stay readable', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream }).child({ Authorization: 'S3CRET-binding', TOKEN: 'S3CRET-binding-2' });
  const secret = (n: number) => `S3CRET-${n}`;
  log.info(
    {
      Authorization: secret(1), TOKEN: secret(2), Token: secret(3), accessToken: secret(4), 'proxy-authorization': secret(5), client_secret: secret(6),
      dbPassword: secret(7), privateKeyPEM: secret(8), caKey: secret(9), macKey: secret(10), signingKey: secret(11), 'x-api-key': secret(12), Cookie: secret(13), jwt: secret(14), pem: secret(15), secret: secret(16),
      keyId: 'k-1', stateKeyId: '0011223344556677', stateKey: 'auth/mac-key', resourceKey: 'MeshIdentity/default/x', proxyKey: 'default.web-1', publicKey: 'pk', keyFile: '/etc/tls/tls.key', keyAlgorithm: 'EC prime256v1', tokenId: 'jti-1', secrets: ['default', 'ALL'], credential: { jti: 'jti-1', expiresAtMs: 1 },
    },
    'names',
  );
  const text = out.text();
  for (let n = 1; n <= 16; n++) assert.ok(!text.includes(`"${secret(n)}"`), `leaked ${secret(n)}: ${text}`);
  assert.ok(!text.includes('S3CRET-binding'), 'child bindings match in any case too');
  const line = parsedLines(out)[0]!;
  assert.equal(line.Authorization, '[REDACTED]');
  assert.equal(line['x-api-key'], '[REDACTED]');
  assert.deepEqual(
    { keyId: line.keyId, stateKeyId: line.stateKeyId, stateKey: line.stateKey, resourceKey: line.resourceKey, proxyKey: line.proxyKey, publicKey: line.publicKey, keyFile: line.keyFile, keyAlgorithm: line.keyAlgorithm, tokenId: line.tokenId, secrets: line.secrets, credential: line.credential },
    { keyId: 'k-1', stateKeyId: '0011223344556677', stateKey: 'auth/mac-key', resourceKey: 'MeshIdentity/default/x', proxyKey: 'default.web-1', publicKey: 'pk', keyFile: '/etc/tls/tls.key', keyAlgorithm: 'EC prime256v1', tokenId: 'jti-1', secrets: ['default', 'ALL'], credential: { jti: 'jti-1', expiresAtMs: 1 } },
    'harmless fields are logged as they are',
  );
});

test('a secret field is redacted at any depth, and a cycle (through an error too) ends the walk as [Circular] without pointing back at the unredacted original', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream });
  let deep: Record<string, unknown> = { token: 'S3CRET-depth-20' };
  for (let i = 0; i < 20; i++) deep = { level: deep };
  const cyclic: Record<string, unknown> = { name: 'c', token: 'S3CRET-cycle' };
  cyclic.self = cyclic;
  cyclic.list = [cyclic, { back: cyclic }];
  const err = Object.assign(new Error('boom'), { ctx: {} as Record<string, unknown> });
  err.ctx.err = err;
  err.ctx.password = 'S3CRET-err-cycle';
  log.info({ deep6: { a: { b: { c: { d: { e: { token: 'S3CRET-depth-6' } } } } } }, deep, cyclic, err }, 'deep');
  const text = out.text();
  for (const s of ['S3CRET-depth-6', 'S3CRET-depth-20', 'S3CRET-cycle', 'S3CRET-err-cycle']) assert.ok(!text.includes(s), `leaked ${s}`);
  const line = parsedLines(out)[0]!;
  assert.equal(line.deep6.a.b.c.d.e.token, '[REDACTED]');
  assert.equal(line.cyclic.self, '[Circular]');
  assert.deepEqual(line.cyclic.list, ['[Circular]', { back: '[Circular]' }]);
  assert.equal(line.err.ctx.err, '[Circular]');
  assert.equal(line.err.type, 'Error', 'a logged error keeps its type (it was "Object")');
});

test('key blocks, bearer credentials, JWTs and URL credentials are scrubbed from string values, messages, error causes and aggregated errors', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream });
  const pem = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGS3CRETPEMBODY\n-----END PRIVATE KEY-----\n';
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJTM0NSRVQifQ.S3CRETSIGNATUREabc';
  log.info({ reason: `x509 err ${pem} tail`, headers: [['authorization', 'Bearer S3CRETBEARER1']], rawHeaders: ['authorization', 'bearer S3CRETBEARER2'], path: '/debug/proxies?token=S3CRETQUERY&x=1', store: 'postgres://mesh:S3CRETPW@db/mesh' }, 'strings');
  log.warn(`peer sent Bearer S3CRETBEARER3 and ${jwt}`);
  log.info('format %s', 'Bearer S3CRETBEARER4');
  log.error({ err: new Error('outer', { cause: new Error('inner Bearer S3CRETBEARER5') }) }, 'cause');
  log.error(new AggregateError([new Error(`-----BEGIN EC PRIVATE KEY-----\nS3CRETAGGREGATE`)], 'agg'));
  log.error(new Error(`refused ${jwt}`));
  log.error({ err: new Error('bare Bearer S3CRETBEARER6') });
  const text = out.text();
  for (const s of ['S3CRETPEMBODY', 'S3CRETBEARER', 'S3CRETSIGNATURE', 'S3CRETQUERY', 'S3CRETPW', 'S3CRETAGGREGATE', 'PRIVATE KEY']) assert.ok(!text.includes(s), `leaked ${s}: ${text}`);
  const lines = parsedLines(out);
  assert.equal(lines.length, 7);
  assert.equal(lines[0]!.reason, 'x509 err [REDACTED]\n tail');
  assert.deepEqual(lines[0]!.headers, [['authorization', 'Bearer [REDACTED]']]);
  assert.equal(lines[0]!.path, '/debug/proxies?token=[REDACTED]&x=1');
  assert.equal(lines[0]!.store, 'postgres://[REDACTED]@db/mesh');
  assert.equal(lines[1]!.msg, 'peer sent Bearer [REDACTED] and [REDACTED]');
  assert.equal(lines[2]!.msg, 'format Bearer [REDACTED]');
  assert.equal(lines[3]!.err.message, 'outer: inner Bearer [REDACTED]', 'the cause is still named');
  assert.equal(lines[5]!.msg, 'refused [REDACTED]', 'a message pino takes from the error is scrubbed too');
  assert.equal(lines[6]!.msg, 'bare Bearer [REDACTED]');
});

test('binary data is logged as its size, never its bytes', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream });
  log.info({ material: { bytes: Buffer.from('S3CRET-bytes'), view: new Uint8Array(4) } }, 'binary');
  const line = parsedLines(out)[0]!;
  assert.deepEqual(line.material, { bytes: '<12 bytes>', view: '<4 bytes>' });
});

test('an object logged through its toJSON (a URL) is redacted as what it prints', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream });
  log.info({ store: new URL('postgres://mesh:S3CRET-url@db.internal/mesh') }, 'url');
  assert.equal(parsedLines(out)[0]!.store, 'postgres://[REDACTED]@db.internal/mesh');
});

test('an object nested thousands of levels deep is logged without its fields, and logging does not throw', () => {
  const out = capture();
  const log = createLogger('info', { destination: out.stream });
  let deep: Record<string, unknown> = { token: 'S3CRET-very-deep' };
  for (let i = 0; i < 20_000; i++) deep = { level: deep };
  log.info({ deep }, 'very deep');
  const line = parsedLines(out)[0]!;
  assert.equal(line.msg, 'very deep');
  assert.equal(line.fieldsNotLogged, 'nested too deeply to be checked for secrets');
  assert.ok(!out.text().includes('S3CRET'));
});
