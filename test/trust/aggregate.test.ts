import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expiredCas, aggregateTrust, flatBundlePem } from '../../src/trust/aggregate.js';
import { meshTrust } from '../helpers/resources.js';
import { makeCa, makeExpiredCa } from '../helpers/openssl.js';
import { readFileSync } from 'node:fs';
import { makeCert, makeIntermediateCa, makeRootCa, openssl, tempDir } from '../pki/helpers.js';

const caA1 = makeCa('a1');
const caA2 = makeCa('a2');
const caB = makeCa('b');
const expired = await makeExpiredCa('old');

test('one entry per trust domain, sorted, with same-domain CAs merged', () => {
  const bundle = aggregateTrust(
    [
      meshTrust('zeta', 'b.example', [caB.certPem]),
      meshTrust('alpha', 'a.example', [caA1.certPem]),
      meshTrust('beta', 'a.example', [caA2.certPem]),
    ],
    'default',
  );
  assert.deepEqual(bundle.domains.map((d) => d.trustDomain), ['a.example', 'b.example']);
  const a = bundle.domains[0]!;
  assert.equal(a.cas.length, 2);
  assert.equal((a.pem.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
});

test('the same CA in two MeshTrusts or twice in one bundle is served once', () => {
  const bundle = aggregateTrust(
    [meshTrust('one', 'a.example', [caA1.certPem + caA1.certPem]), meshTrust('two', 'a.example', [caA1.certPem])],
    'default',
  );
  assert.equal(bundle.domains[0]!.cas.length, 1);
  assert.deepEqual(bundle.domains[0]!.cas[0]!.sources, ['one', 'two']);
});

test('MeshTrusts of other meshes are ignored', () => {
  const bundle = aggregateTrust([meshTrust('other', 'o.example', [caB.certPem], 'other-mesh')], 'default');
  assert.deepEqual(bundle.domains, []);
});

test('expired CAs are reported with their trust domain and source, judged at the time asked', () => {
  const bundle = aggregateTrust([meshTrust('legacy', 'a.example', [expired.certPem, caA1.certPem])], 'default');
  const now = expiredCas(bundle, new Date());
  assert.equal(now.length, 1);
  assert.equal(now[0]!.source, 'legacy');
  assert.equal(now[0]!.trustDomain, 'a.example');
  // The same bundle, asked after the valid CA's end too: both.
  const later = new Date(Math.max(...bundle.domains[0]!.cas.map((c) => c.notAfter.getTime())) + 1000);
  assert.equal(expiredCas(bundle, later).length, 2);
});

test('the flat bundle carries every distinct CA of the mesh once', () => {
  const bundle = aggregateTrust(
    [meshTrust('x', 'a.example', [caA1.certPem]), meshTrust('y', 'b.example', [caB.certPem, caA1.certPem])],
    'default',
  );
  assert.equal((flatBundlePem(bundle).match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
});

test('a CA bundle whose PEM is not all certificates is not half-used: none of it is trusted, and it is reported', () => {
  // A damaged block between two good CAs: the splitter stopped there, so the first CA alone was trusted, silently.
  const damaged = caA1.certPem + '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' + caA2.certPem;
  const bundle = aggregateTrust([meshTrust('damaged', 'a.example', [damaged]), meshTrust('zeta', 'b.example', [caB.certPem])], 'default');
  assert.deepEqual(bundle.domains.map((d) => d.trustDomain), ['b.example'], 'the damaged bundle trusted nothing of a.example');
  assert.deepEqual(bundle.rejected, [{ trustDomain: 'a.example', source: 'damaged', index: 0, reason: 'PEM block 2 is not an X.509 certificate' }]);
  // A good bundle of the same MeshTrust is still used; valid input reports nothing.
  const mixed = aggregateTrust([meshTrust('two', 'a.example', [damaged, caA2.certPem])], 'default');
  assert.deepEqual(mixed.domains[0]!.cas.map((c) => c.pem), [aggregateTrust([meshTrust('x', 'a.example', [caA2.certPem])], 'default').domains[0]!.cas[0]!.pem]);
  assert.equal(mixed.rejected?.[0]?.index, 0);
  assert.equal(aggregateTrust([meshTrust('ok', 'a.example', [caA1.certPem + caA2.certPem])], 'default').rejected, undefined);
});

test('a trust domain none of whose CAs is self-signed is reported: Envoy\'s SPIFFE validator accepts no partial chain, so it verifies none of its SVIDs', () => {
  const pki = tempDir();
  try {
    const root = makeRootCa(pki, 'agg-root');
    const inter = makeIntermediateCa(pki, 'agg-inter', root);
    const only = aggregateTrust([meshTrust('partner', 'p.example', [inter.certPem]), meshTrust('zeta', 'b.example', [caB.certPem])], 'default');
    assert.deepEqual(only.unanchored, ['p.example']);
    assert.deepEqual(only.domains.map((d) => d.trustDomain), ['b.example', 'p.example'], 'still served: ROOTCA and spiffe://td (trusted_ca) verify with partial chains');
    // The root in another MeshTrust of the domain anchors it.
    assert.equal(aggregateTrust([meshTrust('partner', 'p.example', [inter.certPem]), meshTrust('partner-root', 'p.example', [root.certPem])], 'default').unanchored, undefined);
    assert.equal(aggregateTrust([meshTrust('x', 'a.example', [caA1.certPem])], 'default').unanchored, undefined);
  } finally {
    pki.cleanup();
  }
});

test('a MeshTrust CA whose key no peer should trust (RSA under 2048 bits, secp256k1) is reported naming the MeshTrust, the CA and its key, and the rest of the mesh is still served', () => {
  const pki = tempDir();
  try {
    const weak = (name: string, genpkey: string[]): string => {
      openssl(['genpkey', ...genpkey, '-out', pki.file(`${name}.key`)]);
      return makeCert(pki, name, { subject: `/CN=${name}`, keyPem: readFileSync(pki.file(`${name}.key`), 'utf8') });
    };
    const rsa1024 = weak('weak-rsa', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024']);
    const k1 = weak('weak-k1', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1']);
    const bundle = aggregateTrust([meshTrust('legacy', 'a.example', [caA1.certPem + rsa1024]), meshTrust('zeta', 'b.example', [k1, caB.certPem])], 'default');
    assert.deepEqual(bundle.unusable, [
      { trustDomain: 'a.example', source: 'legacy', subject: 'CN=weak-rsa', reason: 'an RSA 1024-bit key; at least 2048 bits are required' },
      { trustDomain: 'b.example', source: 'zeta', subject: 'CN=weak-k1', reason: 'an EC key on curve secp256k1; the curve must be P-256, P-384 or P-521' },
    ]);
    // Reported, not dropped: what was trusted stays trusted (a restart must not change what a mesh trusts).
    assert.deepEqual(bundle.domains.map((d) => d.cas.length), [2, 2]);
    assert.equal(aggregateTrust([meshTrust('x', 'a.example', [caA1.certPem])], 'default').unusable, undefined);
  } finally {
    pki.cleanup();
  }
});
