// MeshTrust spec: trust domain and CA bundles (every certificate must parse and be a CA).
import type { CaBundle, MeshTrustSpec } from './types.js';
import { X509Certificate } from 'node:crypto';
import { caTrustDomains, hasUnreadableValidity, splitPemCertificates } from './pem.js';
import { decodeSpiffeBundle, SpiffeBundleError } from './spiffe-bundle.js';
import { field, index, Issues, readObject, readString } from './validate-common.js';
import { trustDomainProblem } from './template.js';

export const MAX_TRUST_DOMAIN_LENGTH = 253;

export function validateMeshTrustSpec(raw: unknown, path: string, issues: Issues): MeshTrustSpec | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined');
    return undefined;
  }
  const spec = readObject(raw, path, issues, ['trustDomain', 'caBundles', 'origin']);
  if (!spec) return undefined;
  const before = issues.count;

  const tdPath = field(path, 'trustDomain');
  const rawTd = spec.trustDomain;
  let td: string | undefined;
  if (rawTd === undefined || rawTd === null || rawTd === '') issues.add(tdPath, 'must not be empty');
  else if (typeof rawTd !== 'string') issues.add(tdPath, 'must be a string');
  else if (rawTd.length > MAX_TRUST_DOMAIN_LENGTH) {
    issues.add(tdPath, `must not be longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`);
  } else {
    const p = trustDomainProblem(rawTd);
    if (p) issues.add(tdPath, p);
    else td = rawTd;
  }

  const caBundles = validateCaBundles(spec.caBundles, field(path, 'caBundles'), issues);
  // A CA that names another trust domain would be trusted to sign this one's identities.
  if (td !== undefined) {
    caBundles?.forEach((b, i) => {
      splitPemCertificates(b.pem.value).ders.forEach((der, n) => {
        const other = caTrustDomains(der).find((d) => d !== td);
        if (other !== undefined) issues.add(index(field(path, 'caBundles'), i), `certificate ${n + 1} is the CA of trust domain "${other}" (its URI SAN), not of "${td}"`);
      });
    });
  }

  let origin: MeshTrustSpec['origin'];
  const o = readObject(spec.origin, field(path, 'origin'), issues, ['kri']);
  if (o) {
    const kri = readString(o.kri, field(field(path, 'origin'), 'kri'), issues);
    origin = kri === undefined ? {} : { kri };
  }

  if (issues.count > before || td === undefined || !caBundles) return undefined;
  return origin ? { trustDomain: td, caBundles, origin } : { trustDomain: td, caBundles };
}

function validateCaBundles(raw: unknown, path: string, issues: Issues): CaBundle[] | undefined {
  if (raw === undefined || raw === null || (Array.isArray(raw) && raw.length === 0)) {
    issues.add(path, 'must not be empty');
    return undefined;
  }
  if (!Array.isArray(raw)) {
    issues.add(path, 'must be a list');
    return undefined;
  }
  const out: CaBundle[] = [];
  raw.forEach((item: unknown, i) => {
    const p = index(path, i);
    const b = readObject(item, p, issues, ['type', 'pem', 'spiffeBundle']);
    if (!b) {
      if (item === undefined || item === null) issues.add(p, 'must be an object');
      return;
    }
    if (b.type !== 'Pem' && b.type !== 'SpiffeBundle') {
      issues.add(field(p, 'type'), 'must be one of Pem, SpiffeBundle');
      return;
    }
    const member = b.type === 'Pem' ? 'pem' : 'spiffeBundle';
    const other = b.type === 'Pem' ? 'spiffeBundle' : 'pem';
    if (b[other] !== undefined && b[other] !== null) issues.add(field(p, other), `must not be set when type is ${b.type}`);
    const memberPath = field(p, member);
    const obj = readObject(b[member], memberPath, issues, ['value']);
    if (!obj) {
      if (b[member] === undefined || b[member] === null) issues.add(memberPath, 'must be defined');
      return;
    }
    const valuePath = field(memberPath, 'value');
    const value = readString(obj.value, valuePath, issues);
    if (value === undefined && obj.value !== undefined && obj.value !== null) return;
    if (b.type === 'SpiffeBundle') {
      const read = readSpiffeBundleValue(value ?? '');
      if ('problem' in read) issues.add(valuePath, read.problem);
      else out.push({ type: 'SpiffeBundle', pem: { value: read.pem }, spiffeBundle: { value: value ?? '' } });
      return;
    }
    const problem = pemBundleProblem(value ?? '');
    if (problem) {
      issues.add(valuePath, problem);
      return;
    }
    out.push({ type: 'Pem', pem: { value: value ?? '' } });
  });
  return out.length === raw.length ? out : undefined;
}

/** A SPIFFE bundle must decode (the reason names the JSON path inside it) and hold at least one X.509 CA. */
function readSpiffeBundleValue(value: string): { pem: string } | { problem: string } {
  if (value.trim() === '') return { problem: 'must not be empty' };
  try {
    const b = decodeSpiffeBundle(value);
    if (b.cas.length === 0) return { problem: 'SPIFFE bundle holds no X.509 authority (no key with use "x509-svid")' };
    const unreadable = unreadableValidityProblem(b.cas);
    return unreadable ? { problem: unreadable } : { pem: b.caPems.join('') };
  } catch (e) {
    return { problem: e instanceof SpiffeBundleError ? `SPIFFE bundle: ${e.message}` : `SPIFFE bundle: ${(e as Error).message}` };
  }
}

/** Every PEM block must be an X.509 certificate with basicConstraints CA; names the first one that is not. */
export function pemBundleProblem(value: string): string | undefined {
  const { ders, error } = splitPemCertificates(value);
  if (error) return 'provided certificate has incorrect format';
  const certs = ders.map((der) => new X509Certificate(der));
  const notCa = certs.findIndex((c) => !c.ca);
  // OpenSSL's test (X509_check_ca): a CA:TRUE certificate whose keyUsage lacks keyCertSign is no CA
  // either, and peers refuse chains through it; both halves are named, as either can be missing.
  if (notCa >= 0) return `certificate ${notCa + 1} is not a CA (a CA certificate has basicConstraints CA:TRUE and, when it has a keyUsage, keyCertSign)`;
  return unreadableValidityProblem(certs);
}

function unreadableValidityProblem(certs: readonly X509Certificate[]): string | undefined {
  const i = certs.findIndex(hasUnreadableValidity);
  return i < 0 ? undefined : `certificate ${i + 1} has a validity that cannot be read`;
}
