// The peer check Envoy's SPIFFE validator (envoy.tls.cert_validator.spiffe) performs, written out
// for a plain Node `tls` peer:
//   1. the leaf must not be a CA;
//   2. its trust domain is taken from its first URI SAN (`spiffe://<td>/…`);
//   3. that domain must be one of the validation context's trust_domains;
//   4. the chain must verify against THAT domain's CAs only: a CA of another trusted domain does
//      not count, so one domain cannot mint identities of another.
// The per-domain CA sets come from the `system_trust_bundle` secret itself (its SPIFFE validator
// config keeps the domains apart); the agent's bundle.pem concatenates every domain and so cannot
// answer step 4.
import { X509Certificate } from 'node:crypto';
import { splitPemCertificates } from '../../src/api/pem.js';

export type TrustDomains = ReadonlyMap<string, readonly X509Certificate[]>;

export type SpiffeVerdict = { ok: true; spiffeId: string; trustDomain: string } | { ok: false; reason: string };

export function trustDomainsFrom(domains: readonly { name: string; pem: string }[]): TrustDomains {
  return new Map(domains.map((d) => [d.name, splitPemCertificates(d.pem).ders.map((der) => new X509Certificate(der))]));
}

/** URI SANs of a certificate, in order (Node renders them as `URI:…, DNS:…`). */
export function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

const within = (c: X509Certificate, now: Date) => new Date(c.validFrom) <= now && now <= new Date(c.validTo);
const signedBy = (child: X509Certificate, issuer: X509Certificate) => child.checkIssued(issuer) && child.verify(issuer.publicKey);

/** `chain[0]` is the peer's leaf, the rest what it sent as intermediates. */
export function verifySpiffePeer(chain: readonly X509Certificate[], trust: TrustDomains, now = new Date()): SpiffeVerdict {
  const leaf = chain[0];
  if (!leaf) return { ok: false, reason: 'no peer certificate' };
  if (leaf.ca) return { ok: false, reason: 'the leaf certificate is a CA' };
  const spiffeId = uriSans(leaf).find((u) => u.startsWith('spiffe://'));
  if (!spiffeId) return { ok: false, reason: 'no spiffe:// URI SAN' };
  const trustDomain = spiffeId.slice('spiffe://'.length).split('/')[0] ?? '';
  const roots = trust.get(trustDomain);
  if (!roots) return { ok: false, reason: `trust domain ${trustDomain} is not trusted` };
  if (!within(leaf, now)) return { ok: false, reason: 'the leaf is outside its validity period' };
  // Walk up through the sent intermediates until one of the domain's CAs signed the current cert.
  let current = leaf;
  const intermediates = chain.slice(1);
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (roots.some((r) => within(r, now) && signedBy(current, r))) return { ok: true, spiffeId, trustDomain };
    const next = intermediates.find((c) => c.ca && within(c, now) && signedBy(current, c));
    if (!next) break;
    current = next;
  }
  return { ok: false, reason: `the chain does not verify against the CAs of trust domain ${trustDomain}` };
}

/** The peer chain of a TLS socket as X509Certificates, leaf first. */
export function peerChain(socket: { getPeerCertificate(detailed: true): { raw?: Buffer; issuerCertificate?: unknown } }): X509Certificate[] {
  const out: X509Certificate[] = [];
  type Detailed = { raw?: Buffer; issuerCertificate?: Detailed };
  let c = socket.getPeerCertificate(true) as Detailed;
  const seen = new Set<string>();
  while (c?.raw && out.length < 10) {
    const key = c.raw.toString('base64');
    if (seen.has(key)) break; // a self-signed root points at itself
    seen.add(key);
    out.push(new X509Certificate(c.raw));
    c = c.issuerCertificate as Detailed;
  }
  return out;
}
