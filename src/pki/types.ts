import type { KeyObject } from 'node:crypto';

export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

/** A CA able to sign leaves, validated once when it is loaded. */
export interface CertificateAuthority {
  /** The signing CA certificate (DER). */
  readonly certDer: Buffer;
  /** PEM of the signing CA followed by its parents, excluding the self-signed root. */
  readonly chainPem: string;
  /** PEM of every CA certificate the trust bundle should carry (the root, or the CA itself if no root given). */
  readonly trustPem: string;
  /** Whether trustPem is a self-signed root (the CA itself, or the root ending its chain), not a CA given without its root. */
  readonly anchoredAtRoot: boolean;
  readonly key: KeyObject;
  readonly keyAlgorithm: KeyAlgorithm;
  /** The latest start and earliest end of validity over the CA and its chain: no leaf may reach past them. */
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly selfSigned: boolean;
  /** SHA-256 of the CA certificate DER, hex: stable identity of this CA. */
  readonly fingerprint: string;
  /** SubjectKeyIdentifier bytes, copied into each leaf's AuthorityKeyIdentifier. */
  readonly subjectKeyId: Buffer;
}

/** A leaf SVID and its private key. */
export interface IssuedSvid {
  readonly spiffeId: string;
  /** Leaf PEM followed by the CA chain up to (excluding) the root. */
  readonly certChainPem: string;
  /** PKCS#8 PEM. */
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serialHex: string;
  /** Fingerprint of the CA that signed it. */
  readonly caFingerprint: string;
}
