// Whether a fetched document may replace the last accepted bundle of a trust domain (SPEC §10).
import { caTrustDomains, noneValidNow } from '../api/pem.js';
import { decodeSpiffeBundle } from './bundle.js';
import { FederationFailure } from './fetch.js';

export interface AcceptedBundle {
  trustDomain: string;
  /** One PEM certificate per CA. */
  caPems: string[];
  sequence?: number;
  refreshHintSeconds?: number;
}

/**
 * Decodes and checks a fetched SPIFFE bundle: well-formed, at least one X.509 CA, at least one CA
 * valid at `now`, no CA that says it belongs to another trust domain, and a `spiffe_sequence` not
 * lower than the last one.
 */
export function acceptBundle(text: string, trustDomain: string, last: AcceptedBundle | undefined, now: Date = new Date()): AcceptedBundle {
  let decoded;
  try {
    decoded = decodeSpiffeBundle(text);
  } catch (e) {
    throw new FederationFailure('malformed', `not a SPIFFE bundle: ${(e as Error).message}`);
  }
  if (decoded.caPems.length === 0) throw new FederationFailure('no_ca', 'the bundle carries no X.509 CA');
  // Accepted, a bundle of only expired (or not yet valid) CAs would become the one that must
  // authenticate the endpoint next time: nothing could, and federation would be locked out.
  const spans = noneValidNow(decoded.cas, now);
  if (spans) throw new FederationFailure('no_valid_ca', `no CA of the bundle is valid now (valid ${spans.join('; ')})`);
  for (const pem of decoded.caPems) {
    const other = caTrustDomains(pem).find((td) => td !== trustDomain);
    if (other !== undefined) throw new FederationFailure('wrong_trust_domain', `the bundle is for trust domain ${other}, not ${trustDomain}`);
  }
  if (last?.sequence !== undefined) {
    if (decoded.sequence === undefined) throw new FederationFailure('sequence_regressed', `the bundle has no spiffe_sequence; the last accepted one had ${last.sequence}`);
    if (decoded.sequence < last.sequence) throw new FederationFailure('sequence_regressed', `spiffe_sequence ${decoded.sequence} is lower than the last accepted ${last.sequence}`);
  }
  const out: AcceptedBundle = { trustDomain, caPems: decoded.caPems };
  if (decoded.sequence !== undefined) out.sequence = decoded.sequence;
  if (decoded.refreshHintSeconds !== undefined) out.refreshHintSeconds = decoded.refreshHintSeconds;
  return out;
}
