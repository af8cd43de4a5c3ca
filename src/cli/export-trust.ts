// `export-trust`: a mesh's trust bundle as PEM (every trust domain, or one), or as a SPIFFE bundle
// (JWK Set) of ONE trust domain for static exchange with another zone or a SPIRE server.
import { quoted } from '../api/quote.js';
import { encodeSpiffeBundle } from '../api/spiffe-bundle.js';
import { storedSequence } from '../federation/sequence.js';
import type { AuthorityView } from '../identity/authorities.js';
import { issuingDomains } from '../identity/issuing-domains.js';
import type { StateStore } from '../store/types.js';
import { aggregateTrust } from '../trust/aggregate.js';

export type ExportFormat = 'pem' | 'spiffe-bundle';

export async function exportTrust(
  view: AuthorityView,
  state: StateStore,
  o: { mesh: string; trustDomain?: string; format: ExportFormat },
): Promise<string> {
  const bundle = aggregateTrust(view.trusts, o.mesh);
  const domains = bundle.domains.filter((d) => !o.trustDomain || d.trustDomain === o.trustDomain);
  if (domains.length === 0) throw new Error(`no trust bundle for mesh ${quoted(o.mesh)}${o.trustDomain ? ` and trust domain ${quoted(o.trustDomain)}` : ''}`);
  if (o.format === 'pem') return domains.map((d) => `# trust domain: ${d.trustDomain}\n${d.pem}`).join('');

  // A SPIFFE bundle carries no trust domain name, so it is one document per trust domain.
  if (domains.length > 1) {
    throw new Error(
      `mesh ${quoted(o.mesh)} trusts ${domains.length} trust domains (${domains.map((d) => d.trustDomain).join(', ')}); a SPIFFE bundle is for one: choose it with --trust-domain`,
    );
  }
  const d = domains[0]!;
  // The same spiffe_sequence as the bundle endpoint when this is exactly what it publishes
  // (read only: an export never advances the sequence).
  const issuing = issuingDomains(view).find((x) => x.trustDomain === d.trustDomain);
  const same = issuing && sameSet(issuing.caPems.join(''), d.pem);
  const sequence = same ? await storedSequence(state, d.trustDomain, issuing.caFingerprints) : undefined;
  return encodeSpiffeBundle({ cas: [d.pem], sequence });
}

function sameSet(a: string, b: string): boolean {
  const blocks = (s: string) => new Set((s.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((x) => x.replace(/\s+/g, '')));
  const x = blocks(a);
  const y = blocks(b);
  return x.size === y.size && [...x].every((v) => y.has(v));
}
