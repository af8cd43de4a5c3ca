// Human and JSON summaries of fetched secrets: identities, validity, issuers and trust domains.
// Built from certificates only — a summary never carries the private key.
import { X509Certificate } from 'node:crypto';
import { isoTime, splitPemCertificates, uriSans } from '../api/pem.js';
import { printableLine } from '../api/quote.js';
import type { DecodedSecret } from './decode.js';

export interface CertSummary {
  subject: string;
  issuer: string;
  /** Hex, upper case, as openssl prints it. */
  serial: string;
  notBefore: string;
  notAfter: string;
  /** The spiffe:// URI SAN, if any. */
  spiffeId?: string;
  uriSans: string[];
  isCa: boolean;
  sha256: string;
}

export type SecretSummary =
  | {
      name: string;
      type: 'tls_certificate';
      spiffeId?: string;
      serial: string;
      notBefore: string;
      notAfter: string;
      issuer: string;
      keyAlgorithm: string;
      /** The leaf first, then the intermediates sent with it. */
      chain: CertSummary[];
    }
  | { name: string; type: 'trusted_ca'; cas: CertSummary[]; sanPrefixes?: string[] }
  | { name: string; type: 'spiffe_validator'; trustDomains: { name: string; cas: CertSummary[] }[] };

const dn = (s: string | undefined) => (s ?? '').split('\n').filter(Boolean).join(', ');

export function parseCertificates(pem: string): X509Certificate[] {
  return splitPemCertificates(pem).ders.map((der) => new X509Certificate(der));
}

export function summarizeCertificate(c: X509Certificate): CertSummary {
  // Printable: node writes a URI holding a comma, quote or non-ASCII character as a JSON string, which
  // uriSans decodes; what it decodes to is shown on a terminal.
  const uris = uriSans(c.subjectAltName ?? '').map(printableLine);
  const out: CertSummary = {
    subject: dn(c.subject),
    issuer: dn(c.issuer),
    serial: c.serialNumber.toUpperCase(),
    // A server may send a CA whose times OpenSSL cannot read: said, not thrown on.
    notBefore: isoTime(c.validFrom),
    notAfter: isoTime(c.validTo),
    uriSans: uris,
    isCa: c.ca,
    sha256: c.fingerprint256,
  };
  const spiffe = uris.find((u) => u.startsWith('spiffe://'));
  if (spiffe) out.spiffeId = spiffe;
  return out;
}

function keyAlgorithm(c: X509Certificate): string {
  const k = c.publicKey;
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'ec') return `EC ${d.namedCurve ?? ''}`.trim();
  if (k.asymmetricKeyType === 'rsa') return `RSA ${d.modulusLength ?? ''}`.trim();
  return k.asymmetricKeyType ?? 'unknown';
}

export function summarizeSecret(s: DecodedSecret): SecretSummary {
  switch (s.kind) {
    case 'tls_certificate': {
      const certs = parseCertificates(s.certChainPem);
      const chain = certs.map(summarizeCertificate);
      const leaf = chain[0]!;
      const out: SecretSummary = {
        name: s.name,
        type: 'tls_certificate',
        serial: leaf.serial,
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        issuer: leaf.issuer,
        keyAlgorithm: keyAlgorithm(certs[0]!),
        chain,
      };
      if (leaf.spiffeId) out.spiffeId = leaf.spiffeId;
      return out;
    }
    case 'trusted_ca': {
      const out: SecretSummary = { name: s.name, type: 'trusted_ca', cas: parseCertificates(s.pem).map(summarizeCertificate) };
      if (s.sanPrefixes) out.sanPrefixes = [...s.sanPrefixes];
      return out;
    }
    case 'spiffe':
      return {
        name: s.name,
        type: 'spiffe_validator',
        trustDomains: s.trustDomains.map((td) => ({ name: td.name, cas: parseCertificates(td.pem).map(summarizeCertificate) })),
      };
  }
}

const caLine = (c: CertSummary) => `${c.subject || '(empty subject)'}  [not after ${c.notAfter}, sha256 ${c.sha256}]`;

export function formatSummary(s: SecretSummary): string {
  const lines = [`secret ${JSON.stringify(s.name)} (${s.type})`];
  const row = (k: string, v: string) => lines.push(`  ${`${k}:`.padEnd(15)}${v}`);
  switch (s.type) {
    case 'tls_certificate':
      row('spiffe id', s.spiffeId ?? '(none)');
      row('serial', s.serial);
      row('not before', s.notBefore);
      row('not after', s.notAfter);
      row('issuer', s.issuer || '(empty)');
      row('key', `${s.keyAlgorithm} (private key present, not shown)`);
      row('chain', `${s.chain.length} certificate${s.chain.length === 1 ? '' : 's'}`);
      for (const c of s.chain.slice(1)) lines.push(`    ${caLine(c)}`);
      break;
    case 'trusted_ca':
      row('CAs', String(s.cas.length));
      for (const c of s.cas) lines.push(`    ${caLine(c)}`);
      if (s.sanPrefixes) row('SAN prefixes', s.sanPrefixes.join(', '));
      break;
    case 'spiffe_validator':
      row('trust domains', s.trustDomains.map((t) => t.name).join(', '));
      for (const td of s.trustDomains) {
        lines.push(`    ${td.name}: ${td.cas.length} CA${td.cas.length === 1 ? '' : 's'}`);
        for (const c of td.cas) lines.push(`      ${caLine(c)}`);
      }
      break;
  }
  return lines.join('\n');
}
