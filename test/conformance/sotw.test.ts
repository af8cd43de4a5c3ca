// SDS state-of-the-world conformance over real gRPC on loopback, with a client that behaves as
// Envoy does (SPEC §3–4, ENVOY-NOTES "Envoy as an SDS client", SPIRE agent semantics).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { DiscoveryResponse } from '../../src/xds/messages.js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import {
  SotwClient,
  secretsOf,
  spiffeTrustDomains,
  tlsCertificate,
  trustedCa,
  type DecodedSecret,
} from './envoy-client.js';
import {
  ALPHA_TD,
  DEFAULT_TD,
  KRI_IDENTITY,
  KRI_PAYMENTS,
  PARTNER_TD,
  PAYMENTS_TD,
  PAY_SPIFFE,
  WEB_SPIFFE,
  leafInfo,
  meshTrustYaml,
  opensslVerify,
  splitPem,
  } from './world.js';
import { serverFixture } from './fixture.js';

const ALL_TDS = [ALPHA_TD, DEFAULT_TD, PARTNER_TD, PAYMENTS_TD];

const f = serverFixture();

function stream(node = 'default.web'): SotwClient {
  const c = new SotwClient(f.server.address, { node, client: f.channel });
  f.open.push(c);
  return c;
}

/** Reads responses (ACKing each, as Envoy does) until one carries every name in `names`. */
async function until(c: SotwClient, names: string[], timeoutMs = 10000): Promise<{ res: DiscoveryResponse; secrets: Map<string, DecodedSecret> }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await c.next(Math.max(1, deadline - Date.now()));
    c.ack(res);
    const secrets = secretsOf(res);
    if (names.every((n) => secrets.has(n))) return { res, secrets };
  }
}



