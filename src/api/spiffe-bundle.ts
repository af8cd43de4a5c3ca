// SPIFFE bundle documents (SPIFFE Trust Domain and Bundle standard §4, X509-SVID standard §6):
// a JWK Set whose `x509-svid` keys each carry one CA certificate in `x5c` plus that
// certificate's public key parameters. It lives in api, beside pem.ts, because resource
// validation (MeshTrust `SpiffeBundle` CA sources, federation bootstrap bundles) reads it and
// api is the bottom layer; federation code imports it through src/federation/bundle.ts.
import { createHash, X509Certificate } from 'node:crypto';
import { derToPem, splitPemCertificates } from './pem.js';
import { printable } from './quote.js';

export const X509_SVID_USE = 'x509-svid';
export const JWT_SVID_USE = 'jwt-svid';
/** Key types whose public parameters we can compare with the certificate (RFC 7518 §6, RFC 8037 §2 for OKP). */
const KNOWN_KTY: ReadonlySet<string> = new Set(['EC', 'RSA', 'OKP']);
/** OKP curves that sign (X25519/X448 keys cannot be a CA's). */
const SIGNING_OKP_CURVES: ReadonlySet<string> = new Set(['Ed25519', 'Ed448']);
/** JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const STD_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A bundle document that breaks the format; `path` is the JSON path (`keys[2].x5c`), empty for the whole document. */
export class SpiffeBundleError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(path ? `${path}: ${reason}` : reason);
    this.name = 'SpiffeBundleError';
  }
}

export interface DecodedSpiffeBundle {
  /** X.509 authorities in document order, duplicates dropped; each is a CA. */
  cas: X509Certificate[];
  /** The same authorities as PEM, one certificate each. */
  caPems: string[];
  /** `spiffe_sequence`, when the document has one. */
  sequence?: number;
  /** `spiffe_refresh_hint` in seconds, when the document has one. */
  refreshHintSeconds?: number;
  /** Keys skipped as the standard asks (JWT authorities, unknown `use` or `kty`), e.g. `keys[1]: use "jwt-svid"`. */
  ignored: string[];
}

export interface BundleDocument extends DecodedSpiffeBundle {
  format: 'spiffe' | 'pem';
}

export interface EncodeSpiffeBundleInput {
  /** CA certificates: PEM strings (each may hold several certificates), DER buffers or parsed certificates. */
  cas: ReadonlyArray<string | Buffer | X509Certificate>;
  sequence?: number;
  refreshHintSeconds?: number;
}

/** The JWK Set object (serialise it with JSON.stringify). Keys first, then hint and sequence, as SPIRE prints them. */
export function spiffeBundleDocument(input: EncodeSpiffeBundleInput): Record<string, unknown> {
  const keys: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  for (const cert of toCertificates(input.cas)) {
    const fp = createHash('sha256').update(cert.raw).digest('hex');
    if (seen.has(fp)) continue;
    seen.add(fp);
    if (!cert.ca) throw new Error(`certificate "${cert.subject}" is not a CA and cannot be a SPIFFE bundle authority`);
    let jwk: Record<string, unknown>;
    try {
      jwk = cert.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`certificate "${cert.subject}" has a ${cert.publicKey.asymmetricKeyType ?? 'unknown'} key that cannot be a JWK: ${(e as Error).message}`, { cause: e });
    }
    if (jwk.kty === 'EC') keys.push({ use: X509_SVID_USE, kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y, x5c: [cert.raw.toString('base64')] });
    else if (jwk.kty === 'RSA') keys.push({ use: X509_SVID_USE, kty: 'RSA', n: jwk.n, e: jwk.e, x5c: [cert.raw.toString('base64')] });
    // An Ed25519/Ed448 CA (e.g. the root above a P-256 intermediate) is an RFC 8037 OKP key.
    else if (jwk.kty === 'OKP' && SIGNING_OKP_CURVES.has(String(jwk.crv))) keys.push({ use: X509_SVID_USE, kty: 'OKP', crv: jwk.crv, x: jwk.x, x5c: [cert.raw.toString('base64')] });
    else throw new Error(`certificate "${cert.subject}" has a ${String(jwk.kty)}${jwk.crv ? ` ${String(jwk.crv)}` : ''} key; a SPIFFE bundle here carries EC, RSA or Ed25519/Ed448 (OKP) keys`);
  }
  const doc: Record<string, unknown> = { keys };
  if (input.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = checkedInteger(input.refreshHintSeconds, 'refreshHintSeconds');
  if (input.sequence !== undefined) doc.spiffe_sequence = checkedInteger(input.sequence, 'sequence');
  return doc;
}

