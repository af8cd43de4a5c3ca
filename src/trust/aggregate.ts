import { createHash, X509Certificate } from 'node:crypto';
import type { MeshTrust } from '../api/types.js';
import { caKeyProblem, isSelfSignedRoot, splitPemCertificates } from '../api/pem.js';

export interface TrustedCa {
  fingerprint: string;
  subject: string;
  notAfter: Date;
  pem: string;
  /** Names of the MeshTrusts that carry this CA. */
  sources: string[];
  /** Self-signed (a root): what a verifier without partial chains can anchor a chain at. */
  selfSigned: boolean;
}

export interface TrustDomainBundle {
  trustDomain: string;
  cas: TrustedCa[];
  /** The CAs concatenated: what goes into `trusted_ca` / `trust_bundle`. */
  pem: string;
}

export interface ExpiredCa {
  trustDomain: string;
  source: string;
  subject: string;
  notAfter: Date;
}

export interface MeshTrustBundle {
  mesh: string;
  /** One entry per distinct trust domain, sorted by name. */
  domains: TrustDomainBundle[];
  /** CA bundles not used because their PEM is not all certificates (absent when there is none). */
  rejected?: RejectedCaBundle[];
  /**
   * Trust domains none of whose CAs is self-signed (absent when there is none): Envoy's SPIFFE
   * validator builds its store without partial chains, so it verifies none of their SVIDs.
   */
  unanchored?: string[];
  /**
   * CAs with a key peers refuse to trust (caKeyProblem; absent when there is none): still served,
   * as they were before (dropping one at an upgrade would end a working domain), but reported.
   */
  unusable?: UnusableCa[];
}

export interface UnusableCa {
  trustDomain: string;
  /** The first MeshTrust that carries it. */
  source: string;
  subject: string;
  /** What is wrong with its key, e.g. "an RSA 1024-bit key; at least 2048 bits are required". */
  reason: string;
}

export interface RejectedCaBundle {
  trustDomain: string;
  /** The MeshTrust and the index of its caBundle. */
  source: string;
  index: number;
  reason: string;
}

function toPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/**
 * Aggregates every MeshTrust of a mesh into one bundle per trust domain: Envoy's SPIFFE validator
 * rejects the same trust domain twice, so same-domain CAs are merged and duplicates dropped.
 */
export function aggregateTrust(trusts: Iterable<MeshTrust>, mesh: string): MeshTrustBundle {
  const byDomain = new Map<string, Map<string, TrustedCa>>();
  const rejected: RejectedCaBundle[] = [];
  const unusable: UnusableCa[] = [];
  const sorted = [...trusts].filter((t) => t.mesh === mesh).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const t of sorted) {
    const domain = t.spec.trustDomain;
    let cas = byDomain.get(domain);
    if (!cas) byDomain.set(domain, (cas = new Map()));
    for (const [index, bundle] of t.spec.caBundles.entries()) {
      const { ders, error } = splitPemCertificates(bundle.pem.value);
      // The splitter stops at the first bad block: using what came before it would trust part of
      // the bundle, by position, silently. Such a bundle (a damaged generated MeshTrust: resources are
      // refused for it when read) is not used at all, as validation would, and is reported.
      if (error) {
        rejected.push({ trustDomain: domain, source: t.name, index, reason: error });
        continue;
      }
      for (const der of ders) {
        const fingerprint = createHash('sha256').update(der).digest('hex');
        const existing = cas.get(fingerprint);
        if (existing) {
          if (!existing.sources.includes(t.name)) existing.sources.push(t.name);
          continue;
        }
        const cert = new X509Certificate(der);
        const notAfter = new Date(cert.validTo);
        const selfSigned = isSelfSignedRoot(cert);
        const keyProblem = caKeyProblem(cert);
        if (keyProblem) unusable.push({ trustDomain: domain, source: t.name, subject: cert.subject.split('\n').join(', '), reason: keyProblem });
        cas.set(fingerprint, { fingerprint, subject: cert.subject, notAfter, pem: toPem(der), sources: [t.name], selfSigned });
      }
    }
  }
  const domains = [...byDomain.entries()]
    .filter(([, cas]) => cas.size > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([trustDomain, cas]) => {
      const list = [...cas.values()];
      return { trustDomain, cas: list, pem: list.map((c) => c.pem).join('') };
    });
  const unanchored = domains.filter((d) => !d.cas.some((c) => c.selfSigned)).map((d) => d.trustDomain);
  return {
    mesh,
    domains,
    ...(rejected.length > 0 ? { rejected } : {}),
    ...(unanchored.length > 0 ? { unanchored } : {}),
    ...(unusable.length > 0 ? { unusable } : {}),
  };
}

/**
 * The CAs of a bundle past their NotAfter at `now`: still listed (they validate nothing) but
 * reported. Judged when asked, not when the bundle was built: a CA expires while nothing changes.
 */
export function expiredCas(bundle: MeshTrustBundle, now: Date): ExpiredCa[] {
  const expired: ExpiredCa[] = [];
  for (const d of bundle.domains) {
    for (const ca of d.cas) {
      if (ca.notAfter.getTime() < now.getTime()) expired.push({ trustDomain: d.trustDomain, source: ca.sources[0]!, subject: ca.subject, notAfter: ca.notAfter });
    }
  }
  return expired;
}

/** Every CA of the mesh, one copy each, for the flat `trusted_ca` fallback. */
export function flatBundlePem(bundle: MeshTrustBundle): string {
  const seen = new Set<string>();
  let pem = '';
  for (const d of bundle.domains)
    for (const ca of d.cas) {
      if (seen.has(ca.fingerprint)) continue;
      seen.add(ca.fingerprint);
      pem += ca.pem;
    }
  return pem;
}
