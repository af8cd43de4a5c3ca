// A stored resource (a database row) is validated exactly as `validate` validates a file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { loadResourceFile } from '../../src/api/parse.js';
import { validateStoredResource } from '../../src/api/validate-stored.js';
import { parseResources } from '../../src/api/parse.js';
import { RESOURCE_KINDS } from '../../src/api/types.js';
import { stringify } from 'yaml';
import { FIXTURES, pem } from './helpers.js';
import { INVALID_FIXTURES, storedShape } from '../helpers/invalid-resources.js';

const where = { file: 'postgres:test.resources', document: 0 };
const asStored = (r: object) => JSON.parse(JSON.stringify(r, (k, v) => (k === 'source' ? undefined : v)));

test('every seed example survives being stored and read back unchanged', async () => {
  for (const f of readdirSync(FIXTURES).filter((x) => x.endsWith('.yaml'))) {
    const [r] = (await loadResourceFile(FIXTURES + f)).resources;
    const back = validateStoredResource(asStored(r!), where, r);
    assert.deepEqual(back.errors, [], f);
    assert.deepEqual(asStored(back.resource!), asStored(r!), f);
  }
});

for (const f of INVALID_FIXTURES) {
  test(`a stored row with ${f.what} is refused with the error validate gives`, () => {
    const r = validateStoredResource(storedShape(f), where);
    assert.equal(r.resource, undefined);
    assert.equal(`${r.errors[0]!.path}: ${r.errors[0]!.message}`, f.error);
    assert.equal(r.errors[0]!.file, where.file);
  });
}

test('a stored MeshIdentity with spiffeID {} gets the default templates, as the same document in a file does', () => {
  const stored = {
    kind: 'MeshIdentity', name: 'mi', mesh: 'default', namespace: '', labels: {},
    spec: { spiffeID: {}, provider: { type: 'Bundled', bundled: { autogenerate: { enabled: true } } } },
  };
  const r = validateStoredResource(stored, where);
  assert.deepEqual(r.errors, []);
  assert.equal(r.resource?.kind, 'MeshIdentity');
  if (r.resource?.kind !== 'MeshIdentity') return;
  assert.equal(r.resource.spec.spiffeID.trustDomain, '{{ .Mesh }}.{{ .Zone }}.mesh.local');
  assert.equal(r.resource.spec.provider.type === 'Bundled' && r.resource.spec.provider.bundled.certificateParameters.expiryMs, 86_400_000);
});

test('rows of the wrong shape, unknown fields or another key are refused, never thrown', () => {
  for (const [stored, expected] of [
    [null, 'document must be an object'],
    ['text', 'document must be an object'],
    [{ kind: 'Nope', name: 'x' }, `type: unknown kind "Nope", expected one of ${RESOURCE_KINDS.join(', ')}`],
    [{ kind: 'Dataplane', name: 'x', mesh: 'default', labels: { a: 1 } }, 'labels["a"]: must be a string'],
    // A namespaced row's labels that are not a map are refused too, never dropped silently (the
    // proxy would lose the labels its identity is chosen by).
    [{ kind: 'Dataplane', name: 'x', mesh: 'default', namespace: 'team', labels: 'app=payments' }, 'labels: must be a map of strings'],
    [{ kind: 'Dataplane', name: 'x', mesh: 'default', namespace: 'team', labels: [1, 2] }, 'labels: must be a map of strings'],
    [{ kind: 'Dataplane', name: 'x', mesh: 'default', namespace: 'team', labels: 7 }, 'labels: must be a map of strings'],
    [{ kind: 'Dataplane', name: 'x', mesh: 'default', extra: true }, 'extra: unknown field'],
    [{ kind: 'Secret', name: 's', mesh: 'default', data: 7 }, 'data: must be a base64 string'],
  ] as const) {
    const r = validateStoredResource(stored, where);
    assert.equal(r.resource, undefined, JSON.stringify(stored));
    assert.equal(r.errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message))[0], expected, JSON.stringify(stored));
  }
  const other = validateStoredResource({ kind: 'Dataplane', name: 'x', mesh: 'default' }, where, { kind: 'Dataplane', mesh: 'default', namespace: '', name: 'y' });
  assert.match(other.errors[0]!.message, /holds Dataplane\/default\/\/x but is stored as Dataplane\/default\/\/y/);
});

test('a stored cluster-scoped ClusterFederatedTrustDomain survives being read back', () => {
  const doc = {
    type: 'ClusterFederatedTrustDomain',
    name: 'zone-b',
    spec: {
      trustDomain: 'zone-b.example',
      bundleEndpointURL: 'https://127.0.0.1:8443/zone-b.example',
      bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: 'spiffe://zone-b.example/mesh-sds/bundle-endpoint' },
      trustDomainBundle: pem('root-ca'),
    },
  };
  const [r] = parseResources(stringify(doc), 'f.yaml').resources;
  const back = validateStoredResource(asStored(r!), where, r);
  assert.deepEqual(back.errors, []);
  assert.deepEqual(asStored(back.resource!), asStored(r!));
});
