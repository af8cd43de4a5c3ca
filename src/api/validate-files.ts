// `mesh-sds validate FILE…`: one line per problem, or a per-file count of valid resources.
import { X509Certificate } from 'node:crypto';
import { formatResourceError, resourceKey, type MeshIdentity, type Resource } from './types.js';
import { noneValidNow, splitPemCertificates } from './pem.js';
import { loadResourceFile } from './parse.js';
import { DEFAULT_MAX_FILE_SIZE } from './file-text.js';
import { bootstrapBundleCas } from './validate-federation.js';
import { parseSpiffeTemplate, TRUST_DOMAIN_VARIABLES } from './template.js';

/**
 * An expired CA in a MeshTrust is not an error (the bundle's other CAs still count, and an expired
 * CA validates nothing), but it is almost always a mistake: say so, with where it is.
 */
function expiryWarnings(resources: readonly Resource[], now: Date): string[] {
  const out: string[] = [];
  for (const r of resources) {
    if (r.kind === 'ClusterFederatedTrustDomain') {
      const w = bootstrapExpiryWarning(r.spec.trustDomainBundle, now);
      if (w) out.push(`warning: ${r.source ? `${r.source.file} (document ${r.source.document + 1})` : r.name}: spec.trustDomainBundle: ${w}`);
      continue;
    }
    if (r.kind !== 'MeshTrust') continue;
    r.spec.caBundles.forEach((b, i) => {
      splitPemCertificates(b.pem.value).ders.forEach((der, j) => {
        const notAfter = new Date(new X509Certificate(der).validTo);
        if (notAfter.getTime() < now.getTime()) {
          const where = r.source ? `${r.source.file} (document ${r.source.document + 1})` : r.name;
          out.push(`warning: ${where}: spec.caBundles[${i}].${b.spiffeBundle ? 'spiffeBundle' : 'pem'}.value: certificate ${j + 1} expired at ${notAfter.toISOString()}`);
        }
      });
    });
  }
  return out;
}

/**
 * A bootstrap bundle none of whose CAs is valid now can never authenticate the bundle endpoint
 * (https_spiffe) and trusts nobody: federation would fail until it is replaced.
 */
function bootstrapExpiryWarning(bundle: string | undefined, now: Date): string | undefined {
  if (bundle === undefined || bundle.trim() === '') return undefined;
  const { pems, error } = bootstrapBundleCas(bundle);
  if (error || pems.length === 0) return undefined; // reported as an error by validation
  const spans = noneValidNow(pems, now);
  return spans && `no CA of the bootstrap bundle is valid now (valid ${spans.join('; ')}): it cannot authenticate the bundle endpoint; put a current bundle of the trust domain here`;
}

const whereOf = (r: Resource): string => (r.source ? `${r.source.file} (document ${r.source.document + 1})` : r.name);

/**
 * Whether a MeshIdentity issues from `trustDomain`: '' when its trust domain is that literally
 * (after .Mesh), the zone when it is with that `--zone`, undefined when not (or when it depends on
 * proxy labels, which validate cannot know).
 */
function issuesFrom(mi: MeshIdentity, trustDomain: string): string | undefined {
  if (mi.spec.provider.type !== 'Bundled') return undefined; // a Spire domain is the SPIRE server's to federate
  const { parts, error } = parseSpiffeTemplate(mi.spec.spiffeID.trustDomain, TRUST_DOMAIN_VARIABLES);
  if (error || parts.some((p) => p.kind === 'label')) return undefined;
  const escape = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let zoneSeen = false;
  const pattern = parts
    .map((p) => {
      if (p.kind === 'text') return escape(p.text);
      if (p.kind === 'var' && p.name === 'Mesh') return escape(mi.mesh);
      if (zoneSeen) return '\\1';
      zoneSeen = true;
      return '([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)';
    })
    .join('');
  const m = new RegExp(`^${pattern}$`).exec(trustDomain);
  return m ? (m[1] ?? '') : undefined;
}

/**
 * A ClusterFederatedTrustDomain naming a trust domain a MeshIdentity among the files issues from:
 * the server refuses to trust another zone's CAs for its own trust domain, so the federation would
 * trust nothing. Only the identities given here are known (the server's others are not).
 */
function ownTrustDomainWarnings(resources: readonly Resource[]): string[] {
  const identities = resources.filter((r): r is MeshIdentity => r.kind === 'MeshIdentity');
  const out: string[] = [];
  for (const r of resources) {
    if (r.kind !== 'ClusterFederatedTrustDomain') continue;
    for (const mi of identities) {
      const zone = issuesFrom(mi, r.spec.trustDomain);
      if (zone === undefined) continue;
      const who = `MeshIdentity ${mi.mesh}/${mi.name}${mi.source ? ` (${mi.source.file})` : ''}`;
      const fix = zone === '' ? 'give one side a distinct trust domain' : 'give the zones distinct --zone names (or one side a distinct trust domain)';
      out.push(
        `warning: ${whereOf(r)}: spec.trustDomain: ${r.spec.trustDomain} is the trust domain of ${who}${zone === '' ? '' : ` when this server runs with --zone ${zone}`}: the server issues from it and will not trust another zone's CAs for it; ${fix}`,
      );
    }
  }
  return out;
}

/** A check of a parsed resource that this layer cannot make (a CA load, say): a field and why, or undefined. */
export type ResourceCheck = (r: Resource) => Promise<{ path: string; message: string } | undefined>;

export async function validateFiles(
  paths: readonly string[],
  now: Date = new Date(),
  maxBytes = DEFAULT_MAX_FILE_SIZE,
  check?: ResourceCheck,
): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  // The same resource in two files would make a directory store flip between them.
  const firstFile = new Map<string, string>();
  const all: Resource[] = [];
  for (const path of paths) {
    const { resources, errors } = await loadResourceFile(path, maxBytes);
    all.push(...resources);
    for (const r of resources) {
      const key = resourceKey(r);
      const other = firstFile.get(key);
      if (other !== undefined && other !== path) {
        errors.push({
          file: path,
          document: r.source?.document ?? 0,
          path: '',
          message: `duplicate ${r.kind} "${r.name}" in mesh "${r.mesh}" (also defined in ${other})`,
        });
      } else firstFile.set(key, path);
      const problem = await check?.(r);
      if (problem) errors.push({ file: path, document: r.source?.document ?? 0, path: problem.path, message: problem.message });
    }
    if (errors.length > 0) {
      ok = false;
      for (const e of errors) lines.push(formatResourceError(e));
    } else {
      lines.push(`${path}: ${resources.length} resources valid`);
    }
    lines.push(...expiryWarnings(resources, now));
  }
  lines.push(...ownTrustDomainWarnings(all));
  return { ok, lines };
}
