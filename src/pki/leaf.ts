// Leaf SVID issuance (SPEC §2) from a TBSCertificate template pre-encoded once per CA: per leaf only
// the serial, validity, public key and SAN URI are encoded. Leaves carry no SubjectKeyIdentifier
// (optional for end-entity certificates, RFC 5280 §4.2.1.2).
import { createECDH, generateKeyPairSync, randomBytes, sign, type ECDH, type KeyObject, type SignKeyObjectInput } from 'node:crypto';
import { bitString, certificateParts, derLengthSize, derTime, explicit, hex, octetString, seq, tlv, toPem, writeDerLength } from './der.js';
import { CaError } from './errors.js';
import type { CertificateAuthority, IssuedSvid, KeyAlgorithm } from './types.js';

/** Leaves are backdated so that proxies with a slightly slow clock accept them. */
export const NOT_BEFORE_SKEW_MS = 10_000;

type LeafKeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048';

interface LeafTemplate {
  readonly ca: CertificateAuthority;
  readonly hash: 'sha256' | 'sha384';
  readonly leafAlgorithm: LeafKeyAlgorithm;
  /** AlgorithmIdentifier of the CA's signature. */
  readonly sigAlg: Buffer;
  /** TBS fields before the serial's bytes: version [0] v3 and the serial INTEGER's tag and length (16). */
  readonly beforeSerial: Buffer;
  /** signature AlgorithmIdentifier + issuer Name (the CA's subject, byte for byte). */
  readonly sigAlgAndIssuer: Buffer;
  /** Extensions that are the same for every leaf of this CA. */
  readonly constExtensions: Buffer;
  /** What `sign` takes: the CA key (ECDSA signatures DER-encoded, as X.509 wants). */
  readonly signKey: KeyObject | SignKeyObjectInput;
}

const OID = {
  ecPublicKey: hex('06072a8648ce3d0201'),
  p256: hex('06082a8648ce3d030107'),
  p384: hex('06052b81040022'),
};
const SIG_ALG = {
  'ecdsa-sha256': hex('300a06082a8648ce3d040302'),
  'ecdsa-sha384': hex('300a06082a8648ce3d040303'),
  'rsa-sha256': hex('300d06092a864886f70d01010b0500'),
};
const EMPTY_NAME = hex('3000');
const VERSION_V3 = hex('a003020102');
const SERIAL_BYTES = 16;
/** Where the TBS is written in the scratch buffer: after the certificate's header (tag + at most 3 length bytes). */
const TBS_AT = 4;
/** Largest CA signature: RSA 4096 (512 bytes); ECDSA P-384 DER is at most 104. */
const MAX_SIGNATURE = 512;
// basicConstraints critical CA:FALSE (empty SEQUENCE: cA defaults to FALSE).
const EXT_BASIC_CONSTRAINTS = hex('300c0603551d130101ff04023000');
// keyUsage critical: digitalSignature+keyAgreement (EC) / digitalSignature+keyEncipherment (RSA).
const EXT_KU_EC = hex('300e0603551d0f0101ff040403020388');
const EXT_KU_RSA = hex('300e0603551d0f0101ff0404030205a0');
// extKeyUsage serverAuth, clientAuth.
const EXT_EKU = hex('301d0603551d250416301406082b0601050507030106082b06010505070302');
// SAN extension: extnID subjectAltName, critical TRUE (the subject is empty, RFC 5280 §4.2.1.6).
const SAN_ID_CRITICAL = hex('0603551d110101ff');
const OID_AKI = hex('0603551d23');

/**
 * Per curve: the fixed DER around a key's two variable parts (RFC 5915 ECPrivateKey in RFC 5208
 * PKCS#8; RFC 5480 SubjectPublicKeyInfo). PKCS#8 is `pkcs8Head ‖ d ‖ pkcs8Mid ‖ Q`, SPKI is
 * `spkiHead ‖ Q` (Q uncompressed). Built once with the DER helpers, so the lengths are right by
 * construction.
 */
interface CurveDer {
  readonly name: string;
  readonly size: number;
  readonly pkcs8Head: Buffer;
  readonly pkcs8Mid: Buffer;
  readonly spkiHead: Buffer;
}

function curveDer(name: string, oid: Buffer, size: number): CurveDer {
  const algId = seq(OID.ecPublicKey, oid);
  const d = Buffer.alloc(size, 0xd1);
  const q = Buffer.alloc(1 + 2 * size, 0xe2);
  const pkcs8 = seq(hex('020100'), algId, octetString(seq(hex('020101'), octetString(d), explicit(1, bitString(q)))));
  const spki = seq(algId, bitString(q));
  const dAt = pkcs8.indexOf(d);
  const pkcs8Head = pkcs8.subarray(0, dAt);
  const pkcs8Mid = pkcs8.subarray(dAt + size, pkcs8.length - q.length);
  if (pkcs8Head.length + size + pkcs8Mid.length + q.length !== pkcs8.length) throw new Error('curve template');
  return { name, size, pkcs8Head: Buffer.from(pkcs8Head), pkcs8Mid: Buffer.from(pkcs8Mid), spkiHead: Buffer.from(spki.subarray(0, spki.length - q.length)) };
}

