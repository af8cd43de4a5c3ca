// Leaf SVID issuance (SPEC §2) from a TBSCertificate template pre-encoded once per CA: per leaf only
// the serial, validity, public key and SAN URI are encoded. Leaves carry no SubjectKeyIdentifier
// (optional for end-entity certificates, RFC 5280 §4.2.1.2).
import { createECDH, generateKeyPairSync, randomBytes, sign, type ECDH } from 'node:crypto';
import { bitString, certificateParts, derTime, explicit, hex, octetString, seq, tlv, toPem, uintFromBytes } from './der.js';
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
  /** version [0] v3. */
  readonly version: Buffer;
  /** signature AlgorithmIdentifier + issuer Name (the CA's subject, byte for byte). */
  readonly sigAlgAndIssuer: Buffer;
  /** Extensions that are the same for every leaf of this CA. */
  readonly constExtensions: Buffer;
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
// basicConstraints critical CA:FALSE (empty SEQUENCE: cA defaults to FALSE).
const EXT_BASIC_CONSTRAINTS = hex('300c0603551d130101ff04023000');
// keyUsage critical: digitalSignature+keyAgreement (EC) / digitalSignature+keyEncipherment (RSA).
const EXT_KU_EC = hex('300e0603551d0f0101ff040403020388');
const EXT_KU_RSA = hex('300e0603551d0f0101ff0404030205a0');
// extKeyUsage serverAuth, clientAuth.
const EXT_EKU = hex('301d0603551d250416301406082b0601050507030106082b06010505070302');
const OID_SAN = hex('0603551d11');
const OID_AKI = hex('0603551d23');
const CRITICAL = hex('0101ff');

const CURVE = {
  'ec-p256': { name: 'prime256v1', oid: OID.p256, size: 32 },
  'ec-p384': { name: 'secp384r1', oid: OID.p384, size: 48 },
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
    version: VERSION_V3,
    sigAlgAndIssuer: Buffer.concat([sigAlg, certificateParts(ca.certDer).subject]),
    constExtensions: Buffer.concat([EXT_BASIC_CONSTRAINTS, isEc ? EXT_KU_EC : EXT_KU_RSA, EXT_EKU, aki]),
  };
  templates.set(ca, t);
  return t;
}

interface LeafKey {
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
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
  const publicKey = ecdh.generateKeys(); // uncompressed point
  let priv = ecdh.getPrivateKey();
  if (priv.length < c.size) priv = Buffer.concat([Buffer.alloc(c.size - priv.length), priv]);
  const algId = seq(OID.ecPublicKey, c.oid);
  const pubBits = bitString(publicKey);
  const ecPrivateKey = seq(hex('020101'), octetString(priv), explicit(1, pubBits));
  const pkcs8 = seq(hex('020100'), algId, octetString(ecPrivateKey));
  return { spki: seq(algId, pubBits), keyPem: toPem('PRIVATE KEY', pkcs8) };
}

function rsaLeafKey(): LeafKey {
  const { publicKey: spki, privateKey: keyPem } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { spki, keyPem };
}

// Serials are drawn from a pooled buffer: one randomBytes call per 256 serials instead of one each.
let serialPool = Buffer.alloc(0);
let serialPos = 0;

/** Random positive 128-bit-wide serial (high bit cleared, first byte non-zero so DER keeps 16 bytes). */
function randomSerial(): Buffer {
  if (serialPos >= serialPool.length) {
    serialPool = randomBytes(16 * 256);
    serialPos = 0;
  }
  const b = Buffer.from(serialPool.subarray(serialPos, serialPos + 16));
  serialPos += 16;
  b[0] = b[0]! & 0x7f || 0x01;
  return b;
}

const SPIFFE_ID = /^spiffe:\/\/[\x21-\x7e]+$/;

/** Issue one leaf on the calling thread. */
export function issueSvidSync(ca: CertificateAuthority, spiffeId: string, expiryMs: number, now: Date = new Date()): IssuedSvid {
  if (!SPIFFE_ID.test(spiffeId)) throw new TypeError(`invalid SPIFFE ID ${JSON.stringify(spiffeId)}`);
  if (!(expiryMs > 0)) throw new RangeError(`leaf expiry must be positive, got ${expiryMs}`);
  const t = leafTemplate(ca);
  const nowMs = now.getTime();
  // Whole seconds: that is what the certificate can carry, so the returned dates match it exactly.
  const notBeforeMs = Math.floor((nowMs - NOT_BEFORE_SKEW_MS) / 1000) * 1000;
  const notAfterMs = Math.floor(Math.min(nowMs + expiryMs, ca.notAfter.getTime()) / 1000) * 1000;
  if (nowMs > ca.notAfter.getTime()) throw new CaError(`CA certificate expired at ${ca.notAfter.toISOString()}`);
  if (notAfterMs <= notBeforeMs) throw new CaError(`CA certificate expires too soon to issue (at ${ca.notAfter.toISOString()})`);
  const notBefore = new Date(notBeforeMs);
  const notAfter = new Date(notAfterMs);

  const key = t.leafAlgorithm === 'rsa-2048' ? rsaLeafKey() : ecLeafKey(t.leafAlgorithm);
  const serial = randomSerial();
  // Empty subject, so the SAN must be critical (RFC 5280 §4.2.1.6); exactly one URI.
  const san = seq(OID_SAN, CRITICAL, octetString(seq(tlv(0x86, Buffer.from(spiffeId, 'latin1')))));
  const tbs = seq(
    t.version,
    uintFromBytes(serial),
    t.sigAlgAndIssuer,
    seq(derTime(notBefore), derTime(notAfter)),
    EMPTY_NAME,
    key.spki,
    explicit(3, seq(t.constExtensions, san)),
  );
  const signature = sign(t.hash, tbs, t.ca.key.asymmetricKeyType === 'ec' ? { key: t.ca.key, dsaEncoding: 'der' } : t.ca.key);
  const certDer = seq(tbs, t.sigAlg, bitString(signature));
  return {
    spiffeId,
    certChainPem: toPem('CERTIFICATE', certDer) + ca.chainPem,
    keyPem: key.keyPem,
    notBefore,
    notAfter,
    serialHex: serial.toString('hex'),
    caFingerprint: ca.fingerprint,
  };
}

/** Key algorithm a leaf of this CA gets (same family as the CA; RSA leaves are 2048-bit). */
export function leafKeyAlgorithm(ca: { keyAlgorithm: KeyAlgorithm }): KeyAlgorithm {
  return ca.keyAlgorithm.startsWith('ec-') ? ca.keyAlgorithm : 'rsa-2048';
}