describe('SotW StreamSecrets protocol', () => {
  it('answers the first request with version_info, a nonce, the Secret type and exactly the requested secret', async () => {
    const c = stream();
    c.request(['ROOTCA']);
    const res = await c.next();
    assert.ok(res.version_info !== '', 'version_info set');
    assert.ok(res.nonce !== '', 'nonce set');
    assert.equal(res.type_url, SECRET_TYPE_URL);
    assert.deepEqual([...secretsOf(res).keys()], ['ROOTCA']);
    for (const any of res.resources) assert.equal(any.type_url, SECRET_TYPE_URL);
  });

  it('gives every response a fresh nonce and a new version_info', async () => {
    const c = stream();
    c.request(['default']);
    const seen = new Set<string>();
    const versions = new Set<string>();
    let res = await c.next();
    for (let i = 0; i < 4; i++) {
      assert.ok(!seen.has(res.nonce), `nonce ${res.nonce} reused`);
      assert.ok(!versions.has(res.version_info), `version ${res.version_info} reused`);
      seen.add(res.nonce);
      versions.add(res.version_info);
      // A change of names (acking the last response) must be answered with a new nonce.
      c.lastGoodVersion = res.version_info;
      c.request(i % 2 === 0 ? ['default', 'ROOTCA'] : ['default'], { response_nonce: res.nonce, version_info: res.version_info });
      res = await c.next();
    }
  });

  it('sends nothing in reply to an ACK', async () => {
    const c = stream();
    c.request(['default', 'system_trust_bundle']);
    const res = await c.next();
    c.ack(res);
    await c.expectNothing(300);
  });

  it('counts a NACK, does not resend the rejected secret, and still pushes later changes', async () => {
    const c = stream('default.pay');
    c.request(['default']);
    const first = await c.next();
    c.ack(first);
    f.server.svids.rotate('default.pay');
    const second = await c.next();
    const before = await f.nackCount();
    c.nack(second, 'certificate rejected by test');
    await c.expectNothing(500);
    assert.equal(await f.nackCount(), before + 1, 'NACK counted in mesh_sds_nacks_total');
    const metricsText = await f.server.metrics.render();
    assert.match(metricsText, /mesh_sds_nacks_total \d+/);
    // The stream is not stuck: the next change is pushed.
    f.server.svids.rotate('default.pay');
    const third = await c.next();
    assert.notEqual(third.nonce, second.nonce);
    assert.notEqual(leafInfo(tlsCertificate(secretsOf(third).get('default')!).certChainPem).serial, leafInfo(tlsCertificate(secretsOf(second).get('default')!).certChainPem).serial);
  });

  it('ignores a request whose response_nonce is stale, even when it changes the names', async () => {
    const c = stream();
    c.request(['default']);
    const r1 = await c.next();
    c.lastGoodVersion = r1.version_info;
    c.request(['default', 'ROOTCA'], { response_nonce: r1.nonce, version_info: r1.version_info });
    const r2 = await c.next();
    assert.deepEqual([...secretsOf(r2).keys()].sort(), ['ROOTCA', 'default']);
    // r1's nonce is stale now: this request must be dropped.
    c.request(['default', 'ROOTCA', 'system_trust_bundle'], { response_nonce: r1.nonce, version_info: r1.version_info });
    await c.expectNothing(300);
    // The same change with the current nonce is answered.
    c.request(['default', 'ROOTCA', 'system_trust_bundle'], { response_nonce: r2.nonce, version_info: r2.version_info });
    const r3 = await c.next();
    assert.ok(secretsOf(r3).has('system_trust_bundle'));
  });

  it('answers a first request that carries a nonce from an earlier stream (spire#813)', async () => {
    const old = stream();
    old.request(['default']);
    const r = await old.next();
    old.close();
    const c = stream();
    c.request(['default'], { response_nonce: r.nonce, version_info: r.version_info });
    const res = await c.next();
    assert.ok(secretsOf(res).has('default'));
  });

  it('accepts the node on the first request only: later requests without node are served', async () => {
    const c = stream();
    c.request(['ROOTCA']);
    const r1 = await c.next();
    c.ack(r1);
    // SotwClient omits node after the first request; be explicit about it here.
    c.send({ version_info: r1.version_info, resource_names: ['ROOTCA', 'default'], type_url: SECRET_TYPE_URL, response_nonce: r1.nonce, node: null });
    c.names = ['ROOTCA', 'default'];
    const r2 = await c.next();
    assert.deepEqual([...secretsOf(r2).keys()].sort(), ['ROOTCA', 'default']);
  });

  it('answers a change of subscribed names', async () => {
    const c = stream();
    c.request(['ROOTCA']);
    c.ack(await c.next());
    c.request(['ROOTCA', `spiffe://${PARTNER_TD}`], { response_nonce: c.received.at(-1)!.nonce });
    const res = await c.next();
    assert.ok(secretsOf(res).has(`spiffe://${PARTNER_TD}`));
  });

  it('fails the stream with INVALID_ARGUMENT naming an unknown-shape name, on the first or a later request', async () => {
    const c = stream();
    c.request(['default', 'no-such-kind-of-name']);
    const end = await c.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /no-such-kind-of-name/);
    assert.equal(c.received.length, 0, 'nothing sent before the failure');

    const later = stream();
    later.request(['default']);
    const r = await later.next();
    later.ack(r);
    later.request(['default', 'kri_mid_othermesh_default_kuma-system_identity_'], { response_nonce: r.nonce });
    const end2 = await later.ended;
    assert.equal(end2.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end2.details, /kri_mid_othermesh_default_kuma-system_identity_/);
  });

  it('fails a stream asking for the empty-string name with INVALID_ARGUMENT: [""] is a name that can never exist, not a wildcard, and is not dropped beside other names', async () => {
    for (const names of [[''], ['default', '']]) {
      const c = stream();
      c.request(names);
      // Bounded: before the fix the stream was served and stayed open.
      const end = await Promise.race([c.ended, new Promise<{ code: number; details: string }>((r) => setTimeout(() => r({ code: -1, details: 'still open after 3 s' }), 3000))]);
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(names)}: ${end.details}`);
      assert.match(end.details, /unknown resource name ""/);
      assert.equal(c.received.length, 0, `${JSON.stringify(names)}: nothing served (it was everything the proxy may have, or "default" alone)`);
    }
  });

  it('holds a valid name that is not resolvable yet and answers it as soon as a MeshTrust for it is written', async () => {
    const c = stream();
    c.request(['spiffe://not-yet.example']);
    await c.expectNothing(400);
    const t0 = Date.now();
    const ca = f.world.cas.anyDomain; // any CA that names no other trust domain will do
    f.world.write('not-yet.yaml', meshTrustYaml('not-yet', 'not-yet.example', [ca.certPem]));
    try {
      const res = await c.next(3000);
      assert.ok(Date.now() - t0 < 2000, 'pushed within 2 s of the file write');
      const got = secretsOf(res).get('spiffe://not-yet.example');
      assert.ok(got);
      assert.equal(trustedCa(got).trim(), ca.certPem.trim());
    } finally {
      f.world.remove('not-yet.yaml');
    }
  });

  it('gives a wildcard subscription (empty names on the first request) every secret the proxy may have', async () => {
    // Wait for not-yet.example from the previous test to be gone, whatever the order.
    const c = stream();
    c.request([]);
    const expected = ['default', WEB_SPIFFE, KRI_IDENTITY, 'ROOTCA', 'system_trust_bundle', 'ALL', ...ALL_TDS.map((td) => `spiffe://${td}`)].sort();
    const deadline = Date.now() + 5000;
    let names: string[] = [];
    while (Date.now() < deadline) {
      const res = await c.next(deadline - Date.now());
      c.ack(res);
      names = [...secretsOf(res).keys()].sort();
      if (JSON.stringify(names) === JSON.stringify(expected)) break;
    }
    assert.deepEqual(names, expected);
  });

  it('answers a resubscribe after an unsubscribe (go-control-plane#431)', async () => {
    const c = stream();
    c.request(['default', 'ROOTCA']);
    const r1 = await c.next();
    c.ack(r1);
    c.request(['ROOTCA'], { response_nonce: r1.nonce, version_info: r1.version_info });
    const r2 = await c.next();
    assert.deepEqual([...secretsOf(r2).keys()], ['ROOTCA']);
    c.ack(r2);
    c.request(['default', 'ROOTCA'], { response_nonce: r2.nonce, version_info: r2.version_info });
    const r3 = await c.next();
    assert.ok(secretsOf(r3).has('default'), 'resubscribed name answered');

    // Envoy's own pattern: one name per stream, unsubscribed with an empty list, then asked again.
    const e = stream();
    e.request(['default']);
    const a = await e.next();
    e.ack(a);
    e.request([], { response_nonce: a.nonce, version_info: a.version_info });
    await e.expectNothing(200);
    e.request(['default'], { response_nonce: a.nonce, version_info: a.version_info });
    const b = await e.next();
    assert.ok(secretsOf(b).has('default'));
  });

  it('never sends a secret whose name differs from the requested ones', async () => {
    const names = ['default', WEB_SPIFFE, KRI_IDENTITY, 'ROOTCA', `spiffe://${PARTNER_TD}`];
    const c = stream();
    c.request(names);
    await until(c, names);
    f.server.svids.rotate('default.web');
    const pushed = await c.next();
    c.ack(pushed);
    for (const res of c.received) for (const name of secretsOf(res).keys()) assert.ok(names.includes(name), `unrequested secret ${name}`);
  });
});