const CURVE = {
  'ec-p256': curveDer('prime256v1', OID.p256, 32),
  'ec-p384': curveDer('secp384r1', OID.p384, 48),
} as const;

const templates = new WeakMap<CertificateAuthority, LeafTemplate>();

function leafTemplate(ca: CertificateAuthority): LeafTemplate {
  let t = templates.get(ca);
  if (t) return t;
  const isEc = ca.keyAlgorithm.startsWith('ec-');
  const sigAlg = ca.keyAlgorithm === 'ec-p256' ? SIG_ALG['ecdsa-sha256'] : ca.keyAlgorithm === 'ec-p384' ? SIG_ALG['ecdsa-sha384'] : SIG_ALG['rsa-sha256'];
  const aki = seq(OID_AKI, octetString(seq(tlv(0x80, ca.subjectKeyId))));
  t = {
    ca,
    hash: ca.keyAlgorithm === 'ec-p384' ? 'sha384' : 'sha256',
    leafAlgorithm: isEc ? (ca.keyAlgorithm as LeafKeyAlgorithm) : 'rsa-2048',
    sigAlg,
    beforeSerial: Buffer.concat([VERSION_V3, Buffer.from([0x02, SERIAL_BYTES])]),
    sigAlgAndIssuer: Buffer.concat([sigAlg, certificateParts(ca.certDer).subject]),
    constExtensions: Buffer.concat([EXT_BASIC_CONSTRAINTS, isEc ? EXT_KU_EC : EXT_KU_RSA, EXT_EKU, aki]),
    signKey: ca.key.asymmetricKeyType === 'ec' ? { key: ca.key, dsaEncoding: 'der' } : ca.key,
  };
  templates.set(ca, t);
  return t;
}

interface LeafKey {
  /** SubjectPublicKeyInfo DER: `spkiHead ‖ spkiTail`. */
  spkiHead: Buffer;
  spkiTail: Buffer;
  keyPem: string;
}

// One ECDH object per curve, reused: generateKeys() draws a fresh random key on every call, and
// reuse skips rebuilding the curve (about half the cost of a key). Hand-built PKCS#8/SPKI encoding
// is several times faster than KeyObject.export.
const ecdhByCurve = new Map<string, ECDH>();

function ecLeafKey(alg: 'ec-p256' | 'ec-p384'): LeafKey {
  const c = CURVE[alg];
  let ecdh = ecdhByCurve.get(c.name);
  if (!ecdh) ecdhByCurve.set(c.name, (ecdh = createECDH(c.name)));
  const q = ecdh.generateKeys(); // uncompressed point
  const d = ecdh.getPrivateKey(); // big-endian, may be shorter than the curve size: left-pad with zeros
  // PKCS#8 in the scratch buffer (used again for the certificate once the PEM is made).
  const len = c.pkcs8Head.length + c.size + c.pkcs8Mid.length + q.length;
  const buf = scratchOf(len);
  let o = put(buf, c.pkcs8Head, 0);
  const pad = c.size - d.length;
  buf.fill(0, o, o + pad);
  o = put(buf, d, o + pad);
  o = put(buf, c.pkcs8Mid, o);
  put(buf, q, o);
  return { spkiHead: c.spkiHead, spkiTail: q, keyPem: toPem('PRIVATE KEY', buf, 0, len) };
}

function rsaLeafKey(): LeafKey {
  const { publicKey: spki, privateKey: keyPem } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { spkiHead: spki, spkiTail: Buffer.alloc(0), keyPem };
}

// DER is written into one reused scratch buffer per thread (issuance is synchronous): the leaf's
// only allocations are the strings it returns and what node:crypto hands back.
let scratch = Buffer.allocUnsafe(8192);

function scratchOf(size: number): Buffer {
  if (scratch.length < size) scratch = Buffer.allocUnsafe(Math.max(size, 2 * scratch.length));
  return scratch;
}

/** Copies `src` into `buf` at `o`; returns the offset after it. */
function put(buf: Buffer, src: Uint8Array, o: number): number {
  buf.set(src, o);
  return o + src.length;
}

// Serials are drawn from a pooled buffer: one randomBytes call per 256 serials instead of one each.
let serialPool = Buffer.alloc(0);
let serialPos = 0;

