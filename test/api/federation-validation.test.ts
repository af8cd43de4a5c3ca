// ClusterFederatedTrustDomain rules of SPEC §10: each has an input that fails with an exact `path: message` and one that passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readBundleDocument } from '../../src/api/spiffe-bundle.js';
import type { ClusterFederatedTrustDomain } from '../../src/api/types.js';
import { serializeResource } from '../../src/api/serialize.js';
import { parseResources } from '../../src/api/parse.js';
import { validateStoredResource } from '../../src/api/validate-stored.js';
import { assertAccepted, assertRejected, pem, withField } from './helpers.js';

const universal = () => ({
  type: 'ClusterFederatedTrustDomain',
  name: 'zone-b',
  spec: {
    trustDomain: 'zone-b.example',
    bundleEndpointURL: 'https://127.0.0.1:8443/zone-b.example',
    bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: 'spiffe://zone-b.example/mesh-sds/bundle-endpoint' },
    trustDomainBundle: pem('root-ca'),
  },
});

const kubernetes = (apiVersion: string) => ({
  apiVersion,
  kind: 'ClusterFederatedTrustDomain',
  metadata: { name: 'zone-b' },
  spec: universal().spec,
});

/** A SPIFFE bundle (RFC-style JWK Set) holding the given PEM certificate. */
function jwks(certPem: string): string {
  const cert = new X509Certificate(certPem);
  const jwk = cert.publicKey.export({ format: 'jwk' });
  return JSON.stringify({ keys: [{ use: 'x509-svid', ...jwk, x5c: [cert.raw.toString('base64')] }], spiffe_sequence: 3, spiffe_refresh_hint: 300 });
}

test('a Universal ClusterFederatedTrustDomain is accepted, cluster-scoped (no mesh)', () => {
  const r = assertAccepted<ClusterFederatedTrustDomain>(universal());
  assert.equal(r.kind, 'ClusterFederatedTrustDomain');
  assert.equal(r.mesh, '');
  assert.equal(r.namespace, '');
  assert.deepEqual(r.spec.bundleEndpointProfile, { type: 'https_spiffe', endpointSPIFFEID: 'spiffe://zone-b.example/mesh-sds/bundle-endpoint' });
});

test('the Kubernetes form is accepted under SPIRE’s API group and kuma.io, nothing else', () => {
  for (const v of ['spire.spiffe.io/v1alpha1', 'kuma.io/v1alpha1']) {
    const r = assertAccepted<ClusterFederatedTrustDomain>(kubernetes(v));
    assert.equal(r.name, 'zone-b');
    assert.equal(r.spec.trustDomain, 'zone-b.example');
  }
  assertRejected(kubernetes('v1'), 'apiVersion: must be one of spire.spiffe.io/v1alpha1, kuma.io/v1alpha1');
});

test('it names no mesh and no namespace: it applies to every mesh', () => {
  assertRejected({ ...universal(), mesh: 'default' }, 'mesh: must not be set: ClusterFederatedTrustDomain is cluster-scoped (it applies to every mesh)');
  assertRejected(
    withField(kubernetes('kuma.io/v1alpha1'), 'metadata.namespace', 'kuma-system'),
    'metadata.namespace: must not be set: ClusterFederatedTrustDomain is cluster-scoped (it applies to every mesh)',
  );
  assertRejected(
    withField(kubernetes('kuma.io/v1alpha1'), 'metadata.labels', { 'kuma.io/mesh': 'default' }),
    'metadata.labels["kuma.io/mesh"]: must not be set: ClusterFederatedTrustDomain is cluster-scoped (it applies to every mesh)',
  );
});

test('bundleEndpointURL must be a valid https URL', () => {
  assertRejected(withField(universal(), 'spec.bundleEndpointURL', 'http://127.0.0.1:8443/zone-b.example'), 'spec.bundleEndpointURL: must be an https URL');
  assertRejected(withField(universal(), 'spec.bundleEndpointURL', 'not a url'), 'spec.bundleEndpointURL: must be a valid URL, not "not a url"');
  assertRejected(withField(universal(), 'spec.bundleEndpointURL', undefined), 'spec.bundleEndpointURL: must not be empty');
  assertRejected(withField(universal(), 'spec.bundleEndpointURL', 'https://u:p@host/td'), 'spec.bundleEndpointURL: must not carry credentials');
});

test('endpointSPIFFEID must be a SPIFFE ID in the federated trust domain', () => {
  assertRejected(
    withField(universal(), 'spec.bundleEndpointProfile.endpointSPIFFEID', 'spiffe://other.example/mesh-sds/bundle-endpoint'),
    'spec.bundleEndpointProfile.endpointSPIFFEID: must be in trust domain zone-b.example',
  );
  assertRejected(
    withField(universal(), 'spec.bundleEndpointProfile.endpointSPIFFEID', 'zone-b.example/x'),
    'spec.bundleEndpointProfile.endpointSPIFFEID: must be a SPIFFE ID (spiffe://<trust domain>/<path>)',
  );
  assertRejected(
    withField(universal(), 'spec.bundleEndpointProfile.endpointSPIFFEID', undefined),
    'spec.bundleEndpointProfile.endpointSPIFFEID: must not be empty for the https_spiffe profile',
  );
});

