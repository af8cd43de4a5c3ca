// Test fixtures: CAs made by the openssl CLI (an independent implementation) and openssl verify.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempDir {
  path: string;
  file(name: string, content?: string): string;
  cleanup(): void;
}

export function tempDir(): TempDir {
  const path = mkdtempSync(join(tmpdir(), 'mesh-sds-pki-'));
  return {
    path,
    file(name, content) {
      const p = join(path, name);
      if (content !== undefined) writeFileSync(p, content);
      return p;
    },
    cleanup: () => rmSync(path, { recursive: true, force: true }),
  };
}

export const openssl = (args: string[], cwd?: string): string =>
  execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export type TestKeyAlg = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';
export type KeyFormat = 'pkcs8' | 'traditional'; // traditional = PKCS#1 (RSA) / SEC1 (EC)

/** A private key PEM made by openssl. */
export function makeKey(dir: TempDir, name: string, alg: TestKeyAlg, format: KeyFormat = 'pkcs8'): string {
  const p = dir.file(`${name}.key`);
  const args = alg.startsWith('ec-')
    ? ['-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${{ 'ec-p256': 'P-256', 'ec-p384': 'P-384', 'ec-p521': 'P-521' }[alg as 'ec-p256']}`]
    : ['-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${alg.slice(4)}`];
  openssl(['genpkey', ...args, '-out', p]);
  if (format === 'pkcs8') return readFileSync(p, 'utf8');
  const t = dir.file(`${name}.trad.key`);
  openssl(['pkey', '-in', p, '-traditional', '-out', t]);
  return readFileSync(t, 'utf8');
}

export interface MakeCertOptions {
  subject: string;
  keyPem: string;
  /** Issuer; omitted = self-signed. */
  issuer?: { certPem: string; keyPem: string };
  /** openssl extension config lines (default: a well-formed CA). */
  extensions?: string[];
  days?: number;
  /** Leave out the AuthorityKeyIdentifier an issued certificate otherwise gets. */
  noAuthorityKeyId?: boolean;
  /** Digest the issuer signs with (default sha256). */
  digest?: string;
  /** `openssl x509 -sigopt` options of the issuer's signature (e.g. rsa_padding_mode:pss). */
  sigopt?: string[];
}

export const CA_EXTENSIONS = [
  'basicConstraints = critical, CA:TRUE',
  'keyUsage = critical, keyCertSign, cRLSign',
  'subjectKeyIdentifier = hash',
];

/** A certificate made by `openssl x509 -req`, with exactly the given extensions. */
export function makeCert(dir: TempDir, name: string, o: MakeCertOptions): string {
  const key = dir.file(`${name}.cert.key`, o.keyPem);
  const csr = dir.file(`${name}.csr`);
  const ext = dir.file(`${name}.ext`, `[v3]\n${(o.extensions ?? CA_EXTENSIONS).join('\n')}\n${o.issuer ? `authorityKeyIdentifier = ${o.noAuthorityKeyId ? 'none' : 'keyid'}\n` : ''}`);
  const out = dir.file(`${name}.pem`);
  openssl(['req', '-new', '-key', key, '-subj', o.subject, '-out', csr]);
  const signer = o.issuer
    ? ['-CA', dir.file(`${name}.issuer.pem`, o.issuer.certPem), '-CAkey', dir.file(`${name}.issuer.key`, o.issuer.keyPem), '-CAcreateserial']
    : ['-signkey', key];
  openssl(['x509', '-req', '-in', csr, ...signer, '-days', String(o.days ?? 30), '-extfile', ext, '-extensions', 'v3', `-${o.digest ?? 'sha256'}`, ...(o.sigopt ?? []).flatMap((opt) => ['-sigopt', opt]), '-out', out], dir.path);
  return readFileSync(out, 'utf8');
}

export interface Ca {
  certPem: string;
  keyPem: string;
}

export function makeRootCa(dir: TempDir, name: string, alg: TestKeyAlg = 'ec-p256', format: KeyFormat = 'pkcs8'): Ca {
  const keyPem = makeKey(dir, name, alg, format);
  return { keyPem, certPem: makeCert(dir, name, { subject: `/O=Test/CN=${name}`, keyPem }) };
}

export function makeIntermediateCa(dir: TempDir, name: string, parent: Ca, alg: TestKeyAlg = 'ec-p256'): Ca {
  const keyPem = makeKey(dir, name, alg);
  return { keyPem, certPem: makeCert(dir, name, { subject: `/O=Test/CN=${name}`, keyPem, issuer: parent }) };
}

/** `openssl verify -x509_strict`; returns [ok, output]. */
export function opensslVerify(
  dir: TempDir,
  o: { root: string; leafChain: string; purpose: 'sslserver' | 'sslclient'; untrusted?: string; partialChain?: boolean },
): { ok: boolean; output: string } {
  const leafPem = o.leafChain.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/)![0];
  const args = ['verify', '-x509_strict', '-purpose', o.purpose, '-CAfile', dir.file('verify-root.pem', o.root)];
  if (o.untrusted) args.push('-untrusted', dir.file('verify-untrusted.pem', o.untrusted));
  if (o.partialChain) args.push('-partial_chain');
  args.push(dir.file('verify-leaf.pem', leafPem));
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  const output = `${r.stdout}${r.stderr}`.trim();
  return { ok: r.status === 0 && /: OK$/.test(r.stdout.trim()), output };
}

export function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}
