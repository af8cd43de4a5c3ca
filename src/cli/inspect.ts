// `mesh-sds inspect --dataplane MESH.NAME`: which MeshIdentity a dataplane gets and why.
import { printable, quoted } from '../api/quote.js';
import { resourceKey, resourcesOfKind } from '../api/types.js';
import type { AuthorityView } from '../identity/authorities.js';
import type { FederatedTrustInfo } from '../federation/mesh-trusts.js';
import { selectIdentity } from '../identity/match.js';
import { ambiguousNodeReason, dataplaneForNode } from '../identity/proxy-index.js';
import { shortNameTokenProblem } from '../identity/claims.js';
import { computeSpiffeId } from '../identity/spiffe.js';
import { aggregateTrust } from '../trust/aggregate.js';

export interface Inspection {
  dataplane: string;
  found: boolean;
  /** Why the node id names no Dataplane although several namespaces have one of that name. */
  ambiguous?: string;
  /** The node id reaches its Dataplane only as a short name: what `--auth token` says to a token for it. */
  tokenRefusal?: string;
  labels: Record<string, string>;
  identity?: { name: string; kri: string; ready: boolean; reason: string };
  candidates: { name: string; matches: boolean; labels: number; reason: string }[];
  spiffeId?: string;
  problem?: string;
  trustDomains: { trustDomain: string; cas: number; sources: string[]; federation?: FederationOrigin }[];
}

/** Where a federated trust domain's CAs came from. */
export interface FederationOrigin {
  resource: string;
  endpointURL: string;
  bundle: 'endpoint' | 'bootstrap' | 'none';
  sequence?: number;
  lastFetched?: string;
  lastError?: string;
}

function federationOrigin(f: FederatedTrustInfo): FederationOrigin {
  const o: FederationOrigin = { resource: f.resource, endpointURL: f.endpointURL, bundle: f.source };
  if (f.sequence !== undefined) o.sequence = f.sequence;
  if (f.fetchedAt) o.lastFetched = f.fetchedAt.toISOString();
  if (f.lastError) o.lastError = `${f.lastError.reason}: ${f.lastError.message} (at ${f.lastError.at.toISOString()})`;
  return o;
}

export function inspectDataplane(view: AuthorityView & { federation?: readonly FederatedTrustInfo[] }, meshDotName: string, extraLabels: Record<string, string> = {}): Inspection {
  const dot = meshDotName.indexOf('.');
  const mesh = dot > 0 ? meshDotName.slice(0, dot) : 'default';
  const name = dot > 0 ? meshDotName.slice(dot + 1) : meshDotName;
  // The one the server serves for the node id (a Kubernetes-form one is `<name>.<namespace>`).
  const { dataplane: dp, ambiguous } = dataplaneForNode(resourcesOfKind(view.snapshot, 'Dataplane'), mesh, name);
  const labels = { ...(dp?.labels ?? {}), ...extraLabels };
  const match = selectIdentity(
    [...view.identities.values()].map((s) => s.identity),
    { mesh, labels },
  );
  const bundle = aggregateTrust(view.trusts, mesh);
  const tokenRefusal = dp && shortNameTokenProblem({ mesh, name }, dp);
  const out: Inspection = {
    dataplane: `${mesh}.${name}`,
    found: dp !== undefined,
    ...(ambiguous ? { ambiguous: ambiguousNodeReason(`${mesh}.${name}`, ambiguous) } : {}),
    ...(tokenRefusal ? { tokenRefusal } : {}),
    labels,
    candidates: match.candidates.map((c) => ({ name: c.identity.name, matches: c.matches, labels: Math.max(c.specificity, 0), reason: c.reason })),
    trustDomains: bundle.domains.map((d) => {
      const sources = [...new Set(d.cas.flatMap((c) => c.sources))];
      // Federated only where its MeshTrust is what this mesh trusts (a user MeshTrust may win).
      const fed = view.federation?.find((f) => f.trustDomain === d.trustDomain && sources.includes(f.meshTrustName) && !f.overriddenIn[mesh]);
      return fed ? { trustDomain: d.trustDomain, cas: d.cas.length, sources, federation: federationOrigin(fed) } : { trustDomain: d.trustDomain, cas: d.cas.length, sources };
    }),
  };
  if (!dp) out.problem = `no Dataplane ${quoted(name)} in mesh ${quoted(mesh)}`;
  if (match.winner) {
    const st = view.identities.get(resourceKey(match.winner))!;
    const ready = st.conditions.find((c) => c.type === 'Ready');
    out.identity = { name: st.identity.name, kri: st.kri, ready: st.ready, reason: ready?.message ?? '' };
    const id = computeSpiffeId(st.identity, { mesh, labels }, view.zone);
    if (id.ok) out.spiffeId = id.spiffeId;
    else out.problem = id.reason;
  } else out.problem ??= 'no MeshIdentity matches this dataplane: it gets no identity';
  return out;
}

export function formatInspection(i: Inspection): string {
  const lines: string[] = [];
  lines.push(`Dataplane ${i.dataplane}${i.found ? '' : i.ambiguous ? ` (not served: ${i.ambiguous})` : ' (not registered)'}`);
  if (i.tokenRefusal) lines.push(`  served so under --auth none only; --auth token refuses it: ${i.tokenRefusal}`);
  lines.push(`  labels: ${Object.entries(i.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '(none)'}`);
  if (i.identity) {
    lines.push(`MeshIdentity: ${i.identity.name} (${i.identity.kri})${i.identity.ready ? '' : ` NOT READY: ${i.identity.reason}`}`);
  } else lines.push('MeshIdentity: none');
  lines.push('Candidates (precedence order: most matchLabels, then name):');
  for (const c of i.candidates) lines.push(`  ${c.matches ? '✓' : '✗'} ${c.name}: ${c.reason}`);
  if (i.spiffeId) lines.push(`SPIFFE ID: ${i.spiffeId}`);
  if (i.problem) lines.push(`Problem: ${i.problem}`);
  lines.push('Trusted trust domains:');
  for (const d of i.trustDomains) {
    lines.push(`  ${d.trustDomain} (${d.cas} CA${d.cas === 1 ? '' : 's'} from ${d.sources.join(', ')})`);
    const f = d.federation;
    if (f) {
      const seq = f.sequence === undefined ? '' : `, sequence ${f.sequence}`;
      const from = f.bundle === 'endpoint' ? `fetched ${f.lastFetched ?? '?'}${seq}` : `bootstrap bundle${seq}, not fetched yet`;
      lines.push(`    federated by ClusterFederatedTrustDomain ${f.resource} from ${f.endpointURL}: ${from}`);
      if (f.lastError) lines.push(`    last refresh failed: ${f.lastError} (serving the last good bundle)`);
    }
  }
  if (i.trustDomains.length === 0) lines.push('  (none: no MeshTrust in this mesh)');
  // A federation error quotes what a bundle endpoint sent (V8 quotes the text JSON.parse refused):
  // none of its characters may act on the terminal.
  return printable(lines.join('\n'));
}
