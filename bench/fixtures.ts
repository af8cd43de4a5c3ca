// The benchmark's resource directory: N Dataplanes (Universal form, 1,000 per file), one MeshIdentity
// matching all of them (as examples/quickstart/identities.yaml) and one MeshTrust whose CAs come
// from openssl. Files are replaced atomically (write a dotfile, rename) so the watcher never reads
// half a file.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../test/helpers/yaml.js';

export interface Fixture {
  root: string;
  resourcesDir: string;
  stateDir: string;
  /** Rewrites the MeshTrust; `cas` = how many of the two openssl CAs it carries. */
  writeTrust(cas: 1 | 2): void;
  /** Rewrites the MeshIdentity with another certificate expiry (a change that reissues every SVID). */
  writeIdentity(expiry: string): void;
  /** Rewrites Dataplane `dp-i` (one of `ownFile`) with another service account: its SVID must change. */
  changeDataplane(i: number): void;
  /** The YAML the writers above write (for a Postgres store: the same changes through `apply`). */
  trustText(cas: 1 | 2): string;
  changedDataplaneText(i: number): string;
  /** The PEMs of the two openssl CAs, as JSON (for the transport floors' responses). */
  trustPemsFile: string;
  cleanup(): void;
}

/** How many CAs the MeshTrust carries in fan-out round `k`: the bundle changes back and forth (2, 1, 2, …). */
export const trustCasOfRound = (k: number): 1 | 2 => (k % 2 === 0 ? 2 : 1);

const PER_FILE = 1000;
export const TRUST_DOMAIN = 'partner.bench';

function atomicWrite(path: string, text: string): void {
  const dir = path.slice(0, path.lastIndexOf('/'));
  const tmp = join(dir, `.${path.slice(dir.length + 1)}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

export function dataplane(i: number, sa = `sa-${i}`): string {
  return dataplaneYaml(`dp-${i}`, { 'k8s.kuma.io/namespace': 'bench', 'k8s.kuma.io/service-account': sa });
}

/** The Dataplanes the churn scenario changes: spread over the range, each in its own file (as `apply` writes them). */
export function churnSet(proxies: number, count: number): number[] {
  const n = Math.min(count, proxies);
  return Array.from({ length: n }, (_, k) => Math.floor((k * proxies) / n));
}

/** The resources as YAML texts (for loading into Postgres). */
export function fixtureTexts(dir: string): { name: string; text: string }[] {
  return readdirSync(dir).filter((f) => f.endsWith('.yaml') && !f.startsWith('.')).map((f) => ({ name: f, text: readFileSync(join(dir, f), 'utf8') }));
}

function identityYaml(expiry: string): string {
  return meshIdentityYaml('identity', { namespace: 'kuma-system', meshTrustCreation: 'Enabled', expiry });
}

/** One Pem bundle holding every CA in `pems`. */
export function trustYaml(pems: string[]): string {
  return meshTrustYaml('partner-trust', TRUST_DOMAIN, [pems.join('')], { namespace: 'kuma-system' });
}

/** A self-signed P-256 CA certificate from openssl; its key is thrown away at once. */
function opensslCa(dir: string, cn: string): string {
  const key = join(dir, `${cn}.key`);
  const cert = join(dir, `${cn}.crt`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '30', '-subj', `/O=Bench/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', `subjectAltName=URI:spiffe://${TRUST_DOMAIN}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  rmSync(key, { force: true });
  const pem = readFileSync(cert, 'utf8');
  rmSync(cert, { force: true });
  return pem;
}

export function makeFixture(proxies: number, ownFile: readonly number[] = []): Fixture {
  const root = mkdtempSync(join(tmpdir(), 'mesh-sds-bench-'));
  const resourcesDir = join(root, 'resources');
  const stateDir = join(root, 'state');
  mkdirSync(resourcesDir);
  mkdirSync(stateDir, { mode: 0o700 });
  const cas = [opensslCa(root, 'bench-ca-1'), opensslCa(root, 'bench-ca-2')];
  const own = new Set(ownFile);
  for (let f = 0; f * PER_FILE < proxies; f++) {
    const docs: string[] = [];
    for (let i = f * PER_FILE; i < Math.min(proxies, (f + 1) * PER_FILE); i++) if (!own.has(i)) docs.push(dataplane(i));
    writeFileSync(join(resourcesDir, `dataplanes-${String(f).padStart(3, '0')}.yaml`), yamlDocs(...docs));
  }
  for (const i of own) writeFileSync(join(resourcesDir, `dp-${i}.yaml`), yamlDocs(dataplane(i)));
  const trustPemsFile = join(root, 'trust-pems.json');
  writeFileSync(trustPemsFile, JSON.stringify(cas));
  const fx: Fixture = {
    root,
    resourcesDir,
    stateDir,
    writeTrust: (n) => atomicWrite(join(resourcesDir, 'trust.yaml'), trustYaml(cas.slice(0, n))),
    writeIdentity: (expiry) => atomicWrite(join(resourcesDir, 'identity.yaml'), identityYaml(expiry)),
    changeDataplane: (i) => atomicWrite(join(resourcesDir, `dp-${i}.yaml`), yamlDocs(dataplane(i, `sa-${i}-changed`))),
    trustText: (n) => trustYaml(cas.slice(0, n)),
    changedDataplaneText: (i) => yamlDocs(dataplane(i, `sa-${i}-changed`)),
    trustPemsFile,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
  fx.writeIdentity('24h');
  fx.writeTrust(1);
  return fx;
}
