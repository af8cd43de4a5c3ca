import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Name, NameConstraints, id_ce_nameConstraints, type RelativeDistinguishedName } from '@peculiar/asn1-x509';
import { certificateParts, children, hex, raw, readNode, toPem } from './der.js';
import { CaError } from './errors.js';
import { caKeyProblem, caTrustDomains, countPemCertificates, hasUnreadableValidity, splitPemCertificates } from '../api/pem.js';
import type { CertificateAuthority, KeyAlgorithm } from './types.js';
import { x509 } from './x509.js';

export interface LoadCaOptions {
  /** Accept a self-signed CA (`insecureAllowSelfSigned`). */
  allowSelfSigned: boolean;
  /** Clock for the validity check; defaults to the current time. */
  now?: Date;
  /**
   * The trust domain of the leaves this CA will sign, when it does not depend on proxy labels:
   * name constraints of the CA or its chain must permit `spiffe://<trustDomain>`.
   */
  trustDomain?: string;
}

/** Algorithm of a private key, or a CaError for keys this server cannot sign leaves with. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1') return 'ec-p256';
    if (d.namedCurve === 'secp384r1') return 'ec-p384';
    throw new CaError(`unsupported EC curve ${d.namedCurve ?? '?'} (supported: P-256, P-384)`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    if (d.modulusLength === 2048) return 'rsa-2048';
    if (d.modulusLength === 3072) return 'rsa-3072';
    if (d.modulusLength === 4096) return 'rsa-4096';
    throw new CaError(`unsupported RSA key size ${d.modulusLength ?? '?'} (supported: 2048, 3072, 4096)`);
  }
  throw new CaError(`unsupported key type ${key.asymmetricKeyType ?? '?'} (supported: RSA, ECDSA P-256/P-384)`);
}

/**
 * Line breaks that arrived as the two characters `\n` (an environment variable set from JSON, a
 * quoted YAML value): said as such, as neither the base64 nor the decoder error tells it.
 */
const escapedNewlines = (text: string): string =>
  /-----BEGIN [A-Z0-9 ]+-----\\n/.test(text) ? ': its text holds "\\n" as two characters where line breaks belong; unescape them' : '';

