// Turns the Secret resources of an SDS response into plain PEM values, checking them the way Envoy
// does before it accepts a secret (parsable certificates, a key that matches the leaf), so a broken
// secret is NACKed instead of being handed to nginx or written to disk.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { countPemCertificates, splitPemCertificates } from '../api/pem.js';
import { MAX_BUNDLE_CERTS, MAX_CHAIN_CERTS } from './check-svid.js';
import { SECRET_TYPE_URL, SPIFFE_VALIDATOR_NAME, SPIFFE_VALIDATOR_TYPE, decodeSecret, fromAny } from '../xds/protos.js';

export type DecodedSecret =
  | { name: string; kind: 'tls_certificate'; certChainPem: string; keyPem: string }
  | { name: string; kind: 'trusted_ca'; pem: string; sanPrefixes?: string[] }
  | { name: string; kind: 'spiffe'; trustDomains: { name: string; pem: string }[] };

/** A secret the client refuses (the reason goes into the NACK's error_detail). */
export class SecretDecodeError extends Error {
  override name = 'SecretDecodeError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && !(v instanceof Uint8Array);

/** envoy.config.core.v3.DataSource: only inline data makes sense to a remote client. */
function dataSourceText(ds: unknown, what: string): string {
  if (!isObj(ds)) throw new SecretDecodeError(`${what}: missing`);
  const bytes = ds['inline_bytes'];
  if (bytes instanceof Uint8Array) return Buffer.from(bytes).toString('utf8');
  if (typeof bytes === 'string') return Buffer.from(bytes, 'base64').toString('utf8');
  if (typeof ds['inline_string'] === 'string') return ds['inline_string'];
  const other = Object.keys(ds).find((k) => k !== 'specifier');
  throw new SecretDecodeError(`${what}: unsupported data source ${other ?? '(empty)'} (only inline_bytes / inline_string)`);
}

/**
 * `max`: parsing costs ~0.3 ms a certificate; a 16 MiB push of thousands must not cost seconds.
 * `shared`: `max` is what remains of the limit all trust domains share, said so in the refusal.
 */
function certificates(pem: string, what: string, max: number, shared = false): X509Certificate[] {
  const tooMany = (count: number): SecretDecodeError => {
    const limit = shared && max < MAX_BUNDLE_CERTS ? `${max} more (${MAX_BUNDLE_CERTS} for all trust domains together)` : `${max}`;
    return new SecretDecodeError(`${what}: carries ${count} certificates; at most ${limit} are accepted`);
  };
  // Counted before splitting, which parses every block it finds.
  const count = countPemCertificates(pem);
  if (count > max) throw tooMany(count);
  const { ders, error } = splitPemCertificates(pem);
  if (error === 'no PEM certificate found') throw new SecretDecodeError(`${what}: no PEM certificate`);
  if (error) throw new SecretDecodeError(`${what}: ${error}`);
  if (ders.length > max) throw tooMany(ders.length);
  return ders.map((der) => new X509Certificate(der));
}

const withNewline = (s: string) => (s.endsWith('\n') ? s : `${s}\n`);

function tlsCertificate(name: string, tc: Obj): DecodedSecret {
  const certChainPem = withNewline(dataSourceText(tc['certificate_chain'], `${name}: certificate_chain`));
  const keyPem = withNewline(dataSourceText(tc['private_key'], `${name}: private_key`));
  const [leaf] = certificates(certChainPem, `${name}: certificate_chain`, MAX_CHAIN_CERTS);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    // The parser's message could quote key bytes; keep it generic.
    throw new SecretDecodeError(`${name}: private_key does not parse`);
  }
  if (!leaf || !leaf.checkPrivateKey(key)) {
    throw new SecretDecodeError(`${name}: private_key does not match the first certificate of certificate_chain`);
  }
  return { name, kind: 'tls_certificate', certChainPem, keyPem };
}

