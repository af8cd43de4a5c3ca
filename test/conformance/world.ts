// A resource directory and an in-process server for the conformance suite, plus openssl checks.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer, type ServeConfig } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { makeCa, openssl, type TestCa } from '../helpers/openssl.js';

export const ZONE = 'default';
export const DEFAULT_TD = 'default.default.mesh.local';
export const PAYMENTS_TD = 'payments.mesh.local';
export const PARTNER_TD = 'partner.example';
export const ALPHA_TD = 'alpha.example';
/** Identity secret names (KRIs) of the two MeshIdentities below. */
export const KRI_IDENTITY = `kri_mid_default_${ZONE}_kuma-system_identity_`;
export const KRI_PAYMENTS = `kri_mid_default_${ZONE}_kuma-system_payments_`;
export const WEB_SPIFFE = `spiffe://${DEFAULT_TD}/ns/shop/sa/web`;
export const PAY_SPIFFE = `spiffe://${PAYMENTS_TD}/ns/billing/sa/pay`;

/** A CA signed by `root` (an intermediate), with SKI/AKI and a SPIFFE URI SAN. */
export function makeIntermediate(root: TestCa, cn: string, trustDomain: string): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-int-'));
  try {
    const p = (f: string) => join(dir, f);
    writeFileSync(p('root.crt'), root.certPem);
    writeFileSync(p('root.key'), root.keyPem);
    writeFileSync(
      p('ext.cnf'),
      [
        'basicConstraints=critical,CA:TRUE',
        'keyUsage=critical,keyCertSign,cRLSign',
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid',
        `subjectAltName=URI:spiffe://${trustDomain}`,
        '',
      ].join('\n'),
    );
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('int.key')]);
    openssl(['req', '-new', '-key', p('int.key'), '-subj', `/O=Test/CN=${cn}`, '-out', p('int.csr')]);
    openssl([
      'x509', '-req', '-in', p('int.csr'), '-CA', p('root.crt'), '-CAkey', p('root.key'), '-set_serial', '4242',
      '-days', '3650', '-extfile', p('ext.cnf'), '-out', p('int.crt'),
    ]);
    return { certPem: readFileSync(p('int.crt'), 'utf8'), keyPem: readFileSync(p('int.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const indent = (pem: string, n: number) =>
  pem
    .trim()
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');

export function meshTrustYaml(name: string, trustDomain: string, pems: string[]): string {
  const bundles = pems.map((pem) => `    - type: Pem\n      pem:\n        value: |-\n${indent(pem, 10)}`).join('\n');
  return `type: MeshTrust\nname: ${name}\nmesh: default\nspec:\n  trustDomain: ${trustDomain}\n  caBundles:\n${bundles}\n`;
}

export function identityYaml(): string {
  return `type: MeshIdentity
name: identity
mesh: default
labels:
  k8s.kuma.io/namespace: kuma-system
spec:
  selector:
    dataplane:
      matchLabels: {}
  provider:
    type: Bundled
    bundled:
      insecureAllowSelfSigned: true
      autogenerate:
        enabled: true
`;
}

/** A more specific identity (one label) in its own trust domain, with an intermediate CA (chain = intermediate + root). */
export function paymentsIdentityYaml(ca: { chainPem: string; keyPem: string }, matchLabels: Record<string, string> = { app: 'payments' }): string {
  const labels = Object.entries(matchLabels)
    .map(([k, v]) => `        ${k}: ${v}`)
    .join('\n');
  return `type: MeshIdentity
name: payments
mesh: default
labels:
  k8s.kuma.io/namespace: kuma-system
spec:
  selector:
    dataplane:
      matchLabels:
${labels}
  spiffeID:
    trustDomain: ${PAYMENTS_TD}
  provider:
    type: Bundled
    bundled:
      ca:
        certificate:
          type: InsecureInline
          insecureInline:
            value: |-
${indent(ca.chainPem, 14)}
        privateKey:
          type: InsecureInline
          insecureInline:
            value: |-
${indent(ca.keyPem, 14)}
`;
}

export function dataplaneYaml(name: string, labels: Record<string, string>): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `  ${k}: ${v}`)
    .join('\n');
  return `type: Dataplane\nname: ${name}\nmesh: default\nlabels:\n${l}\n`;
}

export const WEB_LABELS = { app: 'web', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' };
export const PAY_LABELS = { app: 'payments', 'k8s.kuma.io/namespace': 'billing', 'k8s.kuma.io/service-account': 'pay' };

export interface Cas {
  partnerA: TestCa;
  partnerB: TestCa;
  alpha: TestCa;
  payRoot: TestCa;
  payInt: TestCa;
}

let casMemo: Cas | undefined;
/** Made once per test process (openssl is slowish). */
export function cas(): Cas {
  if (!casMemo) {
    const payRoot = makeCa('payments-root', { trustDomain: PAYMENTS_TD });
    casMemo = {
      partnerA: makeCa('partner-a', { trustDomain: PARTNER_TD }),
      partnerB: makeCa('partner-b', { trustDomain: PARTNER_TD }),
      alpha: makeCa('alpha', { trustDomain: ALPHA_TD }),
      payRoot,
      payInt: makeIntermediate(payRoot, 'payments-int', PAYMENTS_TD),
    };
  }
  return casMemo;
}

export interface World {
  dir: string;
  resourcesDir: string;
  stateDir: string;
  cas: Cas;
  /** Writes a resource file atomically (the store ignores dot files). */
  write(file: string, text: string): void;
  remove(file: string): void;
  cleanup(): void;
}

/**
 * The standard world: identity (all dataplanes, td default.default.mesh.local), payments (app=payments,
 * intermediate CA, td payments.mesh.local), two partner.example MeshTrusts with different CAs, a
 * MeshTrust for alpha.example whose name sorts last, and Dataplanes web and pay.
 */
export function makeWorld(opts: { extraDataplanes?: Record<string, Record<string, string>> } = {}): World {
  const c = cas();
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-conf-'));
  const resourcesDir = join(dir, 'resources');
  const stateDir = join(dir, 'state');
  execFileSync('mkdir', ['-p', resourcesDir, stateDir]);
  const write = (file: string, text: string) => {
    const tmp = join(resourcesDir, `.${file}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(resourcesDir, file));
  };
  write('identity.yaml', identityYaml());
  write('payments.yaml', paymentsIdentityYaml({ chainPem: c.payInt.certPem + c.payRoot.certPem, keyPem: c.payInt.keyPem }));
  write('partner-a.yaml', meshTrustYaml('partner-a', PARTNER_TD, [c.partnerA.certPem]));
  write('partner-b.yaml', meshTrustYaml('partner-b', PARTNER_TD, [c.partnerB.certPem]));
  write('zz-alpha.yaml', meshTrustYaml('zz-alpha', ALPHA_TD, [c.alpha.certPem]));
  const dps = { web: WEB_LABELS, pay: PAY_LABELS, ...(opts.extraDataplanes ?? {}) };
  write('dataplanes.yaml', Object.entries(dps).map(([n, l]) => dataplaneYaml(n, l)).join('---\n'));
  return {
    dir,
    resourcesDir,
    stateDir,
    cas: c,
    write,
    remove: (file) => unlinkSync(join(resourcesDir, file)),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export async function startWorldServer(world: World, cfg: Partial<ServeConfig> = {}): Promise<RunningServer> {
  const s = await startServer({
    resourcesDir: world.resourcesDir,
    stateDir: world.stateDir,
    listen: '127.0.0.1:0',
    auth: 'none',
    zone: ZONE,
    logger: createLogger('silent'),
    ...cfg,
  });
  await s.ready;
  return s;
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 3000, everyMs = 10): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Splits concatenated PEM certificates. */
export function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/**
 * `openssl verify -x509_strict -purpose sslclient -CAfile bundle [-untrusted intermediates] leaf`:
 * returns openssl's output, throws with its stderr when verification fails.
 */
export function opensslVerify(chainPem: string, bundlePem: string): string {
  const [leaf, ...intermediates] = splitPem(chainPem);
  if (!leaf) throw new Error('empty certificate chain');
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-verify-'));
  try {
    writeFileSync(join(dir, 'leaf.pem'), leaf);
    writeFileSync(join(dir, 'bundle.pem'), bundlePem);
    const args = ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', join(dir, 'bundle.pem')];
    if (intermediates.length > 0) {
      writeFileSync(join(dir, 'untrusted.pem'), intermediates.join(''));
      args.push('-untrusted', join(dir, 'untrusted.pem'));
    }
    args.push(join(dir, 'leaf.pem'));
    try {
      return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string };
      throw new Error(`openssl verify failed: ${err.stdout ?? ''}${err.stderr ?? ''}`, { cause: e });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** SPIFFE ID (URI SAN), serial and issuer of the first certificate of a PEM chain. */
export function leafInfo(chainPem: string): { uri: string; serial: string; issuer: string } {
  const leaf = splitPem(chainPem)[0] ?? '';
  const text = openssl(['x509', '-noout', '-serial', '-issuer', '-ext', 'subjectAltName'], leaf);
  const uri = /URI:(\S+)/.exec(text)?.[1] ?? '';
  const serial = /serial=(\S+)/.exec(text)?.[1] ?? '';
  const issuer = /issuer=(.*)/.exec(text)?.[1]?.trim() ?? '';
  return { uri, serial, issuer };
}
