// PEM certificate bundle helpers, shared by validation and trust aggregation.
import { X509Certificate } from 'node:crypto';
import { printableLine } from './quote.js';

const BEGIN = /-----BEGIN ([A-Z0-9 ]+)-----/g;
const END = /-----END ([A-Z0-9 ]+)-----/g;

/**
 * `[label, body, endLabel]` of each `-----BEGIN x-----…-----END y-----` block, as the lazy regex
 * `BEGIN([\s\S]*?)END` matches them, without its cost: for a BEGIN with no END after it, that
 * scanned the rest of the text again from each later BEGIN (112 KB of BEGIN lines in a MeshTrust:
 * 158 ms, 56 KB: 29 ms; 4 MB: minutes). No END after one BEGIN is none after a later one.
 */
function* pemBlocks(text: string): Generator<[string, string, string]> {
  const begin = new RegExp(BEGIN);
  const end = new RegExp(END);
  for (let b = begin.exec(text); b; b = begin.exec(text)) {
    end.lastIndex = begin.lastIndex;
    const e = end.exec(text);
    if (!e) return;
    yield [b[1] ?? '', text.slice(begin.lastIndex, e.index), e[1] ?? ''];
    begin.lastIndex = end.lastIndex;
  }
}
const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * PEM certificate blocks in a text, counted without parsing them: a limit is checked with it before
 * splitPemCertificates parses every block (a CA bundle file given as a chain, a hostile push).
 */
export function countPemCertificates(text: string): number {
  return text.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
}

/**
 * Splits concatenated PEM certificates into DER buffers. Text outside the blocks is ignored
 * (as Go's pem.Decode does). `error` is set when there is no block at all, a block is not a
 * CERTIFICATE, its body is not base64, or it does not parse as X.509.
 */
export function splitPemCertificates(text: string): { ders: Buffer[]; error?: string } {
  const ders: Buffer[] = [];
  let n = 0;
  for (const [begin, body, end] of pemBlocks(text)) {
    n++;
    if (begin !== 'CERTIFICATE' || end !== 'CERTIFICATE') {
      return { ders, error: `PEM block ${n} is a ${begin}, not a CERTIFICATE` };
    }
    const b64 = body.replace(/\s+/g, '');
    if (b64 === '' || b64.length % 4 !== 0 || !BASE64_BODY.test(b64)) {
      return { ders, error: `PEM block ${n} is not valid base64` };
    }
    const der = Buffer.from(b64, 'base64');
    try {
      new X509Certificate(der);
    } catch {
      return { ders, error: `PEM block ${n} is not an X.509 certificate` };
    }
    ders.push(der);
  }
  if (n === 0) return { ders, error: 'no PEM certificate found' };
  return { ders };
}

/**
 * OpenSSL parses a certificate whose validity it cannot read and gives "Bad time value" for it:
 * trusted, every reader of its dates (fetch's summary, the debug endpoint) threw on it.
 */
export function hasUnreadableValidity(cert: X509Certificate): boolean {
  return Number.isNaN(Date.parse(cert.validFrom)) || Number.isNaN(Date.parse(cert.validTo));
}

