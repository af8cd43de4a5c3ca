// Workload certificates for agent tests against a scripted server: the agent refuses a CA
// certificate (CA:TRUE) as an identity, so these are end-entity certificates made by openssl.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { openssl, type TestCa } from '../helpers/openssl.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';

/**
 * A self-signed end-entity certificate (CA:FALSE) with a SPIFFE ID, and its key. Put in a trust
 * bundle, it verifies itself, so the agent has nothing to warn about.
 */
export function makeSvid(cn: string, spiffeId = `spiffe://${cn.toLowerCase()}.example/workload`): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-svid-'));
  try {
    const key = join(dir, 'k');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    writeFileSync(join(dir, 'x'), '');
    const certPem = openssl([
      'req', '-x509', '-new', '-key', key, '-subj', `/O=Test/CN=${cn}`, '-days', '30',
      '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', `subjectAltName=URI:${spiffeId}`,
    ]);
    return { certPem, keyPem: readFileSync(key, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A self-signed end-entity certificate valid from `notBefore` to `notAfter` (openssl 3.0 cannot date one so). */
export async function makeSvidBetween(cn: string, notBefore: Date, notAfter: Date, spiffeId = `spiffe://${cn.toLowerCase()}.example/workload`): Promise<TestCa> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${cn}`,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem') + '\n', keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n' };
}

/** The `default` identity secret of a test certificate, versioned by it (a scripted server's push). */
export const identitySecret = (ca: TestCa) => tlsCertificateSecret('default', ca.certPem, ca.keyPem, `serial-${ca.certPem.length}`);
/** A SPIFFE trust bundle secret (`ALL` unless named) trusting `ca` for x.example. */
export const trustSecret = (ca: TestCa, name = 'ALL') => spiffeValidatorSecret(name, [{ trustDomain: 'x.example', pem: ca.certPem }]);
