// The trust domains this server issues from, with the CAs a SPIFFE bundle of each must carry:
// what the bundle endpoint and `export-trust --format spiffe-bundle` publish.
import { X509Certificate, createHash } from 'node:crypto';
import type { CertificateAuthority } from '../pki/types.js';
import type { AuthorityView } from './authorities.js';

export interface IssuingDomain {
  trustDomain: string;
  /** The CA the endpoint's own SVID is issued from (of the first identity, by key, with a CA). */
  ca: CertificateAuthority;
  /** Its leaf lifetime: the endpoint SVID lives as long as the identity's SVIDs. */
  svidLifetimeMs: number;
  /** PEM of every CA to publish, each once: each identity's current CA and the rolled ones whose leaves may still be alive. */
  caPems: string[];
  /** Fingerprints of the signing CAs behind `caPems`. */
  caFingerprints: string[];
}

/**
 * Bundled identities with a CA and a fixed trust domain, grouped by trust domain and sorted by
 * name. An identity whose trust domain depends on proxy labels has none to publish.
 */
export function issuingDomains(view: AuthorityView | undefined): IssuingDomain[] {
  if (!view) return [];
  const byDomain = new Map<string, IssuingDomain>();
  const states = [...view.identities.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const st of states) {
    const provider = st.identity.spec.provider;
    if (provider.type !== 'Bundled' || !st.ca || !st.trustDomain) continue;
    let d = byDomain.get(st.trustDomain);
    if (!d) {
      d = { trustDomain: st.trustDomain, ca: st.ca, svidLifetimeMs: provider.bundled.certificateParameters.expiryMs, caPems: [], caFingerprints: [] };
      byDomain.set(st.trustDomain, d);
    }
    const history = st.caHistory?.length ? st.caHistory : [{ fingerprint: st.ca.fingerprint, pem: st.ca.trustPem }];
    for (const h of history) addCa(d, h.fingerprint, h.pem);
  }
  // So do the recorded CAs of an identity that cannot load its CA now (a restart with a broken CA
  // input), and a gone identity's CAs, in the bundle of a trust domain this server still issues
  // from, as they stay in its own proxies' bundles: peers must keep trusting the leaves they signed.
  for (const st of states) {
    const d = !st.ca && st.trustDomain ? byDomain.get(st.trustDomain) : undefined;
    if (d && st.identity.spec.provider.type === 'Bundled') for (const h of st.caHistory ?? []) addCa(d, h.fingerprint, h.pem);
  }
  for (const r of view.retired ?? []) {
    const d = byDomain.get(r.trustDomain);
    if (!d) continue;
    for (const pem of r.pems) addCa(d, createHash('sha256').update(new X509Certificate(pem).raw).digest('hex'), pem);
  }
  return [...byDomain.values()].sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0));
}

/** A PEM certificate's base64 body: one certificate, however its lines are broken. */
const pemBody = (pem: string): string => pem.replace(/-----[^-]+-----|\s+/g, '');

/**
 * Adds a CA to a domain's bundle unless it is there already (by fingerprint). The PEM is that of
 * its root, which intermediates of several identities (or a CA and the one it rolled to) share:
 * published once.
 */
function addCa(d: IssuingDomain, fingerprint: string, pem: string): void {
  if (d.caFingerprints.includes(fingerprint)) return;
  d.caFingerprints.push(fingerprint);
  const body = pemBody(pem);
  if (!d.caPems.some((p) => pemBody(p) === body)) d.caPems.push(pem);
}