/** A root: issued by itself and signed by its own key (what a verifier without partial chains can anchor at). */
export function isSelfSignedRoot(cert: X509Certificate): boolean {
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** DER → PEM with 64-column lines and a trailing newline. */
export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/**
 * The URI SANs in node's `subjectAltName` text ("DNS:a, URI:spiffe://…"). Node writes a name
 * holding a comma, quote, apostrophe, backslash or a non-ASCII character as a JSON string
 * (URI:"spiffe://td/a\u002cb"), so a split on ", " misread it: such a URI was not seen as a
 * spiffe:// one, and a CA naming another trust domain that way passed the trust domain checks.
 */
export function uriSans(subjectAltName: string): string[] {
  const out: string[] = [];
  const s = subjectAltName;
  let i = 0;
  while (i < s.length) {
    const colon = s.indexOf(':', i);
    if (colon < 0) break;
    const type = s.slice(i, colon);
    let j = colon + 1;
    let value = '';
    // Outside a quoted part node leaves no comma, so the next one ends this name.
    while (j < s.length && s[j] !== ',') {
      if (s[j] === '"') {
        let k = j + 1;
        while (k < s.length && s[k] !== '"') k += s[k] === '\\' ? 2 : 1;
        const literal = s.slice(j, k + 1);
        try {
          value += JSON.parse(literal) as string;
        } catch {
          value += literal;
        }
        j = k + 1;
      } else value += s[j++];
    }
    if (type === 'URI') out.push(value);
    i = j + 1;
    while (s[i] === ' ') i++;
  }
  return out;
}

/**
 * Trust domains named by a CA's `spiffe://` URI SANs (a SPIFFE CA carries its trust domain's ID).
 * Escaped as one printable line: they are quoted in refusals, and a decoded SAN may hold any
 * character (an escape sequence in one must not act on the terminal of whoever runs validate).
 */
export function caTrustDomains(cert: string | Buffer): string[] {
  return uriSans(new X509Certificate(cert).subjectAltName ?? '')
    .filter((u) => u.startsWith('spiffe://'))
    .map((u) => printableLine(u.slice('spiffe://'.length).split('/')[0] ?? ''));
}

/**
 * When none of these certificates is valid at `now`, each one's validity ("<from> to <until>",
 * ISO times) for a message saying so; undefined when one is valid (or none can be read).
 */
export function noneValidNow(certs: readonly (string | X509Certificate)[], now: Date): string[] | undefined {
  const t = now.getTime();
  const spans: string[] = [];
  for (const c of certs) {
    let cert: X509Certificate;
    try {
      cert = typeof c === 'string' ? new X509Certificate(c) : c;
    } catch {
      continue;
    }
    if (Date.parse(cert.validFrom) <= t && t <= Date.parse(cert.validTo)) return undefined;
    spans.push(`${isoTime(cert.validFrom)} to ${isoTime(cert.validTo)}`);
  }
  return spans.length > 0 ? spans : undefined;
}

/**
 * A certificate time as ISO text. OpenSSL gives "Bad time value" for a time it cannot read (a
 * peer's CA can carry one): toISOString of that threw, from inside a TLS error handler, and ended
 * the process. Such a CA is never valid now (the comparisons above are false): said as it is.
 */
export function isoTime(text: string): string {
  const t = Date.parse(text);
  return Number.isNaN(t) ? `an unreadable time (${JSON.stringify(text)})` : new Date(t).toISOString();
}

/** RSA modulus size a trusted CA key must reach: what mesh-sds requires of its own CAs. */
export const MIN_CA_RSA_BITS = 2048;
/** The largest RSA public exponent a trusted CA key may have (Go's crypto/rsa bound; 65537 is the norm). */
const MAX_CA_RSA_EXPONENT = 2n ** 31n - 1n;
/** EC curves a trusted CA key may be on (OpenSSL names → the names operators know). */
const CA_EC_CURVES: ReadonlyMap<string, string> = new Map([
  ['prime256v1', 'P-256'],
  ['secp384r1', 'P-384'],
  ['secp521r1', 'P-521'],
]);

/**
 * Why a CA's public key is not acceptable as a trust anchor from a peer, or undefined: RSA of at
 * least MIN_CA_RSA_BITS with an odd exponent from 3 to 2^31-1, EC on P-256/P-384/P-521, or Ed25519. RSA-512 is factored in hours and
 * RSA-1024 is deprecated; other curves (secp256k1, Ed448) are not ones Envoy's BoringSSL verifies
 * with, so such a CA would go to every proxy and authenticate nothing. E.g. `an RSA 1024-bit key;
 * at least 2048 bits are required`.
 */
export function caKeyProblem(cert: X509Certificate): string | undefined {
  const key = cert.publicKey;
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss': {
      if ((d.modulusLength ?? 0) < MIN_CA_RSA_BITS) return `an RSA ${d.modulusLength ?? '?'}-bit key; at least ${MIN_CA_RSA_BITS} bits are required`;
      // OpenSSL takes any exponent on moduli up to 3072 bits, and verifying with a 3000-bit one
      // costs what a signing does (5.3 ms, not 0.2 ms, for RSA-3072): 64 such CAs cost 0.34 s per mesh on every
      // trust change a peer makes. Go (SPIRE, go-spiffe) refuses exponents past 2^31-1 anyway.
      const e = d.publicExponent ?? 0n;
      if (e < 3n || e > MAX_CA_RSA_EXPONENT || e % 2n === 0n) return `an RSA ${d.modulusLength}-bit key with a ${e.toString(2).length}-bit public exponent; the exponent must be odd, from 3 to 2^31-1`;
      return undefined;
    }
    case 'ec':
      return d.namedCurve && CA_EC_CURVES.has(d.namedCurve) ? undefined : `an EC key on curve ${d.namedCurve ?? '?'}; the curve must be P-256, P-384 or P-521`;
    case 'ed25519':
      return undefined;
    default:
      return `a key of type ${key.asymmetricKeyType === 'ed448' ? 'Ed448' : (key.asymmetricKeyType ?? 'unknown')}; a CA key must be RSA (at least ${MIN_CA_RSA_BITS} bits), EC on P-256, P-384 or P-521, or Ed25519`;
  }
}