/** The bundle as JSON text (4-space indent and a final newline, like `spire-server bundle show --format spiffe`). */
export function encodeSpiffeBundle(input: EncodeSpiffeBundleInput): string {
  return JSON.stringify(spiffeBundleDocument(input), null, 4) + '\n';
}

/**
 * Decodes a SPIFFE bundle (JSON text or an already parsed value). Follows the standard: `keys`
 * must be present; keys with another `use` (JWT authorities) or an unknown `kty` are ignored.
 * Each `x509-svid` key must carry exactly one standard-base64 DER certificate in `x5c` that is a
 * CA, and its public parameters must be that certificate's key. A private key member is refused.
 * Throws SpiffeBundleError naming the JSON path.
 */
export function decodeSpiffeBundle(json: string | unknown): DecodedSpiffeBundle {
  let doc: unknown = json;
  if (typeof json === 'string') {
    try {
      doc = JSON.parse(json);
    } catch (e) {
      // V8's message quotes the text it refused (a bundle endpoint's bytes, for a fetched bundle):
      // it reaches terminals through validate, get and inspect, so none of it may act there.
      throw new SpiffeBundleError('', `not valid JSON: ${printable((e as Error).message)}`);
    }
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new SpiffeBundleError('', 'must be a JSON object (a JWK Set)');
  const set = doc as Record<string, unknown>;

  const out: DecodedSpiffeBundle = { cas: [], caPems: [], ignored: [] };
  if (set.spiffe_sequence !== undefined) out.sequence = readInteger(set.spiffe_sequence, 'spiffe_sequence');
  if (set.spiffe_refresh_hint !== undefined) out.refreshHintSeconds = readInteger(set.spiffe_refresh_hint, 'spiffe_refresh_hint');

  if (set.keys === undefined || set.keys === null) throw new SpiffeBundleError('keys', 'must be present');
  if (!Array.isArray(set.keys)) throw new SpiffeBundleError('keys', 'must be a list');
  const seen = new Set<string>();
  set.keys.forEach((raw: unknown, i) => {
    const path = `keys[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SpiffeBundleError(path, 'must be an object');
    const key = raw as Record<string, unknown>;
    for (const m of PRIVATE_MEMBERS) {
      if (key[m] !== undefined) throw new SpiffeBundleError(`${path}.${m}`, 'a bundle must not carry private key material');
    }
    if (key.use !== X509_SVID_USE) {
      out.ignored.push(`${path}: use ${key.use === undefined ? 'missing' : JSON.stringify(key.use)}`);
      return;
    }
    if (typeof key.kty !== 'string' || key.kty === '') throw new SpiffeBundleError(`${path}.kty`, 'must be set');
    if (!KNOWN_KTY.has(key.kty)) {
      out.ignored.push(`${path}: kty ${JSON.stringify(key.kty)}`);
      return;
    }
    const cert = readX5c(key.x5c, `${path}.x5c`);
    checkPublicParameters(key, cert, path);
    const fp = createHash('sha256').update(cert.raw).digest('hex');
    if (seen.has(fp)) return;
    seen.add(fp);
    out.cas.push(cert);
    out.caPems.push(derToPem(cert.raw));
  });
  return out;
}

/**
 * Reads a trust bundle written either as a SPIFFE bundle (JWK Set JSON) or as concatenated PEM
 * certificates (the usual form of a bootstrap bundle). PEM certificates must all be CAs.
 */
export function readBundleDocument(text: string): BundleDocument {
  const t = text.trimStart();
  if (t.startsWith('{')) return { format: 'spiffe', ...decodeSpiffeBundle(t) };
  if (!t.includes('-----BEGIN')) throw new SpiffeBundleError('', 'neither a SPIFFE bundle (JSON object) nor PEM certificates');
  const { ders, error } = splitPemCertificates(t);
  if (error) throw new SpiffeBundleError('', error);
  const out: BundleDocument = { format: 'pem', cas: [], caPems: [], ignored: [] };
  const seen = new Set<string>();
  ders.forEach((der, i) => {
    const cert = new X509Certificate(der);
    if (!cert.ca) throw new SpiffeBundleError('', `PEM block ${i + 1} is not a CA`);
    const fp = createHash('sha256').update(der).digest('hex');
    if (seen.has(fp)) return;
    seen.add(fp);
    out.cas.push(cert);
    out.caPems.push(derToPem(der));
  });
  return out;
}

function readX5c(v: unknown, path: string): X509Certificate {
  if (!Array.isArray(v) || v.length !== 1) throw new SpiffeBundleError(path, 'must hold exactly one certificate');
  const b64 = v[0];
  const p = `${path}[0]`;
  if (typeof b64 !== 'string') throw new SpiffeBundleError(p, 'must be a string');
  // RFC 7517 §4.7: x5c is standard base64 (not base64url) of the DER certificate.
  if (b64 === '' || b64.length % 4 !== 0 || !STD_BASE64.test(b64)) {
    throw new SpiffeBundleError(p, /[-_]/.test(b64) ? 'must be standard base64 (not base64url)' : 'must be base64 of a DER certificate');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(b64, 'base64'));
  } catch {
    throw new SpiffeBundleError(p, 'is not an X.509 certificate');
  }
  if (!cert.ca) throw new SpiffeBundleError(p, 'certificate is not a CA');
  return cert;
}

/** The JWK's public parameters must be the certificate's key (as go-jose checks x5c against the key). */
function checkPublicParameters(key: Record<string, unknown>, cert: X509Certificate, path: string): void {
  let certJwk: Record<string, unknown>;
  try {
    certJwk = cert.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  } catch {
    throw new SpiffeBundleError(`${path}.x5c[0]`, 'certificate key type is not supported');
  }
  if (certJwk.kty !== key.kty) {
    throw new SpiffeBundleError(`${path}.kty`, `is ${String(key.kty)} but the certificate's key is ${String(certJwk.kty)}`);
  }
  const members = key.kty === 'EC' ? ['crv', 'x', 'y'] : key.kty === 'OKP' ? ['crv', 'x'] : ['n', 'e'];
  for (const m of members) {
    const v = key[m];
    if (typeof v !== 'string' || v === '') throw new SpiffeBundleError(`${path}.${m}`, 'must be set');
    // An OKP `x` is a fixed-length octet string (RFC 8037 §2), not an integer: compared exactly.
    const same = m === 'crv' ? v === certJwk.crv : key.kty === 'OKP' ? Buffer.from(v, 'base64url').equals(Buffer.from(String(certJwk[m]), 'base64url')) : sameUnsigned(v, String(certJwk[m]));
    if (!same) throw new SpiffeBundleError(`${path}.${m}`, "does not match the certificate's public key");
  }
}

/** Compares two base64url unsigned integers, ignoring leading zero octets. */
function sameUnsigned(a: string, b: string): boolean {
  const strip = (s: string): Buffer => {
    const buf = Buffer.from(s, 'base64url');
    let i = 0;
    while (i < buf.length - 1 && buf[i] === 0) i++;
    return buf.subarray(i);
  };
  return strip(a).equals(strip(b));
}

function readInteger(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new SpiffeBundleError(path, 'must be a non-negative integer');
  // JSON numbers beyond 2^53 lose precision in JavaScript; refuse rather than compare wrong values.
  if (!Number.isSafeInteger(v)) throw new SpiffeBundleError(path, 'must not be larger than 2^53-1');
  return v;
}

function checkedInteger(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`);
  return v;
}

function toCertificates(cas: ReadonlyArray<string | Buffer | X509Certificate>): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const c of cas) {
    if (c instanceof X509Certificate) out.push(c);
    else if (Buffer.isBuffer(c)) out.push(new X509Certificate(c));
    else {
      const { ders, error } = splitPemCertificates(c);
      if (error) throw new Error(`CA bundle: ${error}`);
      for (const der of ders) out.push(new X509Certificate(der));
    }
  }
  return out;
}
