// A newly connected proxy gets one complete first answer: the stream waits (boundedly) for the
// proxy's first SVID instead of answering with the trust bundle alone and pushing the identity after.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { SotwClient, secretsOf } from './envoy-client.js';
import { serverFixture } from './fixture.js';

const f = serverFixture({
  world: {
    extraDataplanes: Object.fromEntries(
      Array.from({ length: 20 }, (_, i) => [`fresh-${i}`, { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': `fresh-${i}` }]),
    ),
  },
});


it('answers a new proxy once, with its identity and its trust bundle together', async () => {
  const clients = Array.from({ length: 20 }, (_, i) => new SotwClient(f.server.address, { node: `default.fresh-${i}`, client: f.channel }));
  f.open.push(...clients);
  for (const c of clients) c.request(['default', 'system_trust_bundle']);
  for (const c of clients) {
    const res = await c.next(10_000);
    c.ack(res);
    assert.deepEqual([...secretsOf(res).keys()].sort(), ['default', 'system_trust_bundle']);
    await c.expectNothing(200);
  }
});

it('does not hold the trust bundle of a proxy that can get no identity', async () => {
  const c = new SotwClient(f.server.address, { node: 'default.not-registered', client: f.channel });
  f.open.push(c);
  const started = Date.now();
  c.request(['default', 'system_trust_bundle']);
  const res = await c.next(5_000);
  assert.deepEqual([...secretsOf(res).keys()], ['system_trust_bundle']);
  assert.ok(Date.now() - started < 900, 'answered without waiting for the identity bound');
});
