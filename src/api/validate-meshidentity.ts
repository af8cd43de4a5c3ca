// MeshIdentity spec: selector, SPIFFE ID templates and provider, with Kuma's defaults applied.
import type { BundledProvider, IdentityProvider, MeshIdentitySpec, SecureDataSource, SpireProvider } from './types.js';
import { durationOverflows, parseDuration } from './duration.js';
import {
  field,
  Issues,
  nameProblem,
  readBoolean,
  readEnum,
  readObject,
  readString,
  readLabelMap,
} from './validate-common.js';
import {
  DEFAULT_PATH_TEMPLATE,
  DEFAULT_TRUST_DOMAIN_TEMPLATE,
  parseSpiffeTemplate,
  PATH_VARIABLES,
  templateTextProblem,
  TRUST_DOMAIN_VARIABLES,
} from './template.js';

export const DEFAULT_EXPIRY = '24h';
export const DEFAULT_SPIRE_TIMEOUT = '1s';

export function validateMeshIdentitySpec(raw: unknown, path: string, issues: Issues): MeshIdentitySpec | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined');
    return undefined;
  }
  const spec = readObject(raw, path, issues, ['selector', 'spiffeID', 'provider']);
  if (!spec) return undefined;
  const before = issues.count;
  const selector = validateSelector(spec.selector, field(path, 'selector'), issues);
  const spiffeID = validateSpiffeId(spec.spiffeID, field(path, 'spiffeID'), issues);
  const provider = validateProvider(spec.provider, field(path, 'provider'), issues);
  if (provider?.type === 'Bundled' && parseSpiffeTemplate(spiffeID.trustDomain, TRUST_DOMAIN_VARIABLES).parts.some((p) => p.kind === 'label')) {
    // Its CA, the CA's URI SAN and its MeshTrust are those of one trust domain, known before any proxy.
    issues.add(
      field(field(path, 'spiffeID'), 'trustDomain'),
      'a {{ label }} is not supported with the Bundled provider: one MeshIdentity issues for one trust domain (its CA and its MeshTrust); use one MeshIdentity per trust domain, selecting its dataplanes by that label',
    );
  }
  if (issues.count > before || !provider) return undefined;
  return selector ? { selector, spiffeID, provider } : { spiffeID, provider };
}

function validateSelector(raw: unknown, path: string, issues: Issues): MeshIdentitySpec['selector'] {
  const sel = readObject(raw, path, issues, ['dataplane']);
  if (!sel) return undefined;
  const dpPath = field(path, 'dataplane');
  const dp = readObject(sel.dataplane, dpPath, issues, ['matchLabels']);
  // Absent `dataplane` matches nothing; `dataplane: {}` matches every dataplane of the mesh.
  if (!dp) return {};
  const matchLabels = readLabelMap(dp.matchLabels, field(dpPath, 'matchLabels'), issues) ?? {};
  return { dataplane: { matchLabels } };
}

function validateSpiffeId(raw: unknown, path: string, issues: Issues): MeshIdentitySpec['spiffeID'] {
  const s = readObject(raw, path, issues, ['trustDomain', 'path']);
  const trustDomain = readTemplate(s?.trustDomain, field(path, 'trustDomain'), issues, 'trustDomain');
  const p = readTemplate(s?.path, field(path, 'path'), issues, 'path');
  return { trustDomain: trustDomain ?? DEFAULT_TRUST_DOMAIN_TEMPLATE, path: p ?? DEFAULT_PATH_TEMPLATE };
}

function readTemplate(raw: unknown, path: string, issues: Issues, which: 'trustDomain' | 'path'): string | undefined {
  const t = readString(raw, path, issues);
  if (t === undefined || t === '') return undefined; // empty means default, as in Kuma
  const parsed = parseSpiffeTemplate(t, which === 'trustDomain' ? TRUST_DOMAIN_VARIABLES : PATH_VARIABLES);
  if (parsed.error) {
    issues.add(path, parsed.error);
    return undefined;
  }
  const p = templateTextProblem(parsed.parts, which);
  if (p) issues.add(path, p);
  return t;
}

