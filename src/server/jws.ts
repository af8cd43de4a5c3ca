// A small, strict, synchronous compact JWS (RFC 7515) signer and verifier for proxy tokens, on
// node:crypto alone: verification is on the connect path of every proxy, where jose's WebCrypto
// route cost ~0.35 ms CPU per token. It accepts only what mesh-sds issues (HS256, and EdDSA for
// tokens signed by the legacy Ed25519 key) and refuses everything else without guessing.
import { createHmac, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';

export interface HmacKey {
  alg: 'HS256';
  secret: KeyObject;
  kid: string;
}

export interface Ed25519PublicKey {
  alg: 'EdDSA';
  publicKey: KeyObject;
  kid: string;
}

export type VerificationKey = HmacKey | Ed25519PublicKey;

/** 'malformed': not a JWS we could have issued; 'signature': well-formed, but not signed by a key we hold. */
export class JwsError extends Error {
  constructor(readonly reason: 'malformed' | 'signature') {
    super(reason === 'malformed' ? 'malformed JWS' : 'JWS signature invalid');
    this.name = 'JwsError';
  }
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const SIGNATURE_BYTES = { HS256: 32, EdDSA: 64 } as const;

/**
 * Strict base64url: the unpadded alphabet only, and the canonical encoding (no stray bits in the
 * last character, no impossible length), so one signature has exactly one token text.
 */
function decodeSegment(segment: string): Buffer {
  if (!BASE64URL.test(segment)) throw new JwsError('malformed');
  const bytes = Buffer.from(segment, 'base64url');
  if (bytes.toString('base64url') !== segment) throw new JwsError('malformed');
  return bytes;
}

function parseJsonObject(bytes: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    throw new JwsError('malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JwsError('malformed');
  return value as Record<string, unknown>;
}

function hmacSha256(secret: KeyObject, signingInput: string): Buffer {
  return createHmac('sha256', secret).update(signingInput).digest();
}

/** Signs `payload` as an HS256 JWT (header `{alg, typ: 'JWT', kid}`). */
export function signHs256(key: HmacKey, payload: Record<string, unknown>): string {
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: key.kid })).toString('base64url');
  const signingInput = `${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return `${signingInput}.${hmacSha256(key.secret, signingInput).toString('base64url')}`;
}

/**
 * Checks a compact JWS against the keys given (at most one per alg) and returns its payload, a JSON
 * object; claims are the caller's to check. Throws JwsError only.
 */
export function verifyCompactJws(token: string, keys: readonly VerificationKey[]): Record<string, unknown> {
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwsError('malformed');
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  // Every segment's encoding is checked first: bad characters, padding or an empty part are
  // malformed whatever else the token holds.
  const [headerBytes, payloadBytes, signature] = [decodeSegment(headerPart), decodeSegment(payloadPart), decodeSegment(signaturePart)];
  const header = parseJsonObject(headerBytes);
  // Any other alg (none, HS512, RS256, …) was never issued here: refused before any key is touched.
  const key = keys.find((k) => k.alg === header.alg);
  if (!key || header.typ !== 'JWT') throw new JwsError('malformed');
  // Extensions we do not implement (RFC 7515 §4.1.11) and unencoded payloads (RFC 7797) are refused.
  if (header.crit !== undefined || (header.b64 !== undefined && header.b64 !== true)) throw new JwsError('malformed');
  if (header.kid !== undefined && typeof header.kid !== 'string') throw new JwsError('malformed');
  // Another key id: a token of another authority, which cannot have our signature.
  if (header.kid !== undefined && header.kid !== key.kid) throw new JwsError('signature');
  const signingInput = `${headerPart}.${payloadPart}`;
  let valid: boolean;
  if (key.alg === 'HS256') {
    valid = signature.length === SIGNATURE_BYTES.HS256 && timingSafeEqual(signature, hmacSha256(key.secret, signingInput));
  } else {
    valid = signature.length === SIGNATURE_BYTES.EdDSA && verifySignature(null, Buffer.from(signingInput), key.publicKey, signature);
  }
  if (!valid) throw new JwsError('signature');
  // Only now, for a genuine token, is the payload parsed.
  return parseJsonObject(payloadBytes);
}
