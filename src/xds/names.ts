// Classifies the SDS resource names Envoy asks for (SPEC §3). A name of no known shape can never
// be served, so the stream fails with INVALID_ARGUMENT instead of waiting for it forever.
import { labelNameProblem, nameProblem } from '../api/validate-common.js';
import { trustDomainProblem } from '../api/template.js';
import { parseSpiffeId, SPIFFE_ID_MAX_BYTES } from '../identity/spiffe-id.js';

export interface IdentityKri {
  mesh: string;
  zone: string;
  namespace: string;
  name: string;
}

export type SecretNameRef =
  | { kind: 'identity'; kri: IdentityKri }
  | { kind: 'default' }
  | { kind: 'svid'; spiffeId: string }
  | { kind: 'trustAll'; name: 'system_trust_bundle' | 'ALL' }
  | { kind: 'rootCa' }
  | { kind: 'trustDomain'; trustDomain: string }
  | { kind: 'invalid'; reason: string };

export type SecretNameKind = SecretNameRef['kind'];

export const DEFAULT_SECRET = 'default';
export const SYSTEM_TRUST_BUNDLE = 'system_trust_bundle';
export const ALL_TRUST_SECRET = 'ALL';
export const ROOTCA_SECRET = 'ROOTCA';

/**
 * No servable secret name is longer: a SPIFFE ID is at most 2048 bytes, a MeshIdentity KRI of
 * resource names (≤253 each) about 1 KB, and valid names are ASCII (one byte per character).
 */
export const MAX_SECRET_NAME_LENGTH = SPIFFE_ID_MAX_BYTES;

/** Secret names that carry a `tls_certificate` (the others carry a `validation_context`). */
export function isCertificateRef(ref: SecretNameRef): ref is Extract<SecretNameRef, { kind: 'identity' | 'default' | 'svid' }> {
  return ref.kind === 'identity' || ref.kind === 'default' || ref.kind === 'svid';
}

/** `kri_mid_<mesh>_<zone>_<namespace>_<name>_`; empty zone/namespace segments stay empty. */
export function formatIdentityKri(kri: IdentityKri): string {
  return `kri_mid_${kri.mesh}_${kri.zone}_${kri.namespace}_${kri.name}_`;
}

// Resource, mesh and zone names are DNS-1123 style: `_` is the KRI separator and never inside one.
const SEGMENT = /^[a-z0-9.-]*$/;

function parseKri(name: string): SecretNameRef {
  const parts = name.split('_');
  // kri, type, mesh, zone, namespace, name, section (empty for a MeshIdentity)
  if (parts.length !== 7) {
    return { kind: 'invalid', reason: `"${name}" is not a KRI of the form kri_mid_<mesh>_<zone>_<namespace>_<name>_` };
  }
  const [, type, mesh = '', zone = '', namespace = '', resName = '', section = ''] = parts;
  if (type !== 'mid') return { kind: 'invalid', reason: `"${name}" is a KRI of type "${type}", only MeshIdentity (mid) KRIs name secrets` };
  if (section !== '') return { kind: 'invalid', reason: `"${name}" has a section name; a MeshIdentity KRI ends with "_"` };
  if (mesh === '') return { kind: 'invalid', reason: `"${name}" has an empty mesh segment` };
  if (resName === '') return { kind: 'invalid', reason: `"${name}" has an empty name segment` };
  for (const seg of [mesh, zone, namespace, resName]) {
    if (!SEGMENT.test(seg)) return { kind: 'invalid', reason: `"${name}" segment "${seg}" is not a valid resource name (lowercase letters, digits, '-', '.')` };
  }
  // Segments no resource can have (a 1,500-character namespace) name nothing that may appear:
  // refused like any impossible name, not held for as long as the stream stays open.
  const problem =
    segmentProblem('mesh', mesh, labelNameProblem) ??
    (zone === '' ? undefined : segmentProblem('zone', zone, nameProblem)) ??
    (namespace === '' ? undefined : segmentProblem('namespace', namespace, labelNameProblem)) ??
    segmentProblem('name', resName, nameProblem);
  if (problem) return { kind: 'invalid', reason: `"${name}" names no MeshIdentity that can exist: ${problem}` };
  return { kind: 'identity', kri: { mesh, zone, namespace, name: resName } };
}

function segmentProblem(what: string, seg: string, check: (s: string) => string | undefined): string | undefined {
  const p = check(seg);
  return p === undefined ? undefined : `its ${what} segment ${p}`;
}

export function classifySecretName(name: string): SecretNameRef {
  switch (name) {
    case DEFAULT_SECRET:
      return { kind: 'default' };
    case SYSTEM_TRUST_BUNDLE:
    case ALL_TRUST_SECRET:
      return { kind: 'trustAll', name };
    case ROOTCA_SECRET:
      return { kind: 'rootCa' };
    case '':
      return { kind: 'invalid', reason: 'empty secret name' };
  }
  // A well-formed KRI of any length was held as one that may appear: a delta stream subscribing
  // to 1,000 of them, 1 MiB each, kept a gigabyte for as long as it stayed open.
  if (name.length > MAX_SECRET_NAME_LENGTH) {
    return { kind: 'invalid', reason: `a name of ${name.length} characters is longer than any secret name can be (${MAX_SECRET_NAME_LENGTH})` };
  }
  if (name.startsWith('kri_')) return parseKri(name);
  if (name.startsWith('spiffe://')) {
    const parsed = parseSpiffeId(name);
    if ('error' in parsed) return { kind: 'invalid', reason: `"${name}" is not a valid SPIFFE ID: ${parsed.error}` };
    // No MeshTrust or MeshIdentity can have a trust domain past 253 characters (SPIFFE allows 255 bytes).
    const td = trustDomainProblem(parsed.trustDomain);
    if (td) return { kind: 'invalid', reason: `"${name}" names a trust domain no mesh can have: it ${td}` };
    return parsed.path === '' ? { kind: 'trustDomain', trustDomain: parsed.trustDomain } : { kind: 'svid', spiffeId: name };
  }
  return {
    kind: 'invalid',
    reason: `unknown secret name "${name}": expected kri_mid_<mesh>_<zone>_<namespace>_<name>_, default, system_trust_bundle, ALL, ROOTCA or a SPIFFE ID`,
  };
}
