// The bundle endpoint of a real server (`serve --bundle-endpoint`), fetched over real TLS by
// Node's https and openssl, and verified against the bundle it serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSpiffeBundle } from '../../src/federation/bundle.js';
import { ENDPOINT_SPIFFE_PATH } from '../../src/federation/endpoint.js';
import { makeCa, openssl } from '../helpers/openssl.js';
import { meshIdentityYaml } from '../helpers/yaml.js';
import { DEFAULT_TD, makeWorld, opensslVerify, PAYMENTS_TD, startWorldServer, waitFor } from '../conformance/world.js';
import { httpsGet, sClient } from './helpers.js';

const endpointId = (td: string) => `spiffe://${td}${ENDPOINT_SPIFFE_PATH}`;

test('serve --bundle-endpoint: GET /<td> over https_spiffe returns the SPIFFE bundle of each issuing trust domain, chosen by SNI, and 404 for others', async () => {
  const world = makeWorld();
  const server = await startWorldServer(world, { bundleEndpoint: '127.0.0.1:0' });
  const bodies: string[] = [];
  try {
    const ep = server.bundleEndpoint!;
    assert.equal(ep.profile, 'https_spiffe');
    const defaultCa = [...server.authorities.current!.identities.values()].find((s) => s.trustDomain === DEFAULT_TD)!.ca!;

    // Default trust domain: TLS verified against its CA, the peer is the endpoint's SPIFFE ID.
    const r = await httpsGet(ep.port, `/${DEFAULT_TD}`, { caPem: defaultCa.trustPem, servername: DEFAULT_TD, expectUri: endpointId(DEFAULT_TD) });
    bodies.push(r.body);
    assert.equal(r.status, 200);
    const b = decodeSpiffeBundle(r.body);
    assert.deepEqual(b.caPems, [defaultCa.trustPem]);
    assert.equal(b.refreshHintSeconds, 300);
    assert.ok(b.sequence !== undefined && b.sequence >= 1);

    // payments: an intermediate CA under a root; the bundle holds the root, the endpoint sends leaf + intermediate.
    const pay = await httpsGet(ep.port, `/${PAYMENTS_TD}`, { caPem: world.cas.payRoot.certPem, servername: PAYMENTS_TD, expectUri: endpointId(PAYMENTS_TD) });
    bodies.push(pay.body);
    assert.equal(pay.status, 200);
    const payBundle = decodeSpiffeBundle(pay.body);
    assert.equal(payBundle.caPems.length, 1);
    assert.equal(openssl(['x509', '-noout', '-fingerprint', '-sha256'], payBundle.caPems[0]), openssl(['x509', '-noout', '-fingerprint', '-sha256'], world.cas.payRoot.certPem));

    // openssl s_client verifies the chain against the served bundle; the URI SAN is the endpoint's ID.
    for (const td of [DEFAULT_TD, PAYMENTS_TD]) {
      const bundlePem = decodeSpiffeBundle(td === DEFAULT_TD ? r.body : pay.body).caPems.join('');
      const s = await sClient(ep.port, bundlePem, td);
      assert.equal(s.verify, '0 (ok)', s.text);
      assert.match(openssl(['x509', '-noout', '-ext', 'subjectAltName'], s.chainPem), new RegExp(`URI:${endpointId(td).replace(/[.]/g, '\\.')}`));
      assert.match(opensslVerify(s.chainPem, bundlePem), /OK/);
    }
    // No SNI (an IP literal): the first trust domain in name order answers.
    const noSni = await sClient(ep.port, defaultCa.trustPem);
    assert.equal(noSni.verify, '0 (ok)', noSni.text);
    assert.equal([DEFAULT_TD, PAYMENTS_TD].sort()[0], DEFAULT_TD);

    // A trust domain this server does not issue from (a MeshTrust of the world) is not served.
    for (const path of ['/partner.example', '/', '/nope%2Fx']) {
      const nf = await httpsGet(ep.port, path, { caPem: defaultCa.trustPem, servername: DEFAULT_TD });
      bodies.push(nf.body);
      assert.equal(nf.status, 404, path);
      assert.ok(typeof JSON.parse(nf.body).error === 'string');
    }
    assert.match(JSON.parse(bodies.at(-3)!).error, /no SPIFFE bundle for trust domain "partner.example"/);
    for (const body of bodies) assert.doesNotMatch(body, /PRIVATE KEY|"d"\s*:/);
  } finally {
    await server.close();
    world.cleanup();
  }
});

test('a CA roll grows spiffe_sequence, keeps the old CA in the bundle, keeps the endpoint verifiable by the old bundle; a restart never goes back', async () => {
  const world = makeWorld();
  let server = await startWorldServer(world, { bundleEndpoint: '127.0.0.1:0' });
  try {
    const ep = () => server.bundleEndpoint!;
    const before = decodeSpiffeBundle(ep().document(DEFAULT_TD)!.body);
    assert.equal(before.cas.length, 1);
    const oldBundle = before.caPems.join('');
    const svidBefore = ep().svid(DEFAULT_TD)!;

    // The roll: a new, user-provided CA for the same MeshIdentity and trust domain.
    const next = makeCa('rolled', { trustDomain: DEFAULT_TD });
    world.write('identity.yaml', meshIdentityYaml('identity', { namespace: 'kuma-system', ca: next, insecureAllowSelfSigned: true }));
    const doc = await waitFor('the bundle to change', () => {
      const d = ep().document(DEFAULT_TD);
      return d && d.sequence > before.sequence! && d;
    }, 20_000);
    const after = decodeSpiffeBundle(doc.body);
    assert.equal(after.sequence, before.sequence! + 1);
    assert.deepEqual(after.caPems, [next.certPem, ...before.caPems]);
    const served = await httpsGet(ep().port, `/${DEFAULT_TD}`, { caPem: oldBundle, servername: DEFAULT_TD, expectUri: endpointId(DEFAULT_TD) });
    assert.equal(served.status, 200);
    assert.equal(decodeSpiffeBundle(served.body).sequence, after.sequence);
    // The endpoint still presents the SVID of the old CA: a follower holding only the old bundle
    // authenticates it (above) and learns the new CA.
    assert.equal(ep().svid(DEFAULT_TD)!.serialHex, svidBefore.serialHex);
    assert.equal((await sClient(ep().port, oldBundle, DEFAULT_TD)).verify, '0 (ok)');

    // Unchanged content after a restart on the same state: same sequence, never lower.
    const port = ep().port;
    await server.close();
    server = await startWorldServer(world, { bundleEndpoint: `127.0.0.1:${port}` });
    const again = decodeSpiffeBundle(ep().document(DEFAULT_TD)!.body);
    assert.equal(again.sequence, after.sequence);
    assert.deepEqual(again.caPems, after.caPems);
  } finally {
    await server.close();
    world.cleanup();
  }
});
