// Leaf issuance throughput (SPEC §8): SvidIssuer vs a plain @peculiar/x509 baseline, both producing
// an ECDSA P-256 key + certificate + PEM per leaf with the same extensions, and vs the raw
// node:crypto rate (bench/raw-crypto.ts). SvidIssuer and raw crypto are measured in alternating
// slices (raw, SvidIssuer, raw, SvidIssuer, ...) so that load from other work on a shared machine
// falls on both alike; each rate is its leaves over its own slices' time.
// Run directly: npx tsx bench/issuance.ts [seconds]
import { webcrypto } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { generateCertificateAuthority } from '../src/pki/generate-ca.js';
import { loadCertificateAuthority } from '../src/pki/ca.js';
import { SvidIssuer } from '../src/pki/issuer.js';
import type { CertificateAuthority } from '../src/pki/types.js';
import { x509 } from '../src/pki/x509.js';
import { rawCryptoRate } from './raw-crypto.js';

export interface IssuanceBenchOptions {
  /** Time budget per contender (default 3 s); ignored when `count` is given. */
  seconds?: number;
  /** Fixed number of leaves per contender. */
  count?: number;
}

export interface IssuanceBenchResult {
  fastPerSec: number;
  naivePerSec: number;
  /** fastPerSec / naivePerSec. */
  ratio: number;
  rawCryptoPerSec: number;
  rawCryptoThreads: number;
  /** fastPerSec / rawCryptoPerSec. */
  fractionOfRaw: number;
  /** Per alternating slice: SvidIssuer and raw rates (same-run, back to back). */
  slices: Array<{ fast: number; raw: number }>;
}

/** Slices each contender's time is cut into when measured against raw crypto. */
const SLICES = 3;

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

/**
 * SvidIssuer and raw crypto in alternating slices of `seconds / SLICES` each (one pool throughout,
 * started before the first slice, as a server's is).
 */
async function fastAndRawRates(ca: CertificateAuthority, opts: IssuanceBenchOptions): Promise<Omit<IssuanceBenchResult, 'naivePerSec' | 'ratio'>> {
  const issuer = new SvidIssuer();
  const seconds = opts.seconds ?? 3;
  const slices: Array<{ fast: number; raw: number }> = [];
  let threads = 0;
  try {
    await Promise.all(Array.from({ length: 200 }, (_, i) => issuer.issue(ca, id(i), 86_400_000))); // start workers
    for (let s = 0; s < SLICES; s++) {
      const raw = await rawCryptoRate(seconds / SLICES);
      threads = raw.threads;
      const sliceOpts: IssuanceBenchOptions = opts.count !== undefined ? { count: Math.ceil(opts.count / SLICES) } : { seconds: seconds / SLICES };
      const fast = await rate(async (base) => {
        const k = sliceOpts.count !== undefined ? Math.min(1000, sliceOpts.count - base) : 1000;
        const all = await Promise.all(Array.from({ length: k }, (_, i) => issuer.issue(ca, id(base + i), 86_400_000)));
        return all.length;
      }, sliceOpts);
      slices.push({ fast, raw: raw.perSec });
    }
  } finally {
    await issuer.close();
  }
  // Slices have equal durations (time budget) or equal counts: average the rates accordingly.
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const harmonic = (xs: number[]): number => xs.length / xs.reduce((a, b) => a + 1 / b, 0);
  const fastPerSec = opts.count !== undefined ? harmonic(slices.map((x) => x.fast)) : mean(slices.map((x) => x.fast));
  const rawCryptoPerSec = mean(slices.map((x) => x.raw));
  return { fastPerSec, rawCryptoPerSec, rawCryptoThreads: threads, fractionOfRaw: fastPerSec / rawCryptoPerSec, slices };
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
  const fast = await fastAndRawRates(ca, opts);
  const naivePerSec = await naiveRate(certPem, keyPem, opts);
  return { ...fast, naivePerSec, ratio: fast.fastPerSec / naivePerSec };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.argv[2] ?? 3);
  const r = await benchIssuance({ seconds });
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(10);
  console.log('leaf issuance, ECDSA P-256 (key + cert + PEM)');
  console.log(`  mesh-sds SvidIssuer     ${fmt(r.fastPerSec)} /s`);
  console.log(`  raw node:crypto         ${fmt(r.rawCryptoPerSec)} /s (${r.rawCryptoThreads} threads)`);
  console.log(`  fraction of raw         ${(r.fractionOfRaw * 100).toFixed(0).padStart(10)} %   slices: ${r.slices.map((x) => (x.fast / x.raw).toFixed(2)).join(' ')}`);
  console.log(`  @peculiar/x509 baseline ${fmt(r.naivePerSec)} /s`);
  console.log(`  speed-up                ${r.ratio.toFixed(1).padStart(10)} x`);
}