function parsePrivateKey(keyPem: string): KeyObject {
  const keys = keyPem.match(/-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/g)?.length ?? 0;
  if (keys === 0) {
    throw new CaError(`CA private key is not a PEM private key (PKCS#8, PKCS#1 or SEC1 expected)${escapedNewlines(keyPem)}`);
  }
  // Only the first would be used: an old key before the new one read as a wrong chain order, and a
  // root's key after the CA's was kept on the server unasked.
  if (keys > 1) throw new CaError(`CA private key text holds ${keys} private keys; give only the key of the CA certificate`);
  if (keyPem.includes('BEGIN ENCRYPTED PRIVATE KEY') || /Proc-Type:\s*4,ENCRYPTED/.test(keyPem)) {
    throw new CaError('CA private key is encrypted; provide an unencrypted key');
  }
  try {
    return createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (e) {
    throw new CaError(`CA private key cannot be parsed: ${(e as Error).message}${escapedNewlines(keyPem)}`);
  }
}

/** DER of an empty Name (SEQUENCE of no RDNs). */
const EMPTY_NAME = Buffer.from([0x30, 0x00]);

const isSelfSigned = (c: X509Certificate, der: Buffer): boolean => {
  const p = certificateParts(der);
  return p.subject.equals(p.issuer) && c.verify(c.publicKey);
};

function checkIsCa(pc: x509.X509Certificate, what: string): void {
  const bc = pc.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new CaError(`${what} is not a CA (basicConstraints CA:TRUE missing)`);
  // RFC 5280 §4.2.1.9 requires it of a CA; openssl verify -x509_strict refuses every chain through one that lacks it.
  if (!bc.critical) throw new CaError(`${what} has basicConstraints CA:TRUE not marked critical (RFC 5280 requires it of a CA): openssl verify -x509_strict rejects leaves signed through it; reissue it with basicConstraints=critical,CA:TRUE`);
}

/**
 * Extensions OpenSSL and BoringSSL process (X509_supported_extension): any other marked critical
 * makes every chain through the certificate fail ("unhandled critical extension"), even without
 * -x509_strict. The key identifiers, issuerAltName and subjectDirectoryAttributes are not among
 * them (a CA with a critical SKI was accepted and no leaf it signed verified).
 */
const UNDERSTOOD_EXTENSIONS = new Set([
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.19', // basicConstraints
  '2.5.29.30', // nameConstraints
  '2.5.29.32', // certificatePolicies
  '2.5.29.33', // policyMappings
  '2.5.29.36', // policyConstraints
  '2.5.29.37', // extKeyUsage
  '2.5.29.54', // inhibitAnyPolicy
  '1.3.6.1.5.5.7.1.14', // proxyCertInfo
  '2.16.840.1.113730.1.1', // netscape cert type
]);
/** Extensions a CA tool may mark critical that TLS peers do not process, by name (see UNDERSTOOD_EXTENSIONS). */
const EXTENSION_NAMES: Readonly<Record<string, string>> = {
  '2.5.29.9': 'subjectDirectoryAttributes',
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.18': 'issuerAltName',
  '2.5.29.35': 'authorityKeyIdentifier',
};
const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_ANY = '2.5.29.37.0';

/** Extensions of a CA in the chain that make peers refuse every leaf below it. */
function checkChainExtensions(pc: x509.X509Certificate, what: string): void {
  const unknown = pc.extensions.find((e) => e.critical && !UNDERSTOOD_EXTENSIONS.has(e.type));
  if (unknown) {
    // Named in words too: "2.5.29.14" alone does not tell an operator it is the SKI they marked critical.
    const name = EXTENSION_NAMES[unknown.type];
    throw new CaError(
      `${what} has a critical extension ${unknown.type} that TLS peers do not process${name ? ` (${name})` : ''}: leaves signed by the CA would not verify; reissue it with ${name ?? 'that extension'} not marked critical`,
    );
  }
  // OpenSSL checks a CA's extendedKeyUsage against the purpose (a leaf is used as client and server).
  const eku = pc.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku) {
    const usages = new Set(eku.usages.map(String));
    const missing = usages.has(EKU_ANY) ? [] : [[EKU_SERVER_AUTH, 'serverAuth'], [EKU_CLIENT_AUTH, 'clientAuth']].filter(([oid]) => !usages.has(oid!)).map(([, n]) => n);
    if (missing.length > 0) throw new CaError(`${what} restricts extendedKeyUsage without ${missing.join(' and ')}: peers checking the purpose refuse leaves signed by the CA`);
  }
}

/** A CA that is not self-signed must name its issuer's key: openssl verify -x509_strict refuses every chain through one that does not. */
function checkHasAuthorityKeyId(pc: x509.X509Certificate, what: string): void {
  if (!pc.getExtension(x509.AuthorityKeyIdentifierExtension)) {
    throw new CaError(`${what} has no AuthorityKeyIdentifier extension (required of a CA that is not self-signed: openssl verify -x509_strict rejects chains through a CA without one); reissue it with authorityKeyIdentifier=keyid`);
  }
}

/**
 * The key policy a peer holds this server's published CAs to (caKeyProblem: federated mesh-sds,
 * Go's crypto/x509): a weak root would be published, and refused, in every bundle of the domain.
 * EC keys must name their curve, as RFC 5480 requires.
 */
function checkKeyAcceptable(cert: X509Certificate, der: Buffer, what: string): void {
  const problem = caKeyProblem(cert);
  if (problem) throw new CaError(`${what} has ${problem}`);
  // Node names the curve of explicit parameters too: told by the encoding, a SEQUENCE where the OID would be.
  if (cert.publicKey.asymmetricKeyType === 'ec') {
    const spki = certificateParts(der).spki;
    const algorithm = children(spki, readNode(spki, 0))[0];
    const params = algorithm && children(spki, algorithm)[1];
    if (params?.tag === 0x30) {
      throw new CaError(`${what} has an EC key with explicit curve parameters (RFC 5480 allows only a named curve; openssl verify -x509_strict and Go refuse it); reissue it with the key in named-curve form (openssl pkey -ec_param_enc named_curve)`);
    }
  }
}

