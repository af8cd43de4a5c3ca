// Server-initiated pushes over real gRPC: Envoy never asks again, so every change that affects a
// subscribed secret must reach the stream without a request (SPEC §2 Rotation, §4).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { RunningServer } from '../../src/server/serve.js';
import type { DiscoveryResponse } from '../../src/xds/messages.js';
import { SotwClient, makeClient, secretsOf, spiffeTrustDomains, tlsCertificate } from './envoy-client.js';
import {
  DEFAULT_TD,
  PAYMENTS_TD,
  WEB_LABELS,
  dataplaneYaml,
  leafInfo,
  makeWorld,
  meshTrustYaml,
  paymentsIdentityYaml,
  startWorldServer,
  PAY_LABELS,
  type World,
} from './world.js';

const FANOUT = 100;
const extra: Record<string, Record<string, string>> = {};
for (let i = 0; i < FANOUT; i++) extra[`p${i}`] = { app: 'fleet', 'k8s.kuma.io/namespace': 'fleet', 'k8s.kuma.io/service-account': `p${i}` };

let world: World;
let s: RunningServer;
let channels: grpc.Client[];
const open: SotwClient[] = [];

function stream(node: string, i = 0): SotwClient {
  const c = new SotwClient(s.address, { node, client: channels[i % channels.length] });
  open.push(c);
  return c;
}

const domainsOf = (r: DiscoveryResponse) => {
  const b = secretsOf(r).get('system_trust_bundle');
  return b ? spiffeTrustDomains(b).map((t) => t.name) : undefined;
};
const defaultCert = (r: DiscoveryResponse) => {
  const d = secretsOf(r).get('default');
  return d ? leafInfo(tlsCertificate(d).certChainPem) : undefined;
};

before(async () => {
  world = makeWorld({ extraDataplanes: extra });
  s = await startWorldServer(world);
  // Several HTTP/2 connections, as many Envoys would open.
  channels = Array.from({ length: 10 }, () => makeClient(s.address));
});

after(async () => {
  for (const c of open) c.close();
  for (const ch of channels) ch.close();
  await s.close();
  world.cleanup();
});

describe('pushes without a client request', () => {
  it(`pushes a MeshTrust added to the resource directory to ${FANOUT} connected streams within 2 s, and its removal`, async (t) => {
    const clients = Array.from({ length: FANOUT }, (_, i) => stream(`default.p${i}`, i));
    for (const c of clients) c.request(['system_trust_bundle']);
    await Promise.all(clients.map((c) => c.ackUntil('initial bundle', (r) => domainsOf(r) !== undefined)));
    for (const c of clients) await c.expectNothing(0);

    const t0 = Date.now();
    world.write('fanout.yaml', meshTrustYaml('fanout', 'fanout.example', [world.cas.anyDomain.certPem]));
    const got = await Promise.all(
      clients.map((c) => c.ackUntil('fanout.example', (r) => domainsOf(r)?.includes('fanout.example') === true, 4000).then(() => Date.now() - t0)),
    );
    const slowest = Math.max(...got);
    t.diagnostic(`slowest of ${FANOUT} streams got the new trust domain after ${slowest} ms`);
    assert.ok(slowest <= 2000, `slowest stream got the new trust domain after ${slowest} ms (bound 2000 ms)`);

    const t1 = Date.now();
    world.remove('fanout.yaml');
    const gone = await Promise.all(
      clients.map((c) => c.ackUntil('fanout.example removed', (r) => domainsOf(r)?.includes('fanout.example') === false, 4000).then(() => Date.now() - t1)),
    );
    assert.ok(Math.max(...gone) <= 2000, `removal pushed to every stream within ${Math.max(...gone)} ms`);
    for (const c of clients) c.close();
  });

  it('pushes a rotated SVID (new serial) without a request', async () => {
    const c = stream('default.web');
    c.request(['default']);
    const first = await c.ackUntil('first SVID', (r) => defaultCert(r) !== undefined);
    const before = defaultCert(first)!;
    s.svids.rotate('default.web');
    const pushed = await c.ackUntil('rotated SVID', () => true, 3000);
    const afterRot = defaultCert(pushed)!;
    assert.notEqual(afterRot.serial, before.serial, 'new certificate');
    assert.equal(afterRot.uri, before.uri, 'same identity');
  });

  it('pushes a new SVID when a Dataplane label change changes the SPIFFE ID', async () => {
    const c = stream('default.web');
    c.request(['default']);
    const first = await c.ackUntil('first SVID', (r) => defaultCert(r) !== undefined);
    assert.equal(defaultCert(first)!.uri, `spiffe://${DEFAULT_TD}/ns/shop/sa/web`);
    world.write(
      'dataplanes.yaml',
      [dataplaneYaml('web', { ...WEB_LABELS, 'k8s.kuma.io/service-account': 'web-v2' }), dataplaneYaml('pay', PAY_LABELS)]
        .concat(Object.entries(extra).map(([n, l]) => dataplaneYaml(n, l)))
        .join('---\n'),
    );
    const pushed = await c.ackUntil('SVID with the new service account', (r) => defaultCert(r)?.uri === `spiffe://${DEFAULT_TD}/ns/shop/sa/web-v2`, 4000);
    assert.ok(pushed);
  });

  it('moves the proxy to a more specific MeshIdentity (new trust domain and SPIFFE ID) when a selector changes', async () => {
    const c = stream('default.web');
    c.request(['default']);
    const first = await c.ackUntil('first SVID', (r) => defaultCert(r) !== undefined);
    assert.ok(defaultCert(first)!.uri.startsWith(`spiffe://${DEFAULT_TD}/`));
    const { payInt, payRoot } = world.cas;
    // payments now selects app=web (one label beats identity's zero).
    world.write('payments.yaml', paymentsIdentityYaml({ chainPem: payInt.certPem + payRoot.certPem, keyPem: payInt.keyPem }, { app: 'web' }));
    const pushed = await c.ackUntil('SVID of the payments identity', (r) => defaultCert(r)?.uri.startsWith(`spiffe://${PAYMENTS_TD}/`) === true, 4000);
    assert.match(defaultCert(pushed)!.uri, new RegExp(`^spiffe://${PAYMENTS_TD.replace(/\./g, '\\.')}/ns/shop/sa/`));
    assert.match(defaultCert(pushed)!.issuer, /payments-int/);
  });
});
