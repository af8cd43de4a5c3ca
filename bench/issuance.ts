// Leaf issuance throughput (SPEC §8): SvidIssuer vs a plain @peculiar/x509 baseline, both producing
// an ECDSA P-256 key + certificate + PEM per leaf with the same extensions.
// Run directly: npx tsx bench/issuance.ts [seconds]
import { webcrypto } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { generateCertificateAuthority } from '../src/pki/generate-ca.js';
import { loadCertificateAuthority } from '../src/pki/ca.js';
import { SvidIssuer } from '../src/pki/issuer.js';
import type { CertificateAuthority } from '../src/pki/types.js';
import { x509 } from '../src/pki/x509.js';

export interface IssuanceBenchOptions {
  /** Time budget per contender (default 3 s); ignored when `count` is given. */
  seconds?: number;
  /** Fixed number of leaves per contender. */
  count?: number;
}

export interface IssuanceBenchResult {
  fastPerSec: number;
  naivePerSec: number;
  ratio: number;
}

const TD = 'bench.default.mesh.local';
const id = (i: number): string => `spiffe://${TD}/ns/bench/sa/sa-${i}`;

/** Runs `step` (which issues `n` leaves per call) until the count or time budget is spent. */
async function rate(step: (i: number) => Promise<number>, opts: IssuanceBenchOptions): Promise<number> {
  const deadline = performance.now() + (opts.seconds ?? 3) * 1000;
  const start = performance.now();
  let done = 0;
  while (opts.count !== undefined ? done < opts.count : performance.now() < deadline) done += await step(done);
  return done / ((performance.now() - start) / 1000);
}

async function fastRate(ca: CertificateAuthority, opts: IssuanceBenchOptions): Promise<number> {
  const issuer = new SvidIssuer();
  try {
    await Promise.all(Array.from({ length: 200 }, (_, i) => issuer.issue(ca, id(i), 86_400_000))); // start workers
    return await rate(async (base) => {
      const n = opts.count !== undefined ? Math.min(1000, opts.count - base) : 1000;
      const all = await Promise.all(Array.from({ length: n }, (_, i) => issuer.issue(ca, id(base + i), 86_400_000)));
      return all.length;
    }, opts);
  } finally {
    await issuer.close();
  }
}

async function naiveRate(certPem: string, keyPem: string, opts: IssuanceBenchOptions): Promise<number> {
  const subtle = webcrypto.subtle;
  const alg = { name: 'ECDSA', namedCurve: 'P-256' } as const;
  const caCert = new x509.X509Certificate(certPem);
  const caKey = await subtle.importKey('pkcs8', x509.PemConverter.decode(keyPem)[0]!, alg, false, ['sign']);
  const caSki = caCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  const issueOne = async (i: number): Promise<number> => {
    const keys = await subtle.generateKey(alg, true, ['sign', 'verify']);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      issuer: caCert.subject,
      subject: '',
      notBefore: new Date(now - 10_000),
      notAfter: new Date(now + 86_400_000),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.AuthorityKeyIdentifierExtension(caSki),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id(i) }], true),
      ],
    });
    const pem = cert.toString('pem') + x509.PemConverter.encode(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    return pem.length > 0 ? 1 : 0;
  };
  await issueOne(0); // warm up
  return rate(issueOne, opts);
}

export async function benchIssuance(opts: IssuanceBenchOptions = {}): Promise<IssuanceBenchResult> {
  const { certPem, keyPem } = generateCertificateAuthority(TD);
  const ca = loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: true });
  const fastPerSec = await fastRate(ca, opts);
  const naivePerSec = await naiveRate(certPem, keyPem, opts);
  return { fastPerSec, naivePerSec, ratio: fastPerSec / naivePerSec };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.argv[2] ?? 3);
  const r = await benchIssuance({ seconds });
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(10);
  console.log('leaf issuance, ECDSA P-256 (key + cert + PEM)');
  console.log(`  mesh-sds SvidIssuer     ${fmt(r.fastPerSec)} /s`);
  console.log(`  @peculiar/x509 baseline ${fmt(r.naivePerSec)} /s`);
  console.log(`  speed-up                ${r.ratio.toFixed(1).padStart(10)} x`);
}