/** Signature algorithms verifiers refuse below the trust anchor (whose own self-signature nobody checks). */
const WEAK_SIGNATURES: ReadonlyArray<readonly [Buffer, string]> = [
  [hex('06092a864886f70d010102'), 'MD2 with RSA'],
  [hex('06092a864886f70d010103'), 'MD4 with RSA'],
  [hex('06092a864886f70d010104'), 'MD5 with RSA'],
  [hex('06092a864886f70d010105'), 'SHA-1 with RSA'],
  [hex('06072a8648ce3d0401'), 'ECDSA with SHA-1'],
  [hex('06072a8648ce380403'), 'DSA with SHA-1'],
];

/** The hash an RSA-PSS signature names in its parameters (SHA-1 when they leave it out). */
function pssHash(pc: x509.X509Certificate): string | undefined {
  try {
    const alg = pc.signatureAlgorithm as { name?: string; hash?: { name?: string } };
    return alg.name === 'RSA-PSS' ? alg.hash?.name : undefined;
  } catch {
    return undefined;
  }
}

/** A certificate signed by another with a weak digest: OpenSSL (security level 1, its TLS default) and Go refuse every leaf below it. */
function checkSignatureStrength(der: Buffer, pc: x509.X509Certificate, what: string): void {
  const sigAlg = children(der, readNode(der, 0))[1];
  const oid = sigAlg && children(der, sigAlg)[0];
  const weak = (oid && WEAK_SIGNATURES.find(([o]) => o.equals(raw(der, oid)))?.[1]) || (pssHash(pc) === 'SHA-1' ? 'RSA-PSS with SHA-1' : undefined);
  if (weak) throw new CaError(`${what} is signed with ${weak}, which verifiers refuse (OpenSSL at its default security level, Go, BoringSSL for MD5); have it signed with SHA-256 or stronger`);
}

function checkValidAt(cert: X509Certificate, pc: x509.X509Certificate, what: string, now: Date): void {
  // @peculiar reads a year-1 time that OpenSSL refuses ("format error in certificate's notBefore field").
  if (hasUnreadableValidity(cert)) {
    throw new CaError(`${what} has a validity OpenSSL cannot read ("Bad time value"): verifiers refuse every leaf below it; reissue it with dates from 1950 on`);
  }
  if (now.getTime() > pc.notAfter.getTime()) throw new CaError(`${what} expired at ${pc.notAfter.toISOString()}`);
  if (now.getTime() < pc.notBefore.getTime()) throw new CaError(`${what} is not valid before ${pc.notBefore.toISOString()}`);
}

/**
 * RFC 5280 §4.2.1.10 for a URI name: the constraint is a host, or a domain when it starts with a
 * period (then only its subdomains match).
 */
function uriHostMatches(host: string, constraint: string): boolean {
  const c = constraint.toLowerCase();
  return c.startsWith('.') ? host.endsWith(c) : host === c;
}

/**
 * Why the name constraints of `cert` forbid `spiffe://<trustDomain>` (the only name a leaf carries:
 * its subject is empty), or undefined when they allow it.
 */
function nameConstraintRefusal(cert: x509.X509Certificate, trustDomain: string): string | undefined {
  const ext = cert.getExtension(id_ce_nameConstraints);
  if (!ext) return undefined;
  let nc: NameConstraints;
  try {
    nc = AsnConvert.parse(ext.value, NameConstraints);
  } catch {
    return 'has a name constraints extension that cannot be parsed';
  }
  const host = trustDomain.toLowerCase();
  const uris = (subtrees: NameConstraints['permittedSubtrees']) =>
    (subtrees ?? []).flatMap((t) => (t.base.uniformResourceIdentifier === undefined ? [] : [t.base.uniformResourceIdentifier]));
  const permitted = uris(nc.permittedSubtrees);
  if (permitted.length > 0 && !permitted.some((c) => uriHostMatches(host, c))) {
    return `permits URIs only in ${permitted.map((c) => JSON.stringify(c)).join(', ')}, not trust domain ${JSON.stringify(trustDomain)}`;
  }
  const excluded = uris(nc.excludedSubtrees).find((c) => uriHostMatches(host, c));
  if (excluded !== undefined) return `excludes URIs in ${JSON.stringify(excluded)}, which holds trust domain ${JSON.stringify(trustDomain)}`;
  return undefined;
}

