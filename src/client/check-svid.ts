// What the agent checks before it writes an identity, so that a server (misconfigured, or not ours)
// cannot make it replace good files with ones no peer accepts. Refused (NACKed; the files written
// before stay): an expired leaf, a leaf that is a CA (basicConstraints CA:TRUE; no peer should
// accept it as an end entity), a leaf key OpenSSL refuses (RSA under 2048 bits, EC under 224),
// or a leaf that chains to the bundle through a CA (sent with it, or the bundle's anchor) that is
// expired, not valid yet, not a CA or with such a key. A private key that does not match the leaf is refused when the
// secret is decoded (decode.ts). Warned about, still written: a leaf not valid yet by over a
// minute (most likely this host's clock), a chain that does not verify against the trust bundle
// sent with it, and a SPIFFE ID other than the one written before.
import { X509Certificate } from 'node:crypto';
import { countPemCertificates, hasUnreadableValidity, uriSans } from '../api/pem.js';
import { printableLine } from '../api/quote.js';
import { parseCertificates } from './summary.js';

/** The push must not be written; the message says why. */
export class RefusedSvid extends Error {}

/** Clocks differ by a few seconds; a leaf starting more than this late is worth a word. */
const SKEW_MS = 60_000;
/** Longest chain walked from the leaf to a trust anchor. */
const MAX_CHAIN = 10;
/**
 * Each certificate parsed and each candidate issuer tried costs CPU (a signature check is ~0.5 ms):
 * a hostile server sending thousands of CAs of one subject name could make every push cost seconds.
 * Past these counts the push is refused; the signature checks of one chain walk are capped too.
 */
export const MAX_CHAIN_CERTS = 16;
export const MAX_BUNDLE_CERTS = 1000;
const MAX_SIGNATURE_CHECKS = 64;

/** A CA on the leaf's path to the bundle and why peers would refuse it (sent with the leaf, or the bundle's anchor). */
interface PathFault {
  cert: X509Certificate;
  inBundle: boolean;
  problem: string;
}

/**
 * The leaf's path to a certificate in the bundle: `fault` undefined when peers accept it (the
 * bundle holds the leaf, or every CA on the path is fine), else the first CA peers refuse on the
 * best path found; false when no path leads there; undefined when that took too many signature
 * checks to tell. Where several certificates could issue the next link (a root renewed with the
 * same key, the old one still in the bundle), one peers accept is taken first, as OpenSSL does.
 */
function pathToBundle(chain: X509Certificate[], anchors: X509Certificate[], problemOf: (c: X509Certificate) => string | undefined): { fault?: PathFault } | false | undefined {
  let checks = 0;
  const issuedBy = (child: X509Certificate, parent: X509Certificate): boolean => {
    try {
      if (checks > MAX_SIGNATURE_CHECKS || !child.checkIssued(parent) || ++checks > MAX_SIGNATURE_CHECKS) return false;
      return child.verify(parent.publicKey);
    } catch {
      return false;
    }
  };
  /** The issuers of `child` among `candidates`, one peers accept first, with the problem of the one taken. */
  const pick = (child: X509Certificate, candidates: X509Certificate[]): { cert: X509Certificate; problem?: string } | undefined => {
    let refused: { cert: X509Certificate; problem: string } | undefined;
    for (const c of candidates) {
      if (c === child || !issuedBy(child, c)) continue;
      const problem = problemOf(c);
      if (problem === undefined) return { cert: c };
      refused ??= { cert: c, problem };
    }
    return refused;
  };
  let current = chain[0]!;
  const intermediates = chain.slice(1);
  let fault: PathFault | undefined;
  for (let i = 0; i < MAX_CHAIN; i++) {
    if (anchors.some((a) => a.raw.equals(current.raw))) return { fault };
    const anchor = pick(current, anchors);
    if (anchor) return { fault: fault ?? (anchor.problem === undefined ? undefined : { cert: anchor.cert, inBundle: true, problem: anchor.problem }) };
    const next = pick(current, intermediates);
    if (!next) return checks > MAX_SIGNATURE_CHECKS ? undefined : false;
    if (next.problem !== undefined) fault ??= { cert: next.cert, inBundle: false, problem: next.problem };
    current = next.cert;
  }
  return false;
}

/** Why a CA on the leaf's path fails peers' checks, or undefined. `startsBy`: the later of now and the leaf's NotBefore. */
function pathProblem(c: X509Certificate, nowMs: number, startsBy: number): string | undefined {
  if (hasUnreadableValidity(c)) return 'has a validity that cannot be read';
  const notAfter = Date.parse(c.validTo);
  if (notAfter <= nowMs) return `expired at ${new Date(notAfter).toISOString()}`;
  // Later than its own leaf starts (and than now) by more than clock skew: peers refuse the chain
  // until then. A leaf and its CA both ahead of this host's clock is this host's clock (warned above).
  const notBefore = Date.parse(c.validFrom);
  if (notBefore > startsBy + SKEW_MS) return `is not valid until ${new Date(notBefore).toISOString()}`;
  if (!c.ca) return 'is not a CA (it needs basicConstraints CA:TRUE and, with a keyUsage, keyCertSign)';
  const weak = weakKey(c);
  return weak ? `has ${weak}` : undefined;
}

