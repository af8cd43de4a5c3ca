import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { authFailureReason, createMetrics, nackNameLabel } from '../../src/server/metrics.js';
import { AuthError } from '../../src/server/auth.js';
import { createLogger, peerSource, WarnLimiter } from '../../src/server/logger.js';

test('each createMetrics() has its own registry: two instances do not clash or share values', async () => {
  const a = createMetrics();
  const b = createMetrics();
  a.pushes.inc(3);
  b.pushes.inc(1);
  assert.match(await a.render(), /^mesh_sds_pushes_total 3$/m);
  assert.match(await b.render(), /^mesh_sds_pushes_total 1$/m);
});

test('a NACKed workload SPIFFE ID counts as <spiffe-id> (one series, not one per proxy); other secret names keep their name', () => {
  assert.equal(nackNameLabel('spiffe://default.mesh.local/ns/shop/sa/web'), '<spiffe-id>');
  assert.equal(nackNameLabel('spiffe://partner.example'), 'spiffe://partner.example');
  for (const n of ['default', 'ROOTCA', 'ALL', 'system_trust_bundle', 'kri_mid_default_default_kuma-system_identity_']) assert.equal(nackNameLabel(n), n);
});

test('an auth failure counts under the reason it was refused for, whatever its message quotes; any other error is "other"', () => {
  assert.equal(authFailureReason(new AuthError('node-mismatch', 'token is not valid for node id default.revoked-expired-Bearer')), 'node-mismatch');
  assert.equal(authFailureReason(new Error('token revoked')), 'other');
});

test('repeated warnings from one source are summarised once per window; other sources are not affected', async () => {
  const lines: { msg: string; suppressed?: number; source?: string }[] = [];
  const log = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }) });
  const limiter = new WarnLimiter(log, { windowMs: 200, burst: 2 });
  for (let i = 0; i < 414; i++) limiter.warn('10.0.0.1', { i }, 'malformed request');
  limiter.warn('10.0.0.2', {}, 'malformed request');
  assert.equal(lines.filter((l) => l.msg === 'malformed request').length, 3, 'two from the noisy peer, one from the other');
  await new Promise((r) => setTimeout(r, 400));
  const summary = lines.filter((l) => l.msg.includes('more like this'));
  assert.equal(summary.length, 1);
  assert.equal(summary[0]!.msg, 'malformed request … and 412 more like this in the last 200 ms');
  assert.equal(summary[0]!.suppressed, 412);
  assert.equal(summary[0]!.source, '10.0.0.1');
  // A new window starts fresh.
  limiter.warn('10.0.0.1', {}, 'malformed request');
  assert.equal(lines.filter((l) => l.msg === 'malformed request').length, 4);
  limiter.flushAll();
});

test('the limiter keeps at most maxSources buckets: beyond, new sources share one', () => {
  const lines: { msg: string; suppressed?: number; source?: string }[] = [];
  const log = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }) });
  const limiter = new WarnLimiter(log, { windowMs: 60_000, burst: 1, maxSources: 3 });
  for (let i = 0; i < 100; i++) limiter.warn(`peer-${i}`, {}, 'bad');
  assert.equal(lines.length, 4, 'three sources, then one line for all others');
  limiter.flushAll();
  const summary = lines.find((l) => l.source === '*');
  assert.equal(summary?.suppressed, 96);
});

test('fields given as a function are made only for the lines logged, not for each suppressed repeat', () => {
  const lines: { msg: string; n?: number }[] = [];
  const log = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }) });
  const limiter = new WarnLimiter(log, { windowMs: 60_000, burst: 1 });
  let made = 0;
  for (let i = 0; i < 1000; i++) limiter.warn('proxy-1', () => ({ n: ++made }), 'held names');
  assert.equal(made, 1, 'one line logged, one set of fields made');
  assert.equal(lines[0]?.n, 1);
  limiter.flushAll();
});

test('a peer is its address without the port', () => {
  assert.equal(peerSource('127.0.0.1:51234'), '127.0.0.1');
  assert.equal(peerSource('[::1]:51234'), '[::1]');
  assert.equal(peerSource('unix:/run/sds.sock'), 'unix:/run/sds.sock');
});
