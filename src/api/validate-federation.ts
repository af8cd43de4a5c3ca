// ClusterFederatedTrustDomain spec (SPIRE controller manager's shape, SPEC §10): where the remote
// trust domain publishes its bundle, how to authenticate that endpoint, and the bootstrap bundle.
import { X509Certificate } from 'node:crypto';
import type { BundleEndpointProfile, FederationSpec } from './types.js';
import { caKeyProblem, caTrustDomains, hasUnreadableValidity } from './pem.js';
import { readBundleDocument } from './spiffe-bundle.js';
import { field, Issues, readObject, readString } from './validate-common.js';
import { spiffePathProblem, trustDomainProblem } from './template.js';
import { MAX_TRUST_DOMAIN_LENGTH } from './validate-meshtrust.js';

export const BUNDLE_ENDPOINT_PROFILES = ['https_spiffe', 'https_web'] as const;

export function validateFederationSpec(raw: unknown, path: string, issues: Issues): FederationSpec | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined');
    return undefined;
  }
  const spec = readObject(raw, path, issues, ['trustDomain', 'bundleEndpointURL', 'bundleEndpointProfile', 'trustDomainBundle', 'className']);
  if (!spec) return undefined;
  const before = issues.count;

  const tdPath = field(path, 'trustDomain');
  let td: string | undefined;
  const rawTd = spec.trustDomain;
  if (rawTd === undefined || rawTd === null || rawTd === '') issues.add(tdPath, 'must not be empty');
  else if (typeof rawTd !== 'string') issues.add(tdPath, 'must be a string');
  else if (rawTd.length > MAX_TRUST_DOMAIN_LENGTH) issues.add(tdPath, `must not be longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`);
  else {
    const p = trustDomainProblem(rawTd);
    if (p) issues.add(tdPath, p);
    else td = rawTd;
  }

  const urlPath = field(path, 'bundleEndpointURL');
  const url = readString(spec.bundleEndpointURL, urlPath, issues);
  if (url === undefined) {
    if (spec.bundleEndpointURL === undefined || spec.bundleEndpointURL === null) issues.add(urlPath, 'must not be empty');
  } else {
    const p = bundleEndpointUrlProblem(url);
    if (p) issues.add(urlPath, p);
  }

  const profile = readProfile(spec.bundleEndpointProfile, field(path, 'bundleEndpointProfile'), td, issues);

  const bundlePath = field(path, 'trustDomainBundle');
  const bundle = readString(spec.trustDomainBundle, bundlePath, issues);
  if (bundle !== undefined && bundle.trim() !== '') {
    const r = bootstrapBundleCas(bundle);
    if (r.error) issues.add(bundlePath, `bootstrap bundle does not parse: ${r.error}`);
    else {
      // Held to the key policy of a fetched bundle (caKeyProblem): the bootstrap CAs are trusted
      // until the first fetch, and a fetched bundle carrying the same CA would be refused.
      r.pems.forEach((pem, n) => {
        const cert = new X509Certificate(pem);
        const problem = caKeyProblem(cert);
        if (problem) issues.add(bundlePath, `certificate ${n + 1} has ${problem}`);
        // As a fetched bundle (accept.ts): OpenSSL reads such a certificate but not its times, and
        // every reader of a trusted CA's dates (fetch's summary, the debug endpoint) threw on it.
        else if (hasUnreadableValidity(cert)) issues.add(bundlePath, `certificate ${n + 1} has a validity that cannot be read`);
      });
      // Refused as in a MeshTrust or a fetched bundle: it would sign identities of this trust domain.
      if (td !== undefined) {
        r.pems.forEach((pem, n) => {
          const other = caTrustDomains(pem).find((d) => d !== td);
          if (other !== undefined) issues.add(bundlePath, `certificate ${n + 1} is the CA of trust domain "${other}" (its URI SAN), not of "${td}"`);
        });
      }
    }
  } else if (profile?.type === 'https_spiffe') {
    issues.add(bundlePath, 'must be set for the https_spiffe profile (the bundle that authenticates the endpoint the first time)');
  }
  const className = readString(spec.className, field(path, 'className'), issues);

  if (issues.count > before || td === undefined || url === undefined || !profile) return undefined;
  const out: FederationSpec = { trustDomain: td, bundleEndpointURL: url, bundleEndpointProfile: profile };
  if (bundle !== undefined && bundle.trim() !== '') out.trustDomainBundle = bundle;
  if (className) out.className = className;
  return out;
}

export function bundleEndpointUrlProblem(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `must be a valid URL, not ${JSON.stringify(text)}`;
  }
  if (u.protocol !== 'https:') return 'must be an https URL';
  if (u.username || u.password) return 'must not carry credentials';
  if (u.hash) return 'must not have a fragment';
  return undefined;
}

function readProfile(raw: unknown, path: string, td: string | undefined, issues: Issues): BundleEndpointProfile | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined');
    return undefined;
  }
  const p = readObject(raw, path, issues, ['type', 'endpointSPIFFEID']);
  if (!p) return undefined;
  const typePath = field(path, 'type');
  if (typeof p.type !== 'string' || !(BUNDLE_ENDPOINT_PROFILES as readonly string[]).includes(p.type)) {
    issues.add(typePath, `must be one of ${BUNDLE_ENDPOINT_PROFILES.join(', ')}`);
    return undefined;
  }
  const idPath = field(path, 'endpointSPIFFEID');
  if (p.type === 'https_web') {
    if (p.endpointSPIFFEID !== undefined && p.endpointSPIFFEID !== null && p.endpointSPIFFEID !== '') {
      issues.add(idPath, 'must not be set for the https_web profile');
      return undefined;
    }
    return { type: 'https_web' };
  }
  const id = readString(p.endpointSPIFFEID, idPath, issues);
  if (id === undefined || id === '') {
    if (id === '' || p.endpointSPIFFEID === undefined || p.endpointSPIFFEID === null) issues.add(idPath, 'must not be empty for the https_spiffe profile');
    return undefined;
  }
  const problem = spiffeIdProblem(id);
  if (problem) {
    issues.add(idPath, problem);
    return undefined;
  }
  if (td !== undefined && spiffeIdTrustDomain(id) !== td) {
    issues.add(idPath, `must be in trust domain ${td}`);
    return undefined;
  }
  return { type: 'https_spiffe', endpointSPIFFEID: id };
}

export function spiffeIdTrustDomain(id: string): string {
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(0, slash);
}

function spiffeIdProblem(id: string): string | undefined {
  if (!id.startsWith('spiffe://')) return 'must be a SPIFFE ID (spiffe://<trust domain>/<path>)';
  const td = spiffeIdTrustDomain(id);
  const tdProblem = trustDomainProblem(td);
  if (tdProblem) return `trust domain ${tdProblem}`;
  const path = id.slice('spiffe://'.length + td.length);
  if (path === '') return 'must have a path (a workload SPIFFE ID, not the trust domain ID)';
  const pathProblem = spiffePathProblem(path);
  return pathProblem ? `path ${pathProblem}` : undefined;
}

/**
 * The X.509 CAs of a bootstrap bundle: a SPIFFE bundle (JWK Set, the `x5c` of each `x509-svid`
 * key) or concatenated PEM certificates, each a CA; at least one.
 */
export function bootstrapBundleCas(text: string): { pems: string[]; error?: string } {
  try {
    const doc = readBundleDocument(text);
    if (doc.caPems.length === 0) return { pems: [], error: 'no x509-svid key: the bundle carries no CA' };
    return { pems: doc.caPems };
  } catch (e) {
    return { pems: [], error: (e as Error).message };
  }
}