/** OpenSSL's default security level (2) wants 112 bits of security: an EC key of 224 bits or more. */
const MIN_EC_BITS = 224;

/** A certificate key OpenSSL refuses at security level 2 (its default), described, or undefined. */
function weakKey(c: X509Certificate): string | undefined {
  const key = c.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      return (details.modulusLength ?? 0) < 2048 ? `an RSA key of ${details.modulusLength ?? 'unknown'} bits (at least 2048 are needed)` : undefined;
    case 'ec':
    {
      // Curve names carry their size (prime256v1, secp384r1, brainpoolP256r1, sect571k1).
      const bits = Number(/\d{3}/.exec(details.namedCurve ?? '')?.[0] ?? 0);
      return bits >= MIN_EC_BITS ? undefined : `an EC key on the curve ${details.namedCurve ?? 'unknown'} (under ${MIN_EC_BITS} bits)`;
    }
    case 'ed25519':
    case 'ed448':
      return undefined;
    default:
      return `a ${key.asymmetricKeyType ?? 'unknown'} key`;
  }
}

export interface SvidCheck {
  spiffeId: string | undefined;
  warnings: string[];
}

export function checkSvid(certChainPem: string, bundlePem: string, previousSpiffeId: string | undefined, nowMs = Date.now()): SvidCheck {
  const inChain = countPemCertificates(certChainPem);
  if (inChain > MAX_CHAIN_CERTS) throw new RefusedSvid(`the certificate chain carries ${inChain} certificates; at most ${MAX_CHAIN_CERTS} are accepted; not written`);
  const inBundle = countPemCertificates(bundlePem);
  if (inBundle > MAX_BUNDLE_CERTS) throw new RefusedSvid(`the trust bundle carries ${inBundle} certificates; at most ${MAX_BUNDLE_CERTS} are accepted; not written`);
  const chain = parseCertificates(certChainPem);
  const leaf = chain[0]!;
  const notAfter = Date.parse(leaf.validTo);
  const notBefore = Date.parse(leaf.validFrom);
  // Node quotes a URI holding a comma or non-ASCII character (URI:"spiffe://…"): uriSans reads both forms.
  const found = uriSans(leaf.subjectAltName ?? '').find((u) => u.startsWith('spiffe://'));
  const spiffeId = found === undefined ? undefined : printableLine(found);
  const what = `the certificate (serial ${leaf.serialNumber.toUpperCase()}${spiffeId ? `, ${spiffeId}` : ''})`;
  if (hasUnreadableValidity(leaf)) {
    throw new RefusedSvid(`${what} has a validity that cannot be read (not before ${JSON.stringify(leaf.validFrom)}, not after ${JSON.stringify(leaf.validTo)}); not written`);
  }
  if (notAfter <= nowMs) {
    throw new RefusedSvid(`${what} expired at ${new Date(notAfter).toISOString()} (now ${new Date(nowMs).toISOString()}); not written`);
  }
  if (leaf.ca) throw new RefusedSvid(`${what} is a CA certificate (basicConstraints CA:TRUE), not a workload identity; not written`);
  const warnings: string[] = [];
  if (notBefore > nowMs + SKEW_MS) {
    warnings.push(`${what} is not valid until ${new Date(notBefore).toISOString()}, ${Math.round((notBefore - nowMs) / 1000)} s from now by this host's clock: if the clocks of this host and the server differ, fix them (peers will refuse it until then)`);
  }
  let anchors: X509Certificate[] = [];
  try {
    anchors = parseCertificates(bundlePem);
  } catch {
    // An unparsable bundle verifies nothing: said below.
  }
  const keyProblem = weakKey(leaf);
  if (keyProblem) throw new RefusedSvid(`${what} has ${keyProblem}: OpenSSL refuses it (security level 2); not written`);
  // Peers check every certificate of the path, not the leaf alone: one expired on it, not valid yet,
  // not a CA or with a key too weak fails them all (openssl verify: errors 10, 9, 79; "ca key too small").
  const verified = pathToBundle(chain, anchors, (c) => pathProblem(c, nowMs, Math.max(nowMs, notBefore)));
  const fault = verified ? verified.fault : undefined;
  if (fault) {
    const subject = `${printableLine(fault.cert.subject.split('\n').filter(Boolean).join(', '))} (serial ${fault.cert.serialNumber.toUpperCase()}) in ${fault.inBundle ? 'the trust bundle' : 'the certificate chain'}`;
    throw new RefusedSvid(`${what} chains to the trust bundle through ${subject}, which ${fault.problem}: peers will refuse the chain; not written`);
  }
  if (verified === undefined) {
    warnings.push(`${what} could not be checked against the trust bundle sent with it: over ${MAX_SIGNATURE_CHECKS} candidate issuers of one name were tried`);
  } else if (!verified) {
    warnings.push(`${what} does not chain to any CA in the trust bundle sent with it (issuer ${leaf.issuer.split('\n').filter(Boolean).join(', ')}): peers trusting that bundle will refuse it`);
  }
  if (previousSpiffeId !== undefined && spiffeId !== previousSpiffeId) {
    warnings.push(`the SPIFFE ID changed from ${previousSpiffeId} to ${spiffeId ?? 'none'}: the workload now presents another identity`);
  }
  return { spiffeId, warnings };
}