describe('SotW secret content (SPEC §3)', () => {
  let web: Map<string, DecodedSecret>;
  let pay: Map<string, DecodedSecret>;
  const trustNames = ['system_trust_bundle', 'ALL', 'ROOTCA', ...ALL_TDS.map((td) => `spiffe://${td}`)];

  before(async () => {
    const w = stream('default.web');
    w.request(['default', WEB_SPIFFE, KRI_IDENTITY, ...trustNames]);
    web = (await until(w, ['default', WEB_SPIFFE, KRI_IDENTITY, ...trustNames])).secrets;
    const p = stream('default.pay');
    p.request(['default', PAY_SPIFFE, KRI_PAYMENTS, ...trustNames]);
    pay = (await until(p, ['default', PAY_SPIFFE, KRI_PAYMENTS, ...trustNames])).secrets;
  });

  it('serves the same tls_certificate (chain and key) under the KRI, default and the SPIFFE ID', () => {
    for (const [secrets, spiffe, kri] of [
      [web, WEB_SPIFFE, KRI_IDENTITY],
      [pay, PAY_SPIFFE, KRI_PAYMENTS],
    ] as const) {
      const d = tlsCertificate(secrets.get('default')!);
      const byId = tlsCertificate(secrets.get(spiffe)!);
      const byKri = tlsCertificate(secrets.get(kri)!);
      assert.equal(byId.certChainPem, d.certChainPem);
      assert.equal(byKri.certChainPem, d.certChainPem);
      assert.equal(byId.keyPem, d.keyPem);
      assert.equal(byKri.keyPem, d.keyPem);
      assert.match(d.keyPem, /-----BEGIN (EC )?PRIVATE KEY-----/);
      assert.equal(leafInfo(d.certChainPem).uri, spiffe, 'leaf URI SAN is the SPIFFE ID');
    }
  });

  it('serves the chain up to but excluding the root: leaf + intermediate for an intermediate CA', () => {
    const chain = splitPem(tlsCertificate(pay.get('default')!).certChainPem);
    assert.equal(chain.length, 2, 'leaf + intermediate');
    assert.equal(chain[1]!.trim(), f.world.cas.payInt.certPem.trim());
  });

  it('serves the chain up to but excluding the root: the leaf alone for a self-signed (autogenerated) CA', () => {
    // SPEC §2 "full chain up to (excluding) the root"; src/pki/types.ts chainPem "excluding the self-signed root".
    const chain = splitPem(tlsCertificate(web.get('default')!).certChainPem);
    assert.equal(chain.length, 1, `expected the leaf only, got ${chain.length} certificates (the self-signed CA is included)`);
  });

  it('serves system_trust_bundle and ALL as one SPIFFE validator: domains sorted, no spiffe:// prefix, same-domain CAs joined', () => {
    for (const name of ['system_trust_bundle', 'ALL']) {
      const tds = spiffeTrustDomains(web.get(name)!);
      assert.deepEqual(
        tds.map((t) => t.name),
        ALL_TDS,
      );
      for (const t of tds) assert.ok(!t.name.startsWith('spiffe://'));
      const partner = tds.find((t) => t.name === PARTNER_TD)!;
      const pems = splitPem(partner.pem).map((p) => p.trim());
      assert.equal(pems.length, 2, 'partner-a and partner-b merged into one entry');
      assert.ok(pems.includes(f.world.cas.partnerA.certPem.trim()));
      assert.ok(pems.includes(f.world.cas.partnerB.certPem.trim()));
      const payments = tds.find((t) => t.name === PAYMENTS_TD)!;
      assert.deepEqual(splitPem(payments.pem).map((p) => p.trim()), [f.world.cas.payRoot.certPem.trim()], 'the root, not the intermediate');
      assert.deepEqual(spiffeTrustDomains(pay.get(name)!), tds, 'mesh-wide: identical for every proxy');
    }
  });

  it('serves ROOTCA as the bundle of the proxy’s own trust domain, and spiffe://td as that domain’s bundle', () => {
    const tds = new Map(spiffeTrustDomains(web.get('system_trust_bundle')!).map((t) => [t.name, t.pem]));
    assert.equal(trustedCa(web.get('ROOTCA')!), tds.get(DEFAULT_TD));
    assert.equal(trustedCa(pay.get('ROOTCA')!), tds.get(PAYMENTS_TD));
    for (const td of ALL_TDS) assert.equal(trustedCa(web.get(`spiffe://${td}`)!), tds.get(td), td);
  });

  it('serves certificates that pass openssl verify -x509_strict -purpose sslclient against their trust domain’s served bundle', () => {
    const tds = new Map(spiffeTrustDomains(web.get('system_trust_bundle')!).map((t) => [t.name, t.pem]));
    for (const [secrets, td] of [
      [web, DEFAULT_TD],
      [pay, PAYMENTS_TD],
    ] as const) {
      for (const name of ['default', td === DEFAULT_TD ? WEB_SPIFFE : PAY_SPIFFE, td === DEFAULT_TD ? KRI_IDENTITY : KRI_PAYMENTS]) {
        const chain = tlsCertificate(secrets.get(name)!).certChainPem;
        const out = opensslVerify(chain, tds.get(td)!);
        assert.match(out, /OK/);
      }
      // …and not against another domain's bundle (the validator keeps domains apart).
      assert.throws(() => opensslVerify(tlsCertificate(secrets.get('default')!).certChainPem, tds.get(PARTNER_TD)!));
    }
  });
});
