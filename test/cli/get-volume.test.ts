// `get` over a Kubernetes ConfigMap volume as the kubelet lays it out (it used to print nothing and exit 0).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';
import { dataplaneYaml } from '../helpers/yaml.js';

test('get lists the resources of a kubelet ConfigMap volume (files linked through ..data)', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-volume-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'resources');
  const ts = join(dir, '..2026_11_29_21_00_00.123456789');
  await mkdir(ts, { recursive: true });
  await writeFile(join(ts, 'dataplanes.yaml'), `${dataplaneYaml('web', { app: 'web' })}---\n${dataplaneYaml('api', { app: 'api' })}`);
  await symlink('..2026_11_29_21_00_00.123456789', join(dir, '..data'));
  await symlink('..data/dataplanes.yaml', join(dir, 'dataplanes.yaml'));
  const r = await meshSds(['get', 'dataplane', '-o', 'json', '--resources', dir, '--state-dir', join(root, 'state')]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).map((d: { name: string }) => d.name), ['api', 'web']);
  assert.equal(r.stderr, '');
});
