// A Universal resource labelled k8s.kuma.io/namespace lives in that namespace: `get` shows it in a
// NAMESPACE column, and `delete` without --namespace says where it is instead of a bare "not found".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';
import { dataplaneYaml, yamlDocs } from '../helpers/yaml.js';

async function workspace(t: { after: (fn: () => Promise<void>) => void }): Promise<string[]> {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-delete-ns-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'resources'));
  return ['--resources', join(root, 'resources'), '--state-dir', join(root, 'state')];
}

test('delete of a name that exists only in other namespaces or meshes says where, and get lists a NAMESPACE column', async (t) => {
  const flags = await workspace(t);
  const input = yamlDocs(
    dataplaneYaml('backend-1', { app: 'backend', 'k8s.kuma.io/namespace': 'shop' }),
    dataplaneYaml('db-0', { app: 'db', 'k8s.kuma.io/namespace': 'team-a' }),
    dataplaneYaml('db-0', { app: 'db', 'k8s.kuma.io/namespace': 'team-b' }),
    dataplaneYaml('web', { app: 'web' }, 'other'),
  );
  const applied = await meshSds(['apply', '-f', '-', ...flags], { input });
  assert.equal(applied.code, 0, applied.stderr);

  const get = await meshSds(['get', 'dataplane', ...flags]);
  assert.equal(get.code, 0, get.stderr);
  const lines = get.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^MESH\s+NAMESPACE\s+NAME\s+LABELS$/);
  assert.match(get.stdout, /^default\s+shop\s+backend-1\s+app=backend/m);
  assert.match(get.stdout, /^default\s+team-a\s+db-0\s/m);
  assert.match(get.stdout, /^default\s+team-b\s+db-0\s/m);
  assert.match(get.stdout, /^other\s+web\s+app=web$/m, 'no namespace: the column is empty');

  const one = await meshSds(['delete', 'dataplane', 'backend-1', ...flags]);
  assert.equal(one.code, 1, one.stdout);
  assert.equal(
    one.stderr.trim(),
    'Dataplane "backend-1" of mesh "default" not found without a namespace (no --namespace given); it exists in namespace "shop" (use --namespace shop)',
  );
  const two = await meshSds(['delete', 'dataplane', 'db-0', ...flags]);
  assert.equal(two.code, 1, two.stdout);
  assert.match(two.stderr, /it exists in namespace "team-a" \(use --namespace team-a\), namespace "team-b" \(use --namespace team-b\)/);
  const wrongNs = await meshSds(['delete', 'dataplane', 'backend-1', '--namespace', 'billing', ...flags]);
  assert.equal(wrongNs.code, 1);
  assert.match(wrongNs.stderr, /not found in namespace "billing"; it exists in namespace "shop" \(use --namespace shop\)/);
  const otherMesh = await meshSds(['delete', 'dataplane', 'web', ...flags]);
  assert.equal(otherMesh.code, 1);
  assert.match(otherMesh.stderr, /Dataplane "web" of mesh "default" not found; it exists in mesh "other" \(use --mesh other\)/);
  const nowhere = await meshSds(['delete', 'dataplane', 'nope', ...flags]);
  assert.equal(nowhere.stderr.trim(), 'Dataplane "nope" of mesh "default" not found');

  const deleted = await meshSds(['delete', 'dataplane', 'backend-1', '--namespace', 'shop', ...flags]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.match(deleted.stdout, /deleted Dataplane "backend-1" of mesh "default" \(namespace "shop"\)/);

  // Without any namespaced resource listed, the table has no NAMESPACE column.
  const plain = await meshSds(['get', 'dataplane', '--mesh', 'other', ...flags]);
  assert.match(plain.stdout, /^MESH\s+NAME\s+LABELS\nother\s+web\s+app=web\n$/);
});