function validationContext(name: string, vc: Obj): DecodedSecret {
  const custom = vc['custom_validator_config'];
  if (isObj(custom)) {
    if (custom['name'] !== SPIFFE_VALIDATOR_NAME) throw new SecretDecodeError(`${name}: unsupported custom validator ${String(custom['name'])}`);
    const any = custom['typed_config'];
    if (!isObj(any) || typeof any['type_url'] !== 'string' || !(any['value'] instanceof Uint8Array)) {
      throw new SecretDecodeError(`${name}: custom_validator_config.typed_config missing`);
    }
    const { typeName, value } = fromAny({ type_url: any['type_url'], value: any['value'] });
    if (typeName !== SPIFFE_VALIDATOR_TYPE) throw new SecretDecodeError(`${name}: typed_config is ${typeName}, expected ${SPIFFE_VALIDATOR_TYPE}`);
    const domains = Array.isArray(value['trust_domains']) ? (value['trust_domains'] as unknown[]) : [];
    let left = MAX_BUNDLE_CERTS; // for all trust domains together
    const trustDomains = domains.map((d, i) => {
      const td = isObj(d) ? d : {};
      const tdName = typeof td['name'] === 'string' ? td['name'] : '';
      if (!tdName) throw new SecretDecodeError(`${name}: trust_domains[${i}].name missing`);
      const pem = withNewline(dataSourceText(td['trust_bundle'], `${name}: trust_domains[${i}] (${tdName}).trust_bundle`));
      left -= certificates(pem, `${name}: trust_domains[${i}] (${tdName}).trust_bundle`, left, true).length;
      return { name: tdName, pem };
    });
    // Envoy refuses a SPIFFE validator without trust domains.
    if (trustDomains.length === 0) throw new SecretDecodeError(`${name}: SPIFFE validator has no trust_domains`);
    return { name, kind: 'spiffe', trustDomains };
  }
  if (vc['trusted_ca'] !== undefined && vc['trusted_ca'] !== null) {
    const pem = withNewline(dataSourceText(vc['trusted_ca'], `${name}: trusted_ca`));
    certificates(pem, `${name}: trusted_ca`, MAX_BUNDLE_CERTS);
    const out: DecodedSecret = { name, kind: 'trusted_ca', pem };
    const sans = Array.isArray(vc['match_typed_subject_alt_names']) ? (vc['match_typed_subject_alt_names'] as unknown[]) : [];
    const prefixes = sans.flatMap((m) => {
      const matcher = isObj(m) && isObj(m['matcher']) ? m['matcher'] : {};
      return typeof matcher['prefix'] === 'string' ? [matcher['prefix']] : [];
    });
    if (prefixes.length > 0) out.sanPrefixes = prefixes;
    return out;
  }
  throw new SecretDecodeError(`${name}: validation_context has neither trusted_ca nor a SPIFFE custom_validator_config`);
}

/**
 * Decodes one resource of a DiscoveryResponse; throws SecretDecodeError when Envoy would reject it.
 * A secret whose name `wanted` refuses is undefined, its content not checked: Envoy hands a watch
 * only the names it asked for, so a secret for another name (broken or not) NACKs nothing.
 */
export function decodeSecretResource(any: { type_url: string; value: Uint8Array }, wanted: (name: string) => boolean = () => true): DecodedSecret | undefined {
  if (any.type_url !== SECRET_TYPE_URL) throw new SecretDecodeError(`unexpected resource type ${any.type_url}`);
  let secret: Obj;
  try {
    secret = decodeSecret(any.value);
  } catch (e) {
    throw new SecretDecodeError(`secret does not decode: ${(e as Error).message}`);
  }
  const name = typeof secret['name'] === 'string' ? secret['name'] : '';
  if (!name) throw new SecretDecodeError('secret without a name');
  if (!wanted(name)) return undefined;
  if (isObj(secret['tls_certificate'])) return tlsCertificate(name, secret['tls_certificate']);
  if (isObj(secret['validation_context'])) return validationContext(name, secret['validation_context']);
  const kind = Object.keys(secret).find((k) => k !== 'name' && k !== 'type') ?? 'nothing';
  throw new SecretDecodeError(`${name}: unsupported secret type ${kind}`);
}
