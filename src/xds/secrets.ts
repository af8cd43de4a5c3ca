// Builds the Secret resources mesh-sds serves, each encoded once into an Any whose bytes every
// stream shares. Versions are content hashes, so they are the same on every replica and across
// restarts: a reconnecting Envoy that already has a version is not sent it again (delta).
import { createHash } from 'node:crypto';
import { SECRET_TYPE_URL, SPIFFE_VALIDATOR_NAME, encodeSecret, packSpiffeValidatorConfig } from './protos.js';
import type { EncodedResource } from './resource.js';
import { preEncodeAny, tlsCertificateSecretAny } from './wire.js';

const contentVersion = (content: string) => createHash('sha256').update(content).digest('hex').slice(0, 16);

function encoded(name: string, secret: object, version: string): EncodedResource {
  return { name, version, any: preEncodeAny(SECRET_TYPE_URL, encodeSecret({ name, ...secret })) };
}

/**
 * `tls_certificate`: the SVID chain and its key. The version is the leaf's serial: unique per
 * certificate, and no hashing on the issuance path.
 */
export function tlsCertificateSecret(name: string, certChainPem: string, keyPem: string, serialHex: string): EncodedResource {
  return { name, version: serialHex, any: tlsCertificateSecretAny(SECRET_TYPE_URL, name, certChainPem, keyPem) };
}

export interface DomainPem {
  trustDomain: string;
  pem: string;
}

/** `validation_context` with Envoy's SPIFFE certificate validator: one entry per trust domain. */
export function spiffeValidatorSecret(name: string, domains: readonly DomainPem[]): EncodedResource {
  const typed = packSpiffeValidatorConfig(domains.map((d) => ({ name: d.trustDomain, pem: d.pem })));
  return encoded(
    name,
    { validation_context: { custom_validator_config: { name: SPIFFE_VALIDATOR_NAME, typed_config: typed } } },
    contentVersion(`spiffe|${JSON.stringify(domains)}`),
  );
}

/**
 * `validation_context` with a flat `trusted_ca`; with trust domains given, also SAN matchers
 * (URI prefix `spiffe://td/`) so Envoys without the SPIFFE validator still keep domains apart.
 */
export function trustedCaSecret(name: string, pem: string, sanTrustDomains: readonly string[] = []): EncodedResource {
  const validation_context: Record<string, unknown> = { trusted_ca: { inline_bytes: Buffer.from(pem) } };
  if (sanTrustDomains.length > 0) {
    validation_context.match_typed_subject_alt_names = sanTrustDomains.map((td) => ({
      san_type: 'URI',
      matcher: { prefix: `spiffe://${td}/` },
    }));
  }
  return encoded(name, { validation_context }, contentVersion(`ca|${pem}|${sanTrustDomains.join(',')}`));
}