/**
 * Offset in `serialPool` of a fresh random positive 128-bit-wide serial (high bit cleared, first
 * byte non-zero so DER keeps all 16 bytes, with no leading 0x00).
 */
function nextSerial(): number {
  if (serialPos >= serialPool.length) {
    serialPool = randomBytes(SERIAL_BYTES * 256);
    serialPos = 0;
  }
  const at = serialPos;
  serialPos += SERIAL_BYTES;
  serialPool[at] = serialPool[at]! & 0x7f || 0x01;
  return at;
}

/** A leaf the CA's (chain's) end would cut shorter than this is not issued: it is dead on arrival. */
const MIN_LEAF_LIFE_MS = 2000;

// Validity of the last leaf: in a storm every leaf of the same second has the same one.
let lastValidity: { notBeforeMs: number; notAfterMs: number; der: Buffer } = { notBeforeMs: NaN, notAfterMs: NaN, der: Buffer.alloc(0) };

function validityDer(notBeforeMs: number, notAfterMs: number): Buffer {
  const v = lastValidity;
  if (v.notBeforeMs === notBeforeMs && v.notAfterMs === notAfterMs) return v.der;
  const der = seq(derTime(new Date(notBeforeMs)), derTime(new Date(notAfterMs)));
  lastValidity = { notBeforeMs, notAfterMs, der };
  return der;
}

const SPIFFE_ID = /^spiffe:\/\/[\x21-\x7e]+$/;

/**
 * A leaf as the issuance workers send it back: what the requester does not already have. The
 * requester adds the SPIFFE ID, the CA's chain and fingerprint (see `svidFromLeaf`).
 */
export interface IssuedLeaf {
  /** The leaf certificate alone, PEM. */
  readonly certPem: string;
  readonly keyPem: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly serialHex: string;
}

/** The IssuedSvid of a leaf issued by `ca` for `spiffeId`. */
export function svidFromLeaf(ca: CertificateAuthority, spiffeId: string, leaf: IssuedLeaf): IssuedSvid {
  return {
    spiffeId,
    certChainPem: leaf.certPem + ca.chainPem,
    keyPem: leaf.keyPem,
    notBefore: new Date(leaf.notBeforeMs),
    notAfter: new Date(leaf.notAfterMs),
    serialHex: leaf.serialHex,
    caFingerprint: ca.fingerprint,
  };
}

/** Issue one leaf on the calling thread. */
export function issueSvidSync(ca: CertificateAuthority, spiffeId: string, expiryMs: number, now: Date = new Date()): IssuedSvid {
  return svidFromLeaf(ca, spiffeId, issueLeafSync(ca, spiffeId, expiryMs, now.getTime()));
}

