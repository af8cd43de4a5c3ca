// Shared builders for the resource-model tests.
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { parseResources } from '../../src/api/parse.js';
import type { Resource, ResourceError } from '../../src/api/types.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/seeds/', import.meta.url));
export const pem = (name: 'root-ca' | 'intermediate-ca' | 'backup-root-ca' | 'leaf-not-ca'): string =>
  readFileSync(`${FIXTURES}ca/${name}.pem`, 'utf8');

export const FILE = 'test.yaml';

/** Deep copy of `obj` with the dotted `path` set to `value` (`undefined` deletes it). */
export function withField(obj: unknown, path: string, value: unknown): any {
  const copy = structuredClone(obj) as any;
  const keys = path.split('.');
  let cur = copy;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== 'object' || cur[k] === null) cur[k] = {};
    cur = cur[k];
  }
  const last = keys[keys.length - 1] as string;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
  return copy;
}

export function parseObject(obj: unknown): { resources: Resource[]; errors: ResourceError[] } {
  return parseResources(stringify(obj), FILE);
}

/** The document is rejected with exactly these `path: message` problems. */
export function assertRejected(obj: unknown, ...expected: string[]): void {
  // Other stores' tests replay every rejected fixture through their own loading path.
  if (process.env.MESH_SDS_RECORD_REJECTED) appendFileSync(process.env.MESH_SDS_RECORD_REJECTED, `${JSON.stringify({ obj, expected })}\n`);
  const { resources, errors } = parseObject(obj);
  assert.deepEqual(
    errors.map((e) => `${e.path}: ${e.message}`),
    expected,
  );
  assert.equal(resources.length, 0);
  for (const e of errors) {
    assert.equal(e.file, FILE);
    assert.equal(e.document, 0);
  }
}

export function assertAccepted<T extends Resource = Resource>(obj: unknown): T {
  const { resources, errors } = parseObject(obj);
  assert.deepEqual(errors, []);
  assert.equal(resources.length, 1);
  return resources[0] as T;
}

export const meshTrust = () => ({
  type: 'MeshTrust',
  name: 'trust',
  mesh: 'default',
  spec: { trustDomain: 'example.org', caBundles: [{ type: 'Pem', pem: { value: pem('root-ca') } }] },
});

export const meshIdentity = () => ({
  type: 'MeshIdentity',
  name: 'identity',
  mesh: 'default',
  spec: {
    selector: { dataplane: { matchLabels: { app: 'web' } } },
    provider: { type: 'Bundled', bundled: { autogenerate: { enabled: true } } },
  },
});

/** A bundled identity with a user CA whose certificate and key come from files. */
export const meshIdentityWithCa = () =>
  withField(meshIdentity(), 'spec.provider.bundled', {
    ca: {
      certificate: { type: 'File', file: { path: '/etc/ca.crt' } },
      privateKey: { type: 'File', file: { path: '/etc/ca.key' } },
    },
  });