function validateProvider(raw: unknown, path: string, issues: Issues): IdentityProvider | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined');
    return undefined;
  }
  const p = readObject(raw, path, issues, ['type', 'bundled', 'spire']);
  if (!p) return undefined;
  const type = readEnum(p.type, field(path, 'type'), issues, ['Bundled', 'Spire'] as const);
  if (type === 'Bundled') {
    if (p.spire !== undefined && p.spire !== null) issues.add(field(path, 'spire'), 'must not be defined when type is Bundled');
    const bundled = validateBundled(p.bundled, field(path, 'bundled'), issues);
    return bundled && { type, bundled };
  }
  if (type === 'Spire') {
    if (p.bundled !== undefined && p.bundled !== null) issues.add(field(path, 'bundled'), 'must not be defined when type is Spire');
    const spire = validateSpire(p.spire, field(path, 'spire'), issues);
    return spire && { type, spire };
  }
  return undefined;
}

function validateBundled(raw: unknown, path: string, issues: Issues): BundledProvider | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined when type is Bundled');
    return undefined;
  }
  const b = readObject(raw, path, issues, [
    'meshTrustCreation',
    'insecureAllowSelfSigned',
    'autogenerate',
    'ca',
    'certificateParameters',
  ]);
  if (!b) return undefined;
  const before = issues.count;

  let meshTrustCreation: BundledProvider['meshTrustCreation'] = 'Enabled';
  if (b.meshTrustCreation !== undefined && b.meshTrustCreation !== null) {
    meshTrustCreation =
      readEnum(b.meshTrustCreation, field(path, 'meshTrustCreation'), issues, ['Enabled', 'Disabled'] as const) ?? 'Enabled';
  }
  const insecureAllowSelfSigned = readBoolean(b.insecureAllowSelfSigned, field(path, 'insecureAllowSelfSigned'), issues) ?? false;

  const agPath = field(path, 'autogenerate');
  const ag = readObject(b.autogenerate, agPath, issues, ['enabled']);
  const autogenerate = { enabled: (ag && readBoolean(ag.enabled, field(agPath, 'enabled'), issues)) ?? false };

  const caPath = field(path, 'ca');
  const caRaw = readObject(b.ca, caPath, issues, ['certificate', 'privateKey']);
  let ca: BundledProvider['ca'];
  if (caRaw) {
    if (autogenerate.enabled) issues.add(caPath, 'must not be defined when autogenerate.enabled is true');
    const certificate = readDataSource(caRaw.certificate, field(caPath, 'certificate'), issues);
    const privateKey = readDataSource(caRaw.privateKey, field(caPath, 'privateKey'), issues);
    if (certificate && privateKey) ca = { certificate, privateKey };
  } else if (!autogenerate.enabled && (b.ca === undefined || b.ca === null)) {
    issues.add(path, 'either ca or autogenerate.enabled: true must be defined');
  }

  const cpPath = field(path, 'certificateParameters');
  const cp = readObject(b.certificateParameters, cpPath, issues, ['expiry']);
  const expiry = readDuration(cp?.expiry, field(cpPath, 'expiry'), issues, DEFAULT_EXPIRY, true);
  if (expiry && expiry.ms < MIN_EXPIRY_MS) {
    issues.add(field(cpPath, 'expiry'), `must be at least ${MIN_EXPIRY_MS / 1000}s (a leaf is re-issued at 80 % of its lifetime)`);
  }

  if (issues.count > before || !expiry) return undefined;
  return {
    meshTrustCreation,
    insecureAllowSelfSigned,
    autogenerate,
    ...(ca ? { ca } : {}),
    certificateParameters: { expiry: expiry.text, expiryMs: expiry.ms },
  };
}

function validateSpire(raw: unknown, path: string, issues: Issues): SpireProvider | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined when type is Spire');
    return undefined;
  }
  const s = readObject(raw, path, issues, ['agent']);
  if (!s) return undefined;
  const agentPath = field(path, 'agent');
  const agent = readObject(s.agent, agentPath, issues, ['timeout']);
  const timeout = readDuration(agent?.timeout, field(agentPath, 'timeout'), issues, DEFAULT_SPIRE_TIMEOUT, false);
  return timeout && { agent: { timeout: timeout.text, timeoutMs: timeout.ms } };
}

