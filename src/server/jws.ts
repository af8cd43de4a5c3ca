// A small, strict, synchronous compact JWS (RFC 7515) signer and verifier for proxy tokens, on
// node:crypto alone: verification is on the connect path of every proxy, where jose's WebCrypto
// route cost ~0.35 ms CPU per token. It accepts only what mesh-sds issues (HS256, and EdDSA for
// tokens signed by the legacy Ed25519 key) and refuses everything else without guessing.
import { createHmac, hash, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';

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

/** Bits the last character of an unpadded base64url text leaves unused, by length mod 4 (1 is impossible). */
const UNUSED_BITS_MASK = [0, -1, 0b1111, 0b11] as const;
const B64URL_VALUE = new Int8Array(128).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].entries()) B64URL_VALUE[c.charCodeAt(0)] = i;

/**
 * Strict base64url: the unpadded alphabet only, and the canonical encoding (no stray bits in the
 * last character, no impossible length), so one signature has exactly one token text.
 */
function decodeSegment(segment: string): Buffer {
  if (!BASE64URL.test(segment)) throw new JwsError('malformed');
  const mask = UNUSED_BITS_MASK[segment.length % 4]!;
  if (mask === -1 || (B64URL_VALUE[segment.charCodeAt(segment.length - 1)]! & mask) !== 0) throw new JwsError('malformed');
  return Buffer.from(segment, 'base64url');
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

/** The key XOR'd with HMAC's inner and outer pads (RFC 2104), per key. */
const padded = new WeakMap<KeyObject, { inner: Buffer; outer: Buffer }>();
const SHA256_BLOCK = 64;

/**
 * HMAC-SHA256 (RFC 2104) as two one-shot hashes over the pre-padded key: the same value as
 * createHmac (signing uses createHmac, so the two are checked against each other by every
 * verification), without an Hmac object and its key handling per token. That object cost more
 * than the hashing when 10,000 proxies connect at once. Exported for its test vectors only.
 */
export function verifyingHmacSha256(secret: KeyObject, signingInput: string): Buffer {
  let pads = padded.get(secret);
  if (!pads) {
    let key = secret.export();
    if (key.length > SHA256_BLOCK) key = hash('sha256', key, 'buffer');
    const inner = Buffer.alloc(SHA256_BLOCK, 0x36);
    const outer = Buffer.alloc(SHA256_BLOCK, 0x5c);
    for (let i = 0; i < key.length; i++) {
      inner[i]! ^= key[i]!;
      outer[i]! ^= key[i]!;
    }
    padded.set(secret, (pads = { inner, outer }));
  }
  const message = Buffer.from(signingInput, 'latin1');
  const innerHash = hash('sha256', Buffer.concat([pads.inner, message], SHA256_BLOCK + message.length), 'buffer');
  return hash('sha256', Buffer.concat([pads.outer, innerHash], SHA256_BLOCK + innerHash.length), 'buffer');
}

/** Parsed protected headers by their text: a server sees the same one or two headers on every token. */
const headers = new Map<string, Record<string, unknown>>();
const MAX_CACHED_HEADERS = 64;

function parseHeader(headerPart: string): Record<string, unknown> {
  let header = headers.get(headerPart);
  if (!header) {
    header = Object.freeze(parseJsonObject(decodeSegment(headerPart)));
    if (headers.size >= MAX_CACHED_HEADERS) headers.clear();
    headers.set(headerPart, header);
  }
  return header;
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
  const payloadBytes = decodeSegment(payloadPart);
  const signature = decodeSegment(signaturePart);
  const header = parseHeader(headerPart);
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
    valid = signature.length === SIGNATURE_BYTES.HS256 && timingSafeEqual(signature, verifyingHmacSha256(key.secret, signingInput));
  } else {
    valid = signature.length === SIGNATURE_BYTES.EdDSA && verifySignature(null, Buffer.from(signingInput), key.publicKey, signature);
  }
  if (!valid) throw new JwsError('signature');
  // Only now, for a genuine token, is the payload parsed.
  return parseJsonObject(payloadBytes);
}
