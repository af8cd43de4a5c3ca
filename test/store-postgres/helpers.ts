// Shared fixtures for the PostgreSQL store tests: a real database schema per test, a real CA certificate.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import pg from 'pg';
import { filter, firstValueFrom, timeout } from 'rxjs';
import type { ResourceSnapshot } from '../../src/api/types.js';
import { PostgresStore, type StoreLogger } from '../../src/store/postgres.js';
import { dataplaneYaml as sharedDataplaneYaml, meshTrustYaml as sharedMeshTrustYaml } from '../helpers/yaml.js';

export const PG_URL = process.env.MESH_SDS_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh schema name, so parallel test files never share tables. */
export function testSchema(): string {
  return `mesh_sds_test_${randomBytes(6).toString('hex')}`;
}

export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return await c.query<R>(sql, params);
  } finally {
    await c.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await adminQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** A store on a fresh schema; when the test ends it is closed, its schema dropped and `dirs` removed. */
export async function openFreshStore(t: { after(fn: () => Promise<void>): void }, dirs: string[] = []): Promise<{ store: PostgresStore; schema: string }> {
  const schema = testSchema();
  const store = await PostgresStore.open(PG_URL, { schema });
  t.after(async () => {
    await store.close();
    await dropSchema(schema);
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  return { store, schema };
}

/** A self-signed P-256 CA certificate made by openssl; the key is thrown away. */
export function makeCaPem(cn = 'test'): string {
  return execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-days', '3650', '-keyout', '/dev/null',
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  ).trim();
}

export function meshTrustYaml(name: string, trustDomain: string, caPem: string): string {
  return sharedMeshTrustYaml(name, trustDomain, [caPem]);
}

export function dataplaneYaml(name: string, app: string): string {
  return sharedDataplaneYaml(name, { app });
}

export function k8sDataplaneYaml(name: string, namespace: string): string {
  return `apiVersion: kuma.io/v1alpha1
kind: Dataplane
metadata:
  name: ${name}
  namespace: ${namespace}
  labels:
    kuma.io/mesh: default
    k8s.kuma.io/service-account: sa-${name}
`;
}

/** Resolves with the first snapshot (replayed or future) that satisfies `pred`, or rejects after `ms`. */
export function waitForSnapshot(
  store: PostgresStore,
  pred: (s: ResourceSnapshot) => boolean,
  // Generous: a notified change arrives in milliseconds, but three CPU-bound test files share the
  // CI machine's two cores (nothing else brings a change without a notification: see the tests that
  // count full reads for the mechanism).
  ms = 5000,
): Promise<ResourceSnapshot> {
  return firstValueFrom(store.snapshots$.pipe(filter(pred), timeout(ms)));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Opens `n` started stores on one fresh schema; closes them and drops the schema afterwards. */
export async function withStores(
  n: number,
  fn: (stores: PostgresStore[], schema: string) => Promise<void>,
  opts: { logger?: StoreLogger; queryTimeoutMs?: number; maxRowBytes?: number; heartbeatMs?: number; feedRepairLockTimeoutMs?: number; busyDebounceMs?: number } = {},
): Promise<void> {
  const schema = testSchema();
  const stores: PostgresStore[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = await PostgresStore.open(PG_URL, { schema, ...opts });
      stores.push(s);
      await s.start();
    }
    await fn(stores, schema);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await dropSchema(schema);
  }
}

/** A logger that keeps every line as `level message {fields}`, for asserting what was reported. */
export function recordingLogger(): { logger: StoreLogger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push(`${level} ${msg ?? ''} ${JSON.stringify(obj)}`);
  return { logger: { info: at('info'), warn: at('warn'), error: at('error') }, lines };
}
