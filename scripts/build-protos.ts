// Builds proto/gen/envoy.binpb: a self-contained FileDescriptorSet with only the Envoy/xDS types
// mesh-sds serves or checks. Third-party protos are never committed: module roots under
// proto/gen/roots/ are symlinks into the pinned @grpc/grpc-js-xds deps, except validate.proto,
// whose grpc-js-xds copy predates the `ignore_empty` option the Envoy protos use, so the current
// one from the protoc-gen-validate package is copied in instead.
// Usage: tsx scripts/build-protos.ts (also called on demand by src/xds/protos.ts).
import { copyFileSync, existsSync, mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DESCRIPTOR_PATH = join(REPO_ROOT, 'proto/gen/envoy.binpb');
/** Files whose change makes the descriptor stale. */
export const DESCRIPTOR_INPUTS = [
  join(REPO_ROOT, 'buf.yaml'),
  fileURLToPath(import.meta.url),
  join(REPO_ROOT, 'proto/src/grpc/health/v1/health.proto'),
  join(REPO_ROOT, 'node_modules/@grpc/grpc-js-xds/package.json'),
];

const XDS_DEPS = 'node_modules/@grpc/grpc-js-xds/deps';
const ROOTS = 'proto/gen/roots';
const ENVOY = `${ROOTS}/envoy-api/envoy`;

/** Files handed to `buf build --path` (buf compiles these and their imports only: the full
 * Envoy tree does not compile, the deps lack the v2 protos some files import). */
const PATHS = [
  `${ENVOY}/service/secret/v3/sds.proto`,
  `${ENVOY}/service/discovery/v3`,
  `${ENVOY}/extensions/transport_sockets/tls/v3`,
  `${ENVOY}/config/bootstrap/v3/bootstrap.proto`,
  `${ENVOY}/extensions/upstreams/http/v3/http_protocol_options.proto`,
  `${ENVOY}/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto`,
  `${ENVOY}/extensions/filters/http/router/v3/router.proto`,
  `${ENVOY}/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto`,
  `${ROOTS}/googleapis/google/rpc/status.proto`,
  'proto/src/grpc/health/v1/health.proto',
];

/** Types kept by `buf build --type` (everything they reference is kept too). Every `@type` an
 * envoy-configs/ file uses must be reachable from here, or the strict checker rejects it. */
export const KEPT_TYPES = [
  'envoy.service.secret.v3',
  'envoy.service.discovery.v3',
  'envoy.extensions.transport_sockets.tls.v3',
  'envoy.config.bootstrap.v3.Bootstrap',
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  'envoy.extensions.filters.http.router.v3.Router',
  'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  'google.rpc.Status',
  'grpc.health.v1',
];

/** Idempotent and safe when two processes race (parallel test files). */
function ensureSymlink(target: string, link: string): void {
  try {
    if (readlinkSync(link) === target) return;
    unlinkSync(link);
  } catch {
    // missing: create below
  }
  try {
    symlinkSync(target, link);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

function assembleRoots(): void {
  const roots = join(REPO_ROOT, ROOTS);
  mkdirSync(join(roots, 'validate/validate'), { recursive: true });
  for (const dep of ['envoy-api', 'xds', 'googleapis']) {
    const depDir = join(REPO_ROOT, XDS_DEPS, dep);
    if (!existsSync(depDir)) throw new Error(`${depDir} is missing: run npm install (dev dependencies)`);
    ensureSymlink(relative(roots, depDir), join(roots, dep));
  }
  const pgv = join(REPO_ROOT, 'node_modules/protoc-gen-validate/src/proto/validate.proto');
  const dest = join(roots, 'validate/validate/validate.proto');
  const tmp = `${dest}.${process.pid}.tmp`;
  copyFileSync(pgv, tmp);
  renameSync(tmp, dest);
}

export interface BuildResult {
  path: string;
  ms: number;
}

/** Assembles the roots and runs buf; throws with buf's stderr on failure. */
export function buildProtos(): BuildResult {
  const started = performance.now();
  assembleRoots();
  const tmp = `${DESCRIPTOR_PATH}.${process.pid}.tmp`;
  const args = ['build', '--as-file-descriptor-set', '--exclude-source-info', '-o', tmp];
  for (const p of PATHS) args.push('--path', p);
  for (const t of KEPT_TYPES) args.push('--type', t);
  const buf = join(REPO_ROOT, 'node_modules/.bin/buf');
  const r = spawnSync(buf, args, { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run ${buf}: ${r.error.message}`);
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`buf build failed (exit ${r.status}):\n${r.stderr}`);
  }
  renameSync(tmp, DESCRIPTOR_PATH); // atomic: a concurrent reader never sees half a file
  return { path: DESCRIPTOR_PATH, ms: performance.now() - started };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { path, ms } = buildProtos();
  console.log(`wrote ${relative(REPO_ROOT, path)} in ${ms.toFixed(0)} ms`);
}
