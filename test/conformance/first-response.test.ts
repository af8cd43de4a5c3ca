// A newly connected proxy gets one complete first answer: the stream waits (boundedly) for the
// proxy's first SVID instead of answering with the trust bundle alone and pushing the identity after.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { SotwClient, secretsOf, tlsCertificate } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { leafInfo } from './world.js';
import { makeCa } from '../helpers/openssl.js';
import { proxyMetaKey } from '../../src/server/publisher.js';
import { meshIdentityYaml } from '../helpers/yaml.js';

const f = serverFixture({
  world: {
    extraDataplanes: Object.fromEntries(
      [
        ...Array.from({ length: 20 }, (_, i) => [`fresh-${i}`, { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': `fresh-${i}` }]),
        ...Array.from({ length: 7 }, (_, i) => [`rsa-${i}`, { app: 'rsa', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': `rsa-${i}` }]),
      ],
    ),
  },
  // What a stream does while its proxy's SVID is issued is what this file is about: none prepared.
  server: { prepareSvids: 0 },
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

// RSA leaves take 90 ms or more to generate here (EC ones well under 1 ms): long enough to see
// which answer waited for a new proxy's SVID.
describe('while a new proxy\'s SVID is still being issued', () => {
  before(async () => {
    const ca = makeCa('rsa-root', { trustDomain: 'rsa.test', rsa: true });
    f.world.write('rsa.yaml', meshIdentityYaml('rsa', { namespace: 'kuma-system', matchLabels: { app: 'rsa' }, trustDomain: 'rsa.test', ca, insecureAllowSelfSigned: true }));
    const probe = new SotwClient(f.server.address, { node: 'default.rsa-0', client: f.channel });
    f.open.push(probe);
    probe.request(['default']);
    await probe.ackUntil('an SVID of the RSA identity', (r) => leafInfo(tlsCertificate(secretsOf(r).get('default')!).certChainPem).uri.startsWith('spiffe://rsa.test/'), 10_000);
  });

  /** Opens a stream for `default` on a proxy never seen before; resolves when its first answer came. */
  const identityAnswered = (node: string) => {
    const identity = new SotwClient(f.server.address, { node, client: f.channel });
    f.open.push(identity);
    identity.request(['default']);
    return identity.next(10_000).then(() => Date.now());
  };

  it('a stream that asks only for the trust bundle is answered at once', async () => {
    for (const name of ['rsa-1', 'rsa-2', 'rsa-3']) {
      const identity = identityAnswered(`default.${name}`);
      const trust = new SotwClient(f.server.address, { node: `default.${name}`, client: f.channel });
      f.open.push(trust);
      trust.request(['system_trust_bundle']);
      const [identityAt, trustAt] = await Promise.all([identity, trust.next(10_000).then(() => Date.now())]);
      assert.ok(identityAt - trustAt >= 30, `${name}: the trust bundle came ${identityAt - trustAt} ms before the SVID; it must not wait for it`);
    }
  });

  it('a first request with more names than the limit is refused at once, names unread', async () => {
    const identity = identityAnswered('default.rsa-4');
    const c = new SotwClient(f.server.address, { node: 'default.rsa-4', client: f.channel });
    f.open.push(c);
    c.request(['default', ...Array.from({ length: 1000 }, (_, i) => `spiffe://td-${i}.example`)]);
    const end = await c.ended;
    const refusedAt = Date.now();
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /too many resource names in one request \(limit 1000\)/);
    assert.equal(c.received.length, 0);
    const identityAt = await identity;
    assert.ok(identityAt - refusedAt >= 30, `refused ${identityAt - refusedAt} ms before the SVID was issued; it must not wait for it`);
  });

  it('a first request naming a secret that can never exist beside default is refused at once, not after the proxy\'s SVID', async () => {
    const identity = identityAnswered('default.rsa-6');
    const c = new SotwClient(f.server.address, { node: 'default.rsa-6', client: f.channel });
    f.open.push(c);
    c.request(['default', 'no-such-kind-of-name']);
    const end = await c.ended;
    const refusedAt = Date.now();
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /no-such-kind-of-name/);
    assert.equal(c.received.length, 0);
    const identityAt = await identity;
    assert.ok(identityAt - refusedAt >= 30, `refused ${identityAt - refusedAt} ms before the SVID was issued; it must not wait for it`);
  });

  it('an ADS first request for a type other than secrets is refused at once, not after the proxy\'s SVID', async () => {
    const identity = identityAnswered('default.rsa-5');
    const c = new SotwClient(f.server.address, { node: 'default.rsa-5', api: 'ads' });
    f.open.push(c);
    c.send({ version_info: '', resource_names: [], type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', response_nonce: '' });
    const end = await c.ended;
    const refusedAt = Date.now();
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /unsupported type_url "type\.googleapis\.com\/envoy\.config\.cluster\.v3\.Cluster"/);
    const identityAt = await identity;
    assert.ok(identityAt - refusedAt >= 30, `refused ${identityAt - refusedAt} ms before the SVID was issued; it must not wait for it`);
  });
});

it('a trust-only stream watches only the mesh bundle: its proxy\'s SVID neither wakes nor re-plans it', async () => {
  const identity = new SotwClient(f.server.address, { node: 'default.fresh-0', client: f.channel });
  f.open.push(identity);
  identity.request(['default']);
  const first = await identity.next(10_000);
  identity.ack(first);
  const [pk] = f.server.svids.keysFor('default.fresh-0');
  assert.ok(pk, 'the proxy is attached');
  const trust = f.server.publisher.resolverFor(pk, 'default');
  const trustSub = { wildcard: false, names: ['system_trust_bundle'] };
  const before = trust.resolve(trustSub);
  assert.deepEqual([...before.resources.keys()], ['system_trust_bundle']);
  assert.equal(trust.watchKeys.length, 1, `watches ${JSON.stringify(trust.watchKeys)}`);
  assert.ok(!trust.watchKeys.includes(proxyMetaKey(pk)));
  const aliases = f.server.publisher.resolverFor(pk, 'default');
  aliases.resolve({ wildcard: false, names: ['default'] });
  assert.ok(aliases.watchKeys.includes(proxyMetaKey(pk)), 'an identity alias follows the proxy\'s identity');
  const plan = trust.watchKeys;
  assert.ok(f.server.svids.rotate(pk));
  const pushed = await identity.next(10_000);
  assert.notEqual(tlsCertificate(secretsOf(pushed).get('default')!).certChainPem, tlsCertificate(secretsOf(first).get('default')!).certChainPem);
  const after = trust.resolve(trustSub);
  assert.equal(after.resources.get('system_trust_bundle'), before.resources.get('system_trust_bundle'));
  assert.equal(trust.watchKeys, plan, 'the plan of a trust-only subscription is kept across SVIDs');
});
