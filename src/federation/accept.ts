// Whether a fetched document may replace the last accepted bundle of a trust domain (SPEC §10).
import { caKeyProblem, caTrustDomains, hasUnreadableValidity, noneValidNow } from '../api/pem.js';
import { decodeSpiffeBundle, X509_SVID_USE } from './bundle.js';
import { FederationFailure } from './fetch.js';

export interface AcceptedBundle {
  trustDomain: string;
  /** One PEM certificate per CA. */
  caPems: string[];
  sequence?: number;
  refreshHintSeconds?: number;
}

/**
 * The most X.509 CAs a fetched bundle may carry. A trust domain publishes its current CA and those
 * in rotation, a handful; the 1 MiB response cap alone let a peer send ~1,000, whose parsing
 * blocked the event loop for about a second per refresh and whose PEM went to every proxy.
 */
export const MAX_BUNDLE_CAS = 64;

/**
 * Decodes and checks a fetched SPIFFE bundle: well-formed, at most MAX_BUNDLE_CAS X.509 CAs and
 * at least one, each with an acceptable key (caKeyProblem), at least one CA valid at `now`, no CA that says it belongs to another trust
 * domain, and a `spiffe_sequence` not lower than the last one.
 */
export function acceptBundle(text: string, trustDomain: string, last: AcceptedBundle | undefined, now: Date = new Date()): AcceptedBundle {
  let doc: unknown = text;
  try {
    doc = JSON.parse(text);
  } catch {
    // Not JSON: decodeSpiffeBundle says so below.
  }
  // Counted before decoding, which parses each certificate: that is the cost the bound is for.
  const x509Keys = x509KeyCount(doc);
  if (x509Keys > MAX_BUNDLE_CAS) throw new FederationFailure('too_many_cas', `the bundle carries ${x509Keys} X.509 CAs; at most ${MAX_BUNDLE_CAS} are accepted from a peer`);
  let decoded;
  try {
    decoded = decodeSpiffeBundle(doc);
  } catch (e) {
    throw new FederationFailure('malformed', `not a SPIFFE bundle: ${(e as Error).message}`);
  }
  if (decoded.caPems.length === 0) throw new FederationFailure('no_ca', `the bundle carries no X.509 CA: ${noCaDetail(decoded.ignored)}`);
  // One weak anchor is enough to forge identities of the trust domain: the bundle is refused whole.
  decoded.cas.forEach((cert, i) => {
    const problem = caKeyProblem(cert);
    if (problem) throw new FederationFailure('unacceptable_ca_key', `CA ${i + 1} of ${decoded.cas.length} has ${problem}`);
    // OpenSSL parses a certificate whose times it cannot read ("Bad time value"); accepted beside a
    // valid CA, it went to every mesh, where each reader of its dates (fetch's summary, the debug
    // endpoint) threw on it.
    if (hasUnreadableValidity(cert)) {
      throw new FederationFailure('malformed', `CA ${i + 1} of ${decoded.cas.length} has a validity that cannot be read (not before ${JSON.stringify(cert.validFrom)}, not after ${JSON.stringify(cert.validTo)})`);
    }
  });
  // Accepted, a bundle of only expired (or not yet valid) CAs would become the one that must
  // authenticate the endpoint next time: nothing could, and federation would be locked out.
  const spans = noneValidNow(decoded.cas, now);
  if (spans) throw new FederationFailure('no_valid_ca', `no CA of the bundle is valid now (valid ${spans.join('; ')})`);
  for (const pem of decoded.caPems) {
    const other = caTrustDomains(pem).find((td) => td !== trustDomain);
    if (other !== undefined) throw new FederationFailure('wrong_trust_domain', `the bundle is for trust domain ${other}, not ${trustDomain}`);
  }
  if (last?.sequence !== undefined) {
    if (decoded.sequence === undefined) throw new FederationFailure('sequence_regressed', `the bundle has no spiffe_sequence; the last accepted one had ${last.sequence}; ${RESTART_HINT}`);
    if (decoded.sequence < last.sequence) throw new FederationFailure('sequence_regressed', `spiffe_sequence ${decoded.sequence} is lower than the last accepted ${last.sequence}; ${RESTART_HINT}`);
  }
  const out: AcceptedBundle = { trustDomain, caPems: decoded.caPems };
  if (decoded.sequence !== undefined) out.sequence = decoded.sequence;
  if (decoded.refreshHintSeconds !== undefined) out.refreshHintSeconds = decoded.refreshHintSeconds;
  return out;
}

/**
 * The way back from a peer that starts its sequence anew (re-installed, state lost): the record of
 * a trust domain belongs to its bootstrap bundle (by CA set) and endpoint URL (record.ts
 * descendsFrom), so a new one of either starts from the new bootstrap bundle.
 */
const RESTART_HINT =
  'to follow a re-installed peer from its new bundle, put that bundle (with its new CA) in spec.trustDomainBundle or point spec.bundleEndpointURL at a new endpoint: either starts afresh';

/** Why no key of the document counted: the keys ignored and their `use` (or `kty`), a few of them. */
function noCaDetail(ignored: readonly string[]): string {
  if (ignored.length === 0) return 'its key list is empty';
  const shown = ignored.slice(0, 5).join('; ');
  const more = ignored.length > 5 ? ` and ${ignored.length - 5} more` : '';
  return `every key was ignored (${shown}${more}); an X.509 CA is a key with use "x509-svid" and kty EC, RSA or OKP`;
}

/** The keys with use `x509-svid` of a parsed document (0 when it has no key list). */
function x509KeyCount(doc: unknown): number {
  const keys = typeof doc === 'object' && doc !== null ? (doc as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys)) return 0;
  return keys.filter((k: unknown) => typeof k === 'object' && k !== null && (k as { use?: unknown }).use === X509_SVID_USE).length;
}
