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
