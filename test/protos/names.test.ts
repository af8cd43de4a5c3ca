import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifySecretName, formatIdentityKri, isCertificateRef, type SecretNameRef } from '../../src/xds/names.js';

const cases: Array<[string, SecretNameRef]> = [
  ['kri_mid_default_default_kuma-system_identity_', { kind: 'identity', kri: { mesh: 'default', zone: 'default', namespace: 'kuma-system', name: 'identity' } }],
  // Universal resources have no namespace; global resources no zone: the segments stay empty.
  ['kri_mid_default_default__identity_', { kind: 'identity', kri: { mesh: 'default', zone: 'default', namespace: '', name: 'identity' } }],
  ['kri_mid_mesh-1___my.identity_', { kind: 'identity', kri: { mesh: 'mesh-1', zone: '', namespace: '', name: 'my.identity' } }],
  ['default', { kind: 'default' }],
  ['spiffe://default.default.mesh.local/ns/demo/sa/web', { kind: 'svid', spiffeId: 'spiffe://default.default.mesh.local/ns/demo/sa/web' }],
  ['system_trust_bundle', { kind: 'trustAll', name: 'system_trust_bundle' }],
  ['ALL', { kind: 'trustAll', name: 'ALL' }],
  ['ROOTCA', { kind: 'rootCa' }],
  ['spiffe://default.default.mesh.local', { kind: 'trustDomain', trustDomain: 'default.default.mesh.local' }],
];

const invalid: Array<[string, RegExp]> = [
  ['', /empty/],
  ['all', /unknown secret name/],
  ['Default', /unknown secret name/],
  ['rootca', /unknown secret name/],
  ['my-cert', /unknown secret name/],
  ['kri_mtp_default_default_kuma-system_trust_', /type "mtp"/], // a MeshTrust KRI names no secret
  ['kri_mid_default_default_kuma-system_identity', /not a KRI/], // trailing "_" missing
  ['kri_mid_default_default_kuma-system_identity_http', /section/],
  ['kri_mid_default_default_kuma_system_identity_', /not a KRI/], // "_" inside a segment
  ['kri_mid__default_kuma-system_identity_', /empty mesh/],
  ['kri_mid_default_default_kuma-system__', /empty name/],
  ['kri_mid_Default_default_kuma-system_identity_', /not a valid resource name/],
  ['spiffe://default.mesh/', /trailing slash/],
  ['spiffe://Default.mesh/a', /not a valid SPIFFE ID/],
  ['spiffe://td/a/../b', /dot segments/],
  // Well-formed but longer than any MeshIdentity KRI can be: a delta stream held 1,000 such names of 1 MiB each.
  [`kri_mid_default_default_kuma-system_${'a'.repeat(3000)}_`, /longer than any secret name/],
  // Within the length cap, but with segments no resource can have: refused, not held while the stream lasts.
  [`kri_mid_default_default_${'n'.repeat(1500)}_identity_`, /names no MeshIdentity that can exist: its namespace segment must not be longer than 63 characters/],
  [`kri_mid_${'m'.repeat(64)}_default__identity_`, /its mesh segment must not be longer than 63/],
  ['kri_mid_mesh.one_default__identity_', /its mesh segment must be a valid DNS-1123 label/],
  [`kri_mid_default_default__${'i'.repeat(254)}_`, /its name segment must not be longer than 253/],
  ['kri_mid_default_default__identity-_', /its name segment must be a valid DNS-1123 name/],
  [`spiffe://${'t'.repeat(254)}`, /names a trust domain no mesh can have: it must not be longer than 253 characters/],
  [`spiffe://${'t'.repeat(254)}/ns/a/sa/b`, /names a trust domain no mesh can have/],
];

test('classifySecretName recognises every name shape mesh-sds serves', () => {
  for (const [name, expected] of cases) assert.deepEqual(classifySecretName(name), expected, name);
});

test('classifySecretName marks names that can never exist as invalid with a reason naming them', () => {
  for (const [name, reason] of invalid) {
    const r = classifySecretName(name);
    assert.equal(r.kind, 'invalid', name);
    if (r.kind === 'invalid') assert.match(r.reason, reason, name);
  }
});

test('formatIdentityKri is the inverse of identity classification', () => {
  for (const [name, ref] of cases) {
    if (ref.kind === 'identity') assert.equal(formatIdentityKri(ref.kri), name);
  }
});

test('identity, default and SVID names carry certificates; trust names do not', () => {
  const kinds = cases.map(([n]) => [n, isCertificateRef(classifySecretName(n))]);
  assert.deepEqual(
    kinds.filter(([, cert]) => cert).map(([n]) => n),
    ['kri_mid_default_default_kuma-system_identity_', 'kri_mid_default_default__identity_', 'kri_mid_mesh-1___my.identity_', 'default', 'spiffe://default.default.mesh.local/ns/demo/sa/web'],
  );
});
