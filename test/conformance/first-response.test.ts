// A newly connected proxy gets one complete first answer: the stream waits (boundedly) for the
// proxy's first SVID instead of answering with the trust bundle alone and pushing the identity after.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { SotwClient, secretsOf, tlsCertificate } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { makeCa } from '../helpers/openssl.js';
import { meshIdentityYaml } from '../helpers/yaml.js';

const f = serverFixture({
  world: {
    extraDataplanes: Object.fromEntries(
      [
        ...Array.from({ length: 20 }, (_, i) => [`fresh-${i}`, { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': `fresh-${i}` }]),
        ...Array.from({ length: 4 }, (_, i) => [`rsa-${i}`, { app: 'rsa', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': `rsa-${i}` }]),
      ],
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

it("answers a stream that asks only for the trust bundle at once, without waiting for its proxy's SVID", async () => {
  // RSA leaves take 90 ms or more to generate here (EC ones well under 1 ms): long enough to see
  // which first answer waited for the SVID.
  const ca = makeCa('rsa-root', { trustDomain: 'rsa.test', rsa: true });
  f.world.write('rsa.yaml', meshIdentityYaml('rsa', { namespace: 'kuma-system', matchLabels: { app: 'rsa' }, trustDomain: 'rsa.test', ca, insecureAllowSelfSigned: true }));
  const probe = new SotwClient(f.server.address, { node: 'default.rsa-0', client: f.channel });
  f.open.push(probe);
  probe.request(['default']);
  const uriOf = (pem: string) => new X509Certificate(pem).subjectAltName ?? '';
  await probe.ackUntil('an SVID of the RSA identity', (r) => uriOf(tlsCertificate(secretsOf(r).get('default')!).certChainPem).includes('spiffe://rsa.test/'), 10_000);

  for (const name of ['rsa-1', 'rsa-2', 'rsa-3']) {
    const identity = new SotwClient(f.server.address, { node: `default.${name}`, client: f.channel });
    const trust = new SotwClient(f.server.address, { node: `default.${name}`, client: f.channel });
    f.open.push(identity, trust);
    identity.request(['default']);
    trust.request(['system_trust_bundle']);
    const [identityAt, trustAt] = await Promise.all([identity.next(10_000).then(() => Date.now()), trust.next(10_000).then(() => Date.now())]);
    assert.ok(identityAt - trustAt >= 30, `${name}: the trust bundle came ${identityAt - trustAt} ms before the SVID; it must not wait for it`);
  }
});