/** An RDN as OpenSSL compares names under constraints: its attribute values without regard to case or runs of white space. */
const rdnKey = (rdn: RelativeDistinguishedName): string =>
  rdn
    .map((a) => `${a.type}=${a.value.toString().trim().replace(/\s+/g, ' ').toLowerCase()}`)
    .sort()
    .join('+');

/** RFC 5280 §4.2.1.10: a name is within a directoryName subtree when the subtree's RDNs begin it. */
function nameWithin(name: Name, base: Name): boolean {
  return base.length <= name.length && base.every((rdn, k) => rdnKey(rdn) === rdnKey(name[k]!));
}

/**
 * Whether the directoryName constraints of `constraining` forbid `subjectDer` (a Name), as OpenSSL
 * checks each CA's subject against the constraints of every CA above it.
 */
function subjectForbidden(constraining: x509.X509Certificate, subjectDer: Buffer): boolean {
  const ext = constraining.getExtension(id_ce_nameConstraints);
  if (!ext) return false;
  let nc: NameConstraints;
  let subject: Name;
  try {
    nc = AsnConvert.parse(ext.value, NameConstraints);
    subject = AsnConvert.parse(subjectDer, Name);
  } catch {
    return false; // named by nameConstraintRefusal
  }
  if (subject.length === 0) return false;
  const dirNames = (subtrees: NameConstraints['permittedSubtrees']) => (subtrees ?? []).flatMap((t) => (t.base.directoryName ? [t.base.directoryName] : []));
  const permitted = dirNames(nc.permittedSubtrees);
  if (permitted.length > 0 && !permitted.some((b) => nameWithin(subject, b))) return true;
  return dirNames(nc.excludedSubtrees).some((b) => nameWithin(subject, b));
}

/**
 * The other trust domain a signing CA names in a `spiffe://` URI SAN, if any: as for a MeshTrust's
 * CAs, a CA naming another trust domain is that domain's, and must not sign this one's IDs. (Only
 * the signing CA: the root above an intermediate may belong to an organisation's own domain.)
 */
export function otherTrustDomainOf(caCertDer: Buffer, trustDomain: string): string | undefined {
  return caTrustDomains(caCertDer).find((d) => d !== trustDomain);
}

/** Whether `ca` may sign leaves of `trustDomain` (see otherTrustDomainOf). */
export function signsFor(ca: Pick<CertificateAuthority, 'certDer'>, trustDomain: string): boolean {
  return otherTrustDomainOf(ca.certDer, trustDomain) === undefined;
}

/** Certificates a provided CA text may hold: real chains have a few. */
export const MAX_CHAIN_CERTIFICATES = 10;

/**
 * Validates a user (or generated) CA once, so that issuing never has to.
 * `certPem` is the signing CA optionally followed by its chain, root last. `chainPem` is that list
 * without the self-signed root (empty for a self-signed CA). `trustPem` is the root when it is
 * included; when it is not, the signing CA itself is the trust anchor, which works for verifiers
 * that allow partial chains (Envoy's default validator; not its SPIFFE validator, see
 * flagUnanchoredCas); `openssl verify` needs `-partial_chain` for it.
 */
