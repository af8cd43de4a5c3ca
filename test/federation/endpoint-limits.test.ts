// The bundle endpoint faces other zones (often on 0.0.0.0): what a client can hold of this process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { BUNDLE_ENDPOINT_MAX_CONNECTIONS, startBundleEndpoint } from '../../src/federation/endpoint.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { makeCa } from '../helpers/openssl.js';
import { httpsGet, loadTestCa, publishedDomain } from './helpers.js';

test('the bundle endpoint keeps at most 128 connections: more are closed at once (logged), so a peer cannot take the descriptors the gRPC listener and the store need; it answers again once they go', async () => {
  const ca = loadTestCa(makeCa('cap', { trustDomain: 'cap.test' }));
  const warnings: { o: object; m: string }[] = [];
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), log: { info: () => undefined, warn: (o, m) => warnings.push({ o, m }) } });
  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect(ep.port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });
  const held: Socket[] = [];
  try {
    await ep.setDomains([publishedDomain('cap.test', ca)]);
    assert.equal(BUNDLE_ENDPOINT_MAX_CONNECTIONS, 128);
    for (let i = 0; i < BUNDLE_ENDPOINT_MAX_CONNECTIONS; i++) held.push(await open());
    // Let the server accept them all before the ones over the limit.
    await new Promise((r) => setTimeout(r, 200));
    const extra = [await open(), await open()];
    const closed = await Promise.all(
      extra.map(
        (s) =>
          new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), 3_000);
            s.on('close', () => (clearTimeout(timer), resolve(true)));
          }),
      ),
    );
    for (const s of extra) s.destroy();
    assert.deepEqual(closed, [true, true], 'the connections over the limit are closed at once (not after the 10 s client timeout)');
    const dropped = warnings.filter((w) => /connections? over the limit/.test(w.m));
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