/** The shortest leaf lifetime accepted (tests rotate 8 s leaves; production uses hours). */
const MIN_EXPIRY_MS = 5000;

/** Go duration string; a negative value is refused, and zero too when `positive`. */
function readDuration(
  raw: unknown,
  path: string,
  issues: Issues,
  dflt: string,
  positive: boolean,
): { text: string; ms: number } | undefined {
  if (raw === undefined || raw === null || raw === '') return { text: dflt, ms: parseDuration(dflt) as number };
  const ms = typeof raw === 'string' ? parseDuration(raw) : undefined;
  if (ms === undefined) {
    issues.add(path, typeof raw === 'string' && durationOverflows(raw) ? 'must be a valid duration of at most 2562047h47m16.854775807s (as in Go)' : 'must be a valid duration');
    return undefined;
  }
  if (ms < 0) {
    issues.add(path, 'must not be negative');
    return undefined;
  }
  if (ms === 0 && positive) {
    issues.add(path, 'must be greater than zero');
    return undefined;
  }
  return { text: raw as string, ms };
}

const SOURCE_TYPES = ['File', 'Secret', 'EnvVar', 'InsecureInline'] as const;
const ENV_VAR_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

const SOURCE_FIELD = { File: 'file', Secret: 'secretRef', EnvVar: 'envVar', InsecureInline: 'insecureInline' } as const;

function readDataSource(raw: unknown, path: string, issues: Issues): SecureDataSource | undefined {
  if (raw === undefined || raw === null) {
    issues.add(path, 'must be defined');
    return undefined;
  }
  const d = readObject(raw, path, issues, ['type', ...Object.values(SOURCE_FIELD)]);
  if (!d) return undefined;
  const type = readEnum(d.type, field(path, 'type'), issues, SOURCE_TYPES);
  if (!type) return undefined;
  const key = SOURCE_FIELD[type];
  for (const other of Object.values(SOURCE_FIELD)) {
    if (other !== key && d[other] !== undefined && d[other] !== null) {
      issues.add(field(path, other), `must not be defined when type is ${type}`);
    }
  }
  const subPath = field(path, key);
  if (d[key] === undefined || d[key] === null) {
    issues.add(subPath, `must be defined when type is ${type}`);
    return undefined;
  }
  const before = issues.count;
  switch (type) {
    case 'File': {
      const f = readObject(d[key], subPath, issues, ['path']);
      const p = f && requireString(f.path, field(subPath, 'path'), issues);
      if (p !== undefined && !p.startsWith('/')) issues.add(field(subPath, 'path'), 'must be absolute');
      return issues.count === before && p !== undefined ? { type, file: { path: p } } : undefined;
    }
    case 'EnvVar': {
      const e = readObject(d[key], subPath, issues, ['name']);
      const name = e && requireString(e.name, field(subPath, 'name'), issues);
      // Kubernetes' rule for environment variable names (a newline in one forged /readyz lines).
      if (name !== undefined && !ENV_VAR_NAME.test(name)) {
        issues.add(field(subPath, 'name'), "must be an environment variable name (letters, digits, '_', '-', '.'; not starting with a digit)");
      }
      return name !== undefined && issues.count === before ? { type, envVar: { name } } : undefined;
    }
    case 'InsecureInline': {
      const v = readObject(d[key], subPath, issues, ['value']);
      const value = v && requireString(v.value, field(subPath, 'value'), issues);
      return value !== undefined && issues.count === before ? { type, insecureInline: { value } } : undefined;
    }
    case 'Secret': {
      const r = readObject(d[key], subPath, issues, ['kind', 'name']);
      if (!r) return undefined;
      readEnum(r.kind, field(subPath, 'kind'), issues, ['Secret'] as const);
      const name = requireString(r.name, field(subPath, 'name'), issues);
      if (name !== undefined) {
        const p = nameProblem(name);
        if (p) issues.add(field(subPath, 'name'), p);
      }
      return name !== undefined && issues.count === before ? { type, secretRef: { kind: 'Secret', name } } : undefined;
    }
  }
}

function requireString(raw: unknown, path: string, issues: Issues): string | undefined {
  if (raw === undefined || raw === null || raw === '') {
    issues.add(path, 'must not be empty');
    return undefined;
  }
  return readString(raw, path, issues);
}