test('profile type is https_spiffe or https_web; https_web takes no SPIFFE ID and no bootstrap bundle', () => {
  assertRejected(withField(universal(), 'spec.bundleEndpointProfile.type', 'http'), 'spec.bundleEndpointProfile.type: must be one of https_spiffe, https_web');
  const web = withField(withField(universal(), 'spec.bundleEndpointProfile', { type: 'https_web' }), 'spec.trustDomainBundle', undefined);
  assert.deepEqual(assertAccepted<ClusterFederatedTrustDomain>(web).spec.bundleEndpointProfile, { type: 'https_web' });
  assertRejected(
    withField(web, 'spec.bundleEndpointProfile.endpointSPIFFEID', 'spiffe://zone-b.example/x'),
    'spec.bundleEndpointProfile.endpointSPIFFEID: must not be set for the https_web profile',
  );
});

test('https_spiffe needs a bootstrap bundle, and the bundle must parse as JWKS or PEM of CAs', () => {
  assertRejected(
    withField(universal(), 'spec.trustDomainBundle', undefined),
    'spec.trustDomainBundle: must be set for the https_spiffe profile (the bundle that authenticates the endpoint the first time)',
  );
  assertRejected(withField(universal(), 'spec.trustDomainBundle', 'garbage'), 'spec.trustDomainBundle: bootstrap bundle does not parse: neither a SPIFFE bundle (JSON object) nor PEM certificates');
  assertRejected(withField(universal(), 'spec.trustDomainBundle', '{"keys": ['), `spec.trustDomainBundle: bootstrap bundle does not parse: not valid JSON: ${jsonError('{"keys": [')}`);
  assertRejected(withField(universal(), 'spec.trustDomainBundle', '{"keys": []}'), 'spec.trustDomainBundle: bootstrap bundle does not parse: no x509-svid key: the bundle carries no CA');
  assertRejected(withField(universal(), 'spec.trustDomainBundle', pem('leaf-not-ca')), 'spec.trustDomainBundle: bootstrap bundle does not parse: PEM block 1 is not a CA');
  const r = assertAccepted<ClusterFederatedTrustDomain>(withField(universal(), 'spec.trustDomainBundle', jwks(pem('root-ca'))));
  assert.match(r.spec.trustDomainBundle ?? '', /x509-svid/);
});

test('a bootstrap CA whose URI SAN names another trust domain is refused, as in a MeshTrust or a fetched bundle', () => {
  const spire = readFileSync(fileURLToPath(new URL('../fixtures/spiffe-bundle/spire-bundle-show.json', import.meta.url)), 'utf8');
  for (const bundle of [spire, readBundleDocument(spire).caPems.join('')]) {
    assertRejected(withField(universal(), 'spec.trustDomainBundle', bundle), 'spec.trustDomainBundle: certificate 1 is the CA of trust domain "domain.test" (its URI SAN), not of "zone-b.example"');
  }
  const own = withField(withField(universal(), 'spec.trustDomain', 'domain.test'), 'spec.bundleEndpointProfile.endpointSPIFFEID', 'spiffe://domain.test/mesh-sds/bundle-endpoint');
  assertAccepted<ClusterFederatedTrustDomain>(withField(own, 'spec.trustDomainBundle', spire));
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

test('SPIRE controller-manager manifests (className) apply unchanged', () => {
  const r = assertAccepted<ClusterFederatedTrustDomain>(withField(kubernetes('spire.spiffe.io/v1alpha1'), 'spec.className', 'spire-mgmt-spire'));
  assert.equal(r.spec.className, 'spire-mgmt-spire');
});

test('the Universal form printed by get parses back to the same resource', () => {
  const r = assertAccepted<ClusterFederatedTrustDomain>(universal());
  for (const format of ['yaml', 'json'] as const) {
    const again = parseResources(serializeResource(r, format), `x.${format}`);
    assert.deepEqual(again.errors, []);
    const { source: _a, ...a } = again.resources[0]!;
    const { source: _b, ...b } = r;
    assert.deepEqual(a, b);
  }
});

test('a stored ClusterFederatedTrustDomain (as a store writes it) validates back to itself', () => {
  const r = assertAccepted<ClusterFederatedTrustDomain>(universal());
  const { source: _s, ...stored } = r;
  const back = validateStoredResource(JSON.parse(JSON.stringify(stored)), { file: 'row', document: 0 }, r);
  assert.deepEqual(back.errors, []);
  const { source: _b, ...again } = back.resource!;
  assert.deepEqual(again, stored);
});