export function loadCertificateAuthority(certPem: string, keyPem: string, opts: LoadCaOptions): CertificateAuthority {
  const now = opts.now ?? new Date();
  // Counted before parsing: each certificate costs milliseconds, and a CA bundle file given as the
  // CA (1 MiB: about 1,800 certificates) held the event loop for seconds on every computation.
  const count = countPemCertificates(certPem);
  if (count > MAX_CHAIN_CERTIFICATES) {
    throw new CaError(`CA certificate text holds ${count} certificates, more than the ${MAX_CHAIN_CERTIFICATES} a CA chain (the CA, its intermediates, the root) may have: is it a bundle of trusted CAs?`);
  }
  const { ders, error } = splitPemCertificates(certPem);
  if (error === 'no PEM certificate found') throw new CaError(`CA certificate PEM contains no certificate${escapedNewlines(certPem)}`);
  if (error) throw new CaError(`CA certificate cannot be parsed: ${error}${escapedNewlines(certPem)}`);
  const certs = ders.map((der) => {
    const node = new X509Certificate(der);
    return { node, der: node.raw, peculiar: new x509.X509Certificate(node.raw) };
  });
  const ca = certs[0]!;
  const key = parsePrivateKey(keyPem);
  const keyAlgorithm = keyAlgorithmOf(key);

  if (!ca.node.checkPrivateKey(key)) {
    // The key of another certificate of the text: the chain is in the wrong order.
    const owner = certs.findIndex((c, i) => i > 0 && c.node.checkPrivateKey(key));
    if (owner > 0) throw new CaError(`private key does not match the first certificate but chain certificate #${owner}: order must be CA (the key's certificate) first, then intermediates, root last`);
    throw new CaError('private key does not match the CA certificate');
  }
  checkIsCa(ca.peculiar, 'certificate');
  checkKeyAcceptable(ca.node, ca.der, 'CA certificate');
  // Leaves carry an empty subject and the CA's subject as issuer: with an empty one too, verifiers
  // (OpenSSL, BoringSSL) take each leaf for self-issued and refuse it ("self-signed certificate").
  if (certificateParts(ca.der).subject.equals(EMPTY_NAME)) {
    throw new CaError('CA certificate has an empty subject: leaves signed by it (whose subject is empty) would look self-issued to verifiers and never verify; give the CA a subject (RFC 5280 requires one of a CA)');
  }
  const ku = ca.peculiar.getExtension(x509.KeyUsagesExtension);
  // `openssl req -x509` with its default config adds no keyUsage: said as such, with the fix.
  if (!ku) throw new CaError('CA certificate has no keyUsage extension (a CA\'s must include keyCertSign); reissue it with keyUsage=critical,keyCertSign,cRLSign');
  if ((ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CaError('CA certificate key usage does not include keyCertSign; reissue it with keyUsage=critical,keyCertSign,cRLSign');
  }
  const ski = ca.peculiar.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski || ski.keyId.length === 0) {
    throw new CaError('CA certificate has no SubjectKeyIdentifier extension (required: openssl verify -x509_strict rejects chains through a CA without one)');
  }
  checkValidAt(ca.node, ca.peculiar, 'CA certificate', now);
  checkChainExtensions(ca.peculiar, 'CA certificate');

  const selfSigned = isSelfSigned(ca.node, ca.der);
  if (!selfSigned) {
    checkHasAuthorityKeyId(ca.peculiar, 'CA certificate');
    checkSignatureStrength(ca.der, ca.peculiar, 'CA certificate');
  }
  if (selfSigned && !opts.allowSelfSigned) throw new CaError('self-signed certificates are not allowed');
  if (selfSigned && certs.length > 1) throw new CaError('CA certificate is self-signed but is followed by a chain');

  // Each chain certificate must be a CA that signed the one before it (root last), and must let a
  // leaf signed by the CA verify: in its validity period, a path length that allows the CAs below
  // it. A chain that breaks either would have every new SVID refused by its peers.
  for (let i = 1; i < certs.length; i++) {
    const child = certs[i - 1]!;
    const parent = certs[i]!;
    const what = `chain certificate #${i}`;
    // Past a root nothing can be part of the path, yet all of it would go out in every SVID.
    if (i >= 2 && isSelfSigned(child.node, child.der)) throw new CaError(`${what} comes after the self-signed root (chain certificate #${i - 1}): the root must be last`);
    const copyOf = certs.findIndex((c, j) => j < i && c.der.equals(parent.der));
    if (copyOf >= 0) throw new CaError(`${what} is a second copy of certificate #${copyOf}`);
    checkIsCa(parent.peculiar, what);
    // checkIssued also requires keyCertSign: said as such, not as a wrong order.
    const parentKu = parent.peculiar.getExtension(x509.KeyUsagesExtension);
    if (parentKu && (parentKu.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw new CaError(`${what} key usage does not include keyCertSign: leaves signed by the CA would not verify`);
    // Also the root's: openssl verify -x509_strict refuses a chain through any CA without keyUsage.
    if (!parentKu) throw new CaError(`${what} has no keyUsage extension (a CA's must include keyCertSign: openssl verify -x509_strict rejects chains through a CA without one); reissue it with keyUsage=critical,keyCertSign,cRLSign`);
    if (!child.node.checkIssued(parent.node) || !child.node.verify(parent.node.publicKey)) {
      throw new CaError(`${what} did not issue certificate #${i - 1} (order must be CA, intermediates, root)`);
    }
    checkKeyAcceptable(parent.node, parent.der, what);
    checkValidAt(parent.node, parent.peculiar, what, now);
    checkChainExtensions(parent.peculiar, what);
    // openssl verify -x509_strict refuses a chain through an intermediate without one.
    if (!isSelfSigned(parent.node, parent.der)) {
      if (!parent.peculiar.getExtension(x509.SubjectKeyIdentifierExtension)) {
        throw new CaError(`${what} has no SubjectKeyIdentifier extension (required: openssl verify -x509_strict rejects chains through a CA without one)`);
      }
      checkHasAuthorityKeyId(parent.peculiar, what);
      checkSignatureStrength(parent.der, parent.peculiar, what);
    }
    const pathLength = parent.peculiar.getExtension(x509.BasicConstraintsExtension)?.pathLength;
    if (pathLength !== undefined && pathLength < i) {
      throw new CaError(`${what} has path length constraint ${pathLength}, but ${i} CA certificate(s) stand below it: leaves signed by the CA would not verify`);
    }
  }
  // The subject of each CA below a name-constrained one (self-issued ones are exempt, RFC 5280 §6.1.3).
  for (let i = 0; i < certs.length - 1; i++) {
    const { subject, issuer } = certificateParts(certs[i]!.der);
    if (subject.equals(issuer)) continue;
    const above = certs.findIndex((c, j) => j > i && subjectForbidden(c.peculiar, subject));
    if (above >= 0) {
      const name = certs[i]!.node.subject.split('\n').join(', ');
      throw new CaError(`chain certificate #${above} has name constraints that do not permit the subject of ${i === 0 ? 'the CA certificate' : `chain certificate #${i}`} (${name}): leaves signed by the CA would not verify`);
    }
  }
  if (opts.trustDomain !== undefined) {
    const other = otherTrustDomainOf(ca.der, opts.trustDomain);
    if (other !== undefined) throw new CaError(`CA certificate is the CA of trust domain "${other}" (its URI SAN), not of "${opts.trustDomain}"`);
    for (let i = 0; i < certs.length; i++) {
      const refusal = nameConstraintRefusal(certs[i]!.peculiar, opts.trustDomain);
      if (refusal) throw new CaError(`${i === 0 ? 'CA certificate' : `chain certificate #${i}`} ${refusal}: leaves signed by the CA would not verify`);
    }
  }
  // A leaf must not outlive any CA it chains to (an intermediate's root may expire first): the
  // CA's validity is that of its whole chain.
  const chainNotAfter = new Date(Math.min(...certs.map((c) => c.peculiar.notAfter.getTime())));
  const chainNotBefore = new Date(Math.max(...certs.map((c) => c.peculiar.notBefore.getTime())));
  const last = certs[certs.length - 1]!;
  // SPEC §2: proxies are served the chain up to, excluding, the root. A self-signed signing CA is
  // the root itself, so its leaves go out alone.
  const hasRoot = selfSigned || (certs.length > 1 && isSelfSigned(last.node, last.der));
  const chain = hasRoot ? certs.slice(0, -1) : certs;

  return {
    certDer: ca.der,
    chainPem: chain.map((c) => toPem('CERTIFICATE', c.der)).join(''),
    trustPem: toPem('CERTIFICATE', (hasRoot ? last : ca).der),
    anchoredAtRoot: hasRoot,
    key,
    keyAlgorithm,
    notBefore: chainNotBefore,
    notAfter: chainNotAfter,
    selfSigned,
    fingerprint: createHash('sha256').update(ca.der).digest('hex'),
    subjectKeyId: Buffer.from(ski.keyId, 'hex'),
  };
}
