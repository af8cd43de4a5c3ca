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
