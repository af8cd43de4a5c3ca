import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseResources } from '../../src/api/parse.js';
import { ResourceIndex } from '../../src/store/resource-index.js';
import { makeCa } from '../helpers/openssl.js';
import { meshTrustYaml } from '../helpers/yaml.js';

const ca = makeCa('resource-index');

function contribution(file: string, td: string) {
  const { resources, errors } = parseResources(meshTrustYaml('dup', td, [ca.certPem]), file);
  assert.deepEqual(errors, []);
  return { resources, errors: [], version: td };
}

const served = (index: ResourceIndex) => {
  const r = [...index.snapshot().resources.values()][0];
  return r?.kind === 'MeshTrust' ? r.spec.trustDomain : undefined;
};

test('who serves a resource defined in several sources: by name before anything is served, then the served one until it stops defining it', () => {
  const index = new ResourceIndex();
  // Read in any order before the first snapshot: the first by name wins.
  index.set('z.yaml', contribution('z.yaml', 'z.example'));
  index.set('a.yaml', contribution('a.yaml', 'a.example'));
  assert.equal(served(index), 'a.example');
  // Sorts before the served source, but came later: a duplicate, named as such.
  index.set('0-draft.yaml', contribution('0-draft.yaml', 'draft.example'));
  const snap = index.snapshot();
  assert.equal(served(index), 'a.example');
  assert.deepEqual(snap.errors.map((e) => e.file), ['0-draft.yaml', 'z.yaml']);
  assert.match(snap.errors[0]!.message, /already defined in a\.yaml; this copy is ignored/);
  // The served source changes and still defines it: it keeps winning, with its new definition.
  index.set('a.yaml', contribution('a.yaml', 'a2.example'));
  assert.equal(served(index), 'a2.example');
  assert.equal(index.versionOf([...index.snapshot().resources.keys()][0]!), 'a2.example');
  // Gone: the first by name of the others takes over.
  index.set('a.yaml', undefined);
  assert.equal(served(index), 'draft.example');
});
