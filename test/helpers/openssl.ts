// Real certificates made by the openssl CLI, so tests never check our PKI with itself.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export interface TestCa {
  certPem: string;
  keyPem: string;
}

export function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** A self-signed ECDSA P-256 CA with SKI. */
export function makeCa(cn: string, opts: { trustDomain?: string; days?: number; rsa?: boolean } = {}): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-ca-'));
  try {
    const key = join(dir, 'ca.key');
    const crt = join(dir, 'ca.crt');
    if (opts.rsa) openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]);
    else openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    const san = opts.trustDomain ? ['-addext', `subjectAltName=URI:spiffe://${opts.trustDomain}`] : [];
    const validity = ['-days', String(opts.days ?? 3650)];
    openssl([
      'req', '-x509', '-new', '-key', key, '-out', crt, '-subj', `/O=Test/CN=${cn}`, ...validity,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash', ...san,
    ]);
    return { certPem: readFileSync(crt, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A leaf (not a CA) signed by nothing: useful to prove "must be a CA" checks. */
export function makeLeaf(cn: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-leaf-'));
  try {
    const key = join(dir, 'k');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    writeFileSync(join(dir, 'x'), '');
    return openssl(['req', '-x509', '-new', '-key', key, '-subj', `/CN=${cn}`, '-days', '30', '-addext', 'basicConstraints=critical,CA:FALSE']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A self-signed P-256 CA valid until `notAfter` (from `notBefore`, default a minute ago), with a
 * SPIFFE URI SAN when a trust domain is given: openssl 3.0 cannot date a certificate so, @peculiar/x509 can.
 */
export async function makeCaUntil(cn: string, notAfter: Date, opts: { notBefore?: Date; trustDomain?: string } = {}): Promise<TestCa> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${cn}`,
    notBefore: opts.notBefore ?? new Date(Date.now() - 60_000),
    notAfter,
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(opts.trustDomain ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${opts.trustDomain}` }])] : []),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem') + '\n', keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n' };
}

/** A CA that expired in 2021. */
export function makeExpiredCa(cn: string): Promise<TestCa> {
  return makeCaUntil(cn, new Date('2021-01-01T00:00:00Z'), { notBefore: new Date('2020-01-01T00:00:00Z') });
}
