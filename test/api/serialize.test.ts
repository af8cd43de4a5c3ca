// Universal serialisation (`get -o yaml|json`) round-trips through the parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { parse } from 'yaml';
import { loadResourceFile, parseResources } from '../../src/api/parse.js';
import { serializeResource, toUniversalObject } from '../../src/api/serialize.js';
import type { Resource } from '../../src/api/types.js';
import { FIXTURES, parseObject } from './helpers.js';

const strip = (r: Resource) => {
  const { source: _s, ...rest } = r;
  return rest;
};

test('every seed resource survives YAML and JSON serialisation unchanged', async () => {
  for (const f of readdirSync(FIXTURES).filter((x) => x.endsWith('.yaml'))) {
    const [r] = (await loadResourceFile(FIXTURES + f)).resources;
    assert.ok(r, f);
    for (const format of ['yaml', 'json'] as const) {
      const back = parseResources(serializeResource(r, format), `out.${format}`);
      assert.deepEqual(back.errors, [], `${f} ${format}`);
      assert.deepEqual(strip(back.resources[0] as Resource), strip(r), `${f} ${format}`);
    }
  }
});

test('Universal form: defaults explicit, no internal fields, namespace kept as a label', async () => {
  const [r] = (await loadResourceFile(`${FIXTURES}meshidentity-basic-autogenerate-kubernetes.yaml`)).resources;
  assert.ok(r);
  assert.deepEqual(toUniversalObject(r), {
    type: 'MeshIdentity',
    name: 'identity',
    mesh: 'default',
    labels: { 'k8s.kuma.io/namespace': 'kuma-system' },
    spec: {
      selector: { dataplane: { matchLabels: {} } },
      spiffeID: { trustDomain: '{{ .Mesh }}.{{ .Zone }}.mesh.local', path: '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}' },
      provider: {
        type: 'Bundled',
        bundled: {
          meshTrustCreation: 'Enabled',
          insecureAllowSelfSigned: true,
          autogenerate: { enabled: true },
          certificateParameters: { expiry: '24h' },
        },
      },
    },
  });
  const yaml = serializeResource(r, 'yaml');
  assert.deepEqual(parse(yaml), toUniversalObject(r));
  assert.ok(!yaml.includes('expiryMs'));
});

test('Dataplanes and Secrets serialise to their Universal shape', () => {
  const { resources } = parseObject([
    { type: 'Dataplane', name: 'dp', labels: { app: 'web' } },
    { type: 'Secret', name: 's', mesh: 'm', data: Buffer.from('abc').toString('base64') },
  ]);
  assert.deepEqual(resources.map(toUniversalObject), [
    { type: 'Dataplane', name: 'dp', mesh: 'default', labels: { app: 'web' } },
    { type: 'Secret', name: 's', mesh: 'm', data: 'YWJj' },
  ]);
});

test('a selector without dataplane stays without dataplane after a round trip', () => {
  const { resources } = parseObject({
    type: 'MeshIdentity',
    name: 'x',
    spec: { selector: {}, provider: { type: 'Spire', spire: {} } },
  });
  const back = parseResources(serializeResource(resources[0] as Resource, 'yaml'), 'x').resources[0];
  assert.ok(back?.kind === 'MeshIdentity');
  assert.deepEqual(back.spec.selector, {});
});
