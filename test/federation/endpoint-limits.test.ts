// The bundle endpoint faces other zones (often on 0.0.0.0): what a client can hold of this process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { BUNDLE_ENDPOINT_MAX_CONNECTIONS, startBundleEndpoint } from '../../src/federation/endpoint.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { makeCa } from '../helpers/openssl.js';
import { httpsGet, loadTestCa, publishedDomain } from './helpers.js';

test('the bundle endpoint keeps at most 128 connections: one more closes one at once (logged), so a peer cannot take the descriptors the gRPC listener and the store need; it answers again once they go', async () => {
  const ca = loadTestCa(makeCa('cap', { trustDomain: 'cap.test' }));
  const warnings: { o: object; m: string }[] = [];
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), log: { info: () => undefined, warn: (o, m) => warnings.push({ o, m }) } });
  const closed: Socket[] = [];
  const open = (from = '127.0.0.1'): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect({ port: ep.port, host: '127.0.0.1', localAddress: from }, () => resolve(s));
      s.on('error', reject);
      s.on('close', () => closed.push(s));
      s.resume(); // so the server's close is seen
    });
  const held: Socket[] = [];
  try {
    await ep.setDomains([publishedDomain('cap.test', ca)]);
    assert.equal(BUNDLE_ENDPOINT_MAX_CONNECTIONS, 128);
    for (let i = 0; i < BUNDLE_ENDPOINT_MAX_CONNECTIONS; i++) held.push(await open());
    // Let the server accept them all before the ones over the limit.
    await new Promise((r) => setTimeout(r, 200));
    held.push(await open(), await open());
    const t0 = Date.now();
    while (closed.length < 2 && Date.now() - t0 < 3_000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed.length, 2, 'two connections over the limit: two closed at once (not after the 10 s client timeout)');
    const dropped = warnings.filter((w) => /connection closed/.test(w.m));
    assert.equal(dropped.length, 1, 'two refusals in a burst: one log line');
    assert.equal((dropped[0]!.o as { limit: number }).limit, 128);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const ok = await httpsGet(ep.port, '/cap.test', { caPem: ca.trustPem, servername: 'cap.test' });
    assert.equal(ok.status, 200);
  } finally {
    for (const s of held) s.destroy();
    await ep.close();
  }
});

test('one peer holding all 128 bundle endpoint connections (silent, before its TLS handshake) does not shut the followers out: its oldest is closed to make room', async () => {
  const ca = loadTestCa(makeCa('fair', { trustDomain: 'fair.test' }));
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore() });
  const closed = new Set<Socket>();
  const held: Socket[] = [];
  try {
    await ep.setDomains([publishedDomain('fair.test', ca)]);
    for (let i = 0; i < BUNDLE_ENDPOINT_MAX_CONNECTIONS; i++) {
      const s = await new Promise<Socket>((resolve, reject) => {
        const c = connect({ port: ep.port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => resolve(c));
        c.on('error', reject);
      });
      s.on('close', () => closed.add(s));
      s.on('error', () => undefined);
      s.resume();
      held.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
    // A follower, over TLS, from another address.
    const ok = await httpsGet(ep.port, '/fair.test', { caPem: ca.trustPem, servername: 'fair.test' });
    assert.equal(ok.status, 200);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(held.filter((s) => closed.has(s)), held.slice(0, 1), 'the holder lost its oldest connection');
  } finally {
    for (const s of held) s.destroy();
    await ep.close();
  }
});