/** Issue one leaf on the calling thread, without the parts the caller already has. */
export function issueLeafSync(ca: CertificateAuthority, spiffeId: string, expiryMs: number, nowMs: number): IssuedLeaf {
  if (!SPIFFE_ID.test(spiffeId)) throw new TypeError(`invalid SPIFFE ID ${JSON.stringify(spiffeId)}`);
  if (!(expiryMs > 0)) throw new RangeError(`leaf expiry must be positive, got ${expiryMs}`);
  const t = leafTemplate(ca);
  // Whole seconds: that is what the certificate can carry, so the returned dates match it exactly.
  const notBeforeMs = Math.floor((nowMs - NOT_BEFORE_SKEW_MS) / 1000) * 1000;
  const notAfterMs = Math.floor(Math.min(nowMs + expiryMs, ca.notAfter.getTime()) / 1000) * 1000;
  if (nowMs > ca.notAfter.getTime()) throw new CaError(`CA certificate expired at ${ca.notAfter.toISOString()}`);
  // Cut short by the CA's (chain's) end to a second or two, a leaf is expired by the time a proxy uses it.
  const cutByCa = ca.notAfter.getTime() < nowMs + expiryMs;
  if (notAfterMs <= notBeforeMs || (cutByCa && notAfterMs - nowMs < MIN_LEAF_LIFE_MS)) throw new CaError(`CA certificate expires too soon to issue (at ${ca.notAfter.toISOString()})`);

  const key = t.leafAlgorithm === 'rsa-2048' ? rsaLeafKey() : ecLeafKey(t.leafAlgorithm);
  const serialAt = nextSerial();
  const validity = validityDer(notBeforeMs, notAfterMs);

  // TBSCertificate written into one buffer (DER lengths computed inside out):
  //   version, serial, signature+issuer, validity, subject (empty), SPKI,
  //   [3] { SEQUENCE { constant extensions, SAN { id, critical, OCTET STRING { SEQUENCE { [6] uri } } } } }
  // spiffeId is printable ASCII (checked above): one byte per character.
  const uriLen = spiffeId.length;
  const gnLen = 1 + derLengthSize(uriLen) + uriLen;
  const gnsLen = 1 + derLengthSize(gnLen) + gnLen;
  const sanLen = SAN_ID_CRITICAL.length + 1 + derLengthSize(gnsLen) + gnsLen;
  const extsLen = t.constExtensions.length + 1 + derLengthSize(sanLen) + sanLen;
  const extsSeqLen = 1 + derLengthSize(extsLen) + extsLen;
  const spkiLen = key.spkiHead.length + key.spkiTail.length;
  const tbsLen =
    t.beforeSerial.length + SERIAL_BYTES + t.sigAlgAndIssuer.length + validity.length + EMPTY_NAME.length + spkiLen + 1 + derLengthSize(extsSeqLen) + extsSeqLen;
  const tbsSize = 1 + derLengthSize(tbsLen) + tbsLen;
  // Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }: the TBS is written
  // at TBS_AT, leaving room for the certificate's header (at most 4 bytes, written once the
  // signature's length is known) so nothing is copied after signing.
  const buf = scratchOf(TBS_AT + tbsSize + t.sigAlg.length + 4 + MAX_SIGNATURE);
  buf[TBS_AT] = 0x30;
  let o = writeDerLength(buf, TBS_AT + 1, tbsLen);
  o = put(buf, t.beforeSerial, o);
  for (let i = 0; i < SERIAL_BYTES; i++) buf[o++] = serialPool[serialAt + i]!;
  o = put(buf, t.sigAlgAndIssuer, o);
  o = put(buf, validity, o);
  o = put(buf, EMPTY_NAME, o);
  o = put(buf, key.spkiHead, o);
  o = put(buf, key.spkiTail, o);
  buf[o++] = 0xa3;
  o = writeDerLength(buf, o, extsSeqLen);
  buf[o++] = 0x30;
  o = writeDerLength(buf, o, extsLen);
  o = put(buf, t.constExtensions, o);
  buf[o++] = 0x30;
  o = writeDerLength(buf, o, sanLen);
  o = put(buf, SAN_ID_CRITICAL, o);
  buf[o++] = 0x04;
  o = writeDerLength(buf, o, gnsLen);
  buf[o++] = 0x30;
  o = writeDerLength(buf, o, gnLen);
  buf[o++] = 0x86;
  o = writeDerLength(buf, o, uriLen);
  o += buf.write(spiffeId, o, 'latin1');
  if (o !== TBS_AT + tbsSize) throw new Error(`leaf TBS length mismatch (${o - TBS_AT} != ${tbsSize})`);

  const signature = sign(t.hash, buf.subarray(TBS_AT, o), t.signKey);
  if (signature.length > MAX_SIGNATURE) throw new Error(`signature of ${signature.length} bytes`);
  const sigBitsLen = 1 + signature.length;
  const certLen = tbsSize + t.sigAlg.length + 1 + derLengthSize(sigBitsLen) + sigBitsLen;
  const certAt = TBS_AT - 1 - derLengthSize(certLen);
  buf[certAt] = 0x30;
  writeDerLength(buf, certAt + 1, certLen);
  o = put(buf, t.sigAlg, o);
  buf[o++] = 0x03;
  o = writeDerLength(buf, o, sigBitsLen);
  buf[o++] = 0;
  o = put(buf, signature, o);
  return {
    certPem: toPem('CERTIFICATE', buf, certAt, o),
    keyPem: key.keyPem,
    notBeforeMs,
    notAfterMs,
    serialHex: serialPool.toString('hex', serialAt, serialAt + SERIAL_BYTES),
  };
}

/**
 * Whether a leaf of this CA gets an EC key, generated in well under a millisecond; an RSA key takes
 * 50 ms to seconds, which must never block the event loop nor queue many proxies behind it.
 */
export function quickLeafKey(ca: { keyAlgorithm: KeyAlgorithm }): boolean {
  return ca.keyAlgorithm.startsWith('ec-');
}

/** Key algorithm a leaf of this CA gets (same family as the CA; RSA leaves are 2048-bit). */
export function leafKeyAlgorithm(ca: { keyAlgorithm: KeyAlgorithm }): KeyAlgorithm {
  return quickLeafKey(ca) ? ca.keyAlgorithm : 'rsa-2048';
}

/**
 * Longest wait before a served leaf's rotation time is checked against the wall clock again (a
 * proxy's SVID, the bundle endpoint's): timers run on the monotonic clock, which stands still while
 * the host is suspended and ignores NTP steps, while rotation times and NotBefore/NotAfter are
 * wall-clock instants. Waiting out a whole rotation delay in one timer served a leaf expired after
 * such a jump.
 */
export const LEAF_CLOCK_CHECK_MS = 60_000;
