// Federated trust domains as MeshTrusts: a view merge on top of the identity layer's view, so
// every consumer (SPIFFE validator, flat trust, ROOTCA/spiffe://<td> names, export-trust,
// inspect) sees them exactly like any other MeshTrust and changes push like any trust change.
import { createHash } from 'node:crypto';
import { resourcesOfKind, type MeshTrust } from '../api/types.js';
import type { AuthorityView } from '../identity/authorities.js';
import { canonicalCaPems, type FederatedDomain, type FederationState } from './follower.js';
import { describeBundle, type FederationCondition } from './status.js';

/** Where one federated trust domain came from, and where a user MeshTrust overrides it. */
export interface FederatedTrustInfo {
  resource: string;
  kri: string;
  meshTrustName: string;
  trustDomain: string;
  endpointURL: string;
  source: FederatedDomain['source'];
  sequence?: number;
  fetchedAt?: Date;
  lastError?: FederatedDomain['lastError'];
  /** Meshes where a MeshTrust of the same trust domain already exists and wins (mesh → its names). */
  overriddenIn: Record<string, string[]>;
  conditions: FederationCondition[];
}

export type FederatedView = AuthorityView & { federation: readonly FederatedTrustInfo[] };

/** KRI of a cluster-scoped resource: mesh, zone and namespace segments are empty. */
export const federationKri = (name: string): string => `kri_cftd____${name}_`;

/** `federated-<trust domain with every character outside [a-z0-9-] as '-'>`. */
export const federatedMeshTrustName = (trustDomain: string): string => `federated-${trustDomain.replace(/[^a-z0-9-]/g, '-')}`.slice(0, 253).replace(/-+$/, '');

/**
 * The MeshTrust name of each followed trust domain: federatedMeshTrustName, unless that is not
 * unique (`zone.b.test` and `zone-b.test` both give `federated-zone-b-test`, or a MeshTrust of that
 * name is already in the view): then every trust domain of that name gets `-<8 hex of SHA-256 of the
 * trust domain>`. Made only from the inputs, so replicas agree; names without a collision are unchanged.
 */
export function federatedMeshTrustNames(trustDomains: Iterable<string>, taken: ReadonlySet<string>): Map<string, string> {
  const byName = new Map<string, string[]>();
  for (const td of new Set(trustDomains)) {
    const name = federatedMeshTrustName(td);
    byName.set(name, [...(byName.get(name) ?? []), td]);
  }
  const out = new Map<string, string>();
  for (const [name, tds] of byName) {
    for (const td of tds) {
      if (tds.length === 1 && !taken.has(name)) out.set(td, name);
      else out.set(td, `${name.slice(0, 253 - 9).replace(/-+$/, '')}-${createHash('sha256').update(td).digest('hex').slice(0, 8)}`);
    }
  }
  return out;
}

/** Every mesh the resources mention: a federated trust domain is trusted in each of them. */
/** Meshes of a snapshot's Dataplanes, kept per Dataplane list (the same list while no Dataplane changed). */
const dataplaneMeshes = new WeakMap<object, ReadonlySet<string>>();

function meshesOf(view: AuthorityView): string[] {
  const meshes = new Set<string>();
  for (const t of view.trusts) meshes.add(t.mesh);
  for (const st of view.identities.values()) meshes.add(st.identity.mesh);
  const dataplanes = resourcesOfKind(view.snapshot, 'Dataplane');
  let ofDataplanes = dataplaneMeshes.get(dataplanes);
  if (!ofDataplanes) dataplaneMeshes.set(dataplanes, (ofDataplanes = new Set(dataplanes.map((d) => d.mesh))));
  for (const m of ofDataplanes) meshes.add(m);
  return [...meshes].sort();
}

export function withFederatedTrusts(view: AuthorityView, fed: FederationState): FederatedView {
  // Only federated trust domains need the meshes (a pass over every Dataplane).
  const meshes = fed.domains.size > 0 ? meshesOf(view) : [];
  const existing = new Map<string, string[]>(); // `${mesh}|${td}` → MeshTrust names
  for (const t of view.trusts) {
    const k = `${t.mesh}|${t.spec.trustDomain}`;
    existing.set(k, [...(existing.get(k) ?? []), t.name]);
  }
  const trusts: MeshTrust[] = [...view.trusts];
  const federation: FederatedTrustInfo[] = [];
  const issuers = fed.domains.size > 0 ? localIssuers(view) : new Map<string, string[]>();
  const names = federatedMeshTrustNames(
    [...fed.domains.values()].map((d) => d.trustDomain),
    new Set(view.trusts.map((t) => t.name)),
  );
  for (const d of [...fed.domains.values()].sort((a, b) => (a.resource < b.resource ? -1 : 1))) {
    const kri = federationKri(d.resource);
    const name = names.get(d.trustDomain)!;
    const overriddenIn: Record<string, string[]> = {};
    const own = issuers.get(d.trustDomain);
    if (own) {
      // This server issues SVIDs of that trust domain: another zone's CAs trusted for it could sign
      // this server's own SPIFFE IDs (in meshes without their own trust for it), and where the
      // identity's MeshTrust wins the peer would silently not be trusted. Refused everywhere.
      const identities = `MeshIdentity ${own.join(', ')}`;
      const why = `${d.trustDomain} is the trust domain of ${identities} of this server: the CAs of ClusterFederatedTrustDomain "${d.resource}" are trusted for it in no mesh (they could sign this server's own SPIFFE IDs). Give the zones distinct --zone names (the default trust domain is <mesh>.<zone>.mesh.local), or the peer or the identity a distinct trust domain`;
      federation.push(
        trustInfo(d, kri, name, overriddenIn, [
          ...d.conditions.filter((c) => c.type !== 'Ready'),
          { type: 'Ready', status: 'False', reason: 'LocalTrustDomain', message: `trust domain ${d.trustDomain} is issued by this server (${identities}): the peer's bundle is trusted in no mesh` },
          { type: 'MeshTrustCreated', status: 'False', reason: 'LocalTrustDomain', message: why },
        ]),
      );
      continue;
    }
    if (d.bundle && d.bundle.caPems.length > 0) {
      for (const mesh of meshes) {
        const owners = existing.get(`${mesh}|${d.trustDomain}`);
        if (owners) {
          overriddenIn[mesh] = owners;
          continue;
        }
        trusts.push({
          kind: 'MeshTrust',
          name,
          mesh,
          namespace: '',
          labels: { 'kuma.io/origin': 'mesh-sds' },
          // In canonical order: the same CA set always serves the same PEM, whatever order it came in.
          spec: { trustDomain: d.trustDomain, caBundles: [{ type: 'Pem', pem: { value: canonicalCaPems(d.bundle.caPems).join('') } }], origin: { kri } },
        });
      }
    }
    const overridden = Object.entries(overriddenIn);
    const created: FederationCondition =
      !d.bundle
        ? { type: 'MeshTrustCreated', status: 'False', reason: 'NoBundle', message: 'no bundle yet' }
        : overridden.length > 0
          ? {
              type: 'MeshTrustCreated',
              status: overridden.length === meshes.length ? 'False' : 'True',
              reason: 'OverriddenByMeshTrust',
              message: `a MeshTrust of trust domain ${d.trustDomain} already exists and wins in ${overridden.map(([m, n]) => `mesh ${m} (${n.join(', ')})`).join(', ')}`,
            }
          : { type: 'MeshTrustCreated', status: 'True', reason: 'Created', message: `MeshTrust "${name}" in ${meshes.length} mesh(es)` };
    federation.push(
      trustInfo(d, kri, name, overriddenIn, [...d.conditions.map((c) => (c.type === 'Ready' && c.status === 'True' ? { ...c, message: readyMessage(d, meshes, overridden) } : c)), created]),
    );
  }
  // The trusts depend on which federated trust domains are the server's own too (an identity may
  // appear without a MeshTrust of its own: meshTrustCreation Disabled, or the Spire provider).
  const own = [...fed.domains.values()].filter((d) => issuers.has(d.trustDomain)).map((d) => d.trustDomain);
  return { ...view, trusts: sameTrusts(view, fed, [...meshes, '\u0001', ...own], trusts), federation };
}

function trustInfo(d: FederatedDomain, kri: string, meshTrustName: string, overriddenIn: Record<string, string[]>, conditions: FederationCondition[]): FederatedTrustInfo {
  return {
    resource: d.resource,
    kri,
    meshTrustName,
    trustDomain: d.trustDomain,
    endpointURL: d.endpointURL,
    source: d.source,
    ...(d.bundle?.sequence !== undefined ? { sequence: d.bundle.sequence } : {}),
    ...(d.fetchedAt ? { fetchedAt: d.fetchedAt } : {}),
    ...(d.lastError ? { lastError: d.lastError } : {}),
    overriddenIn,
    conditions,
  };
}

/**
 * Trust domains the server's own Bundled MeshIdentities issue from (those not depending on proxy
 * labels), with `mesh/name` of each. A Spire identity's domain is the SPIRE server's: federating
 * its bundle endpoint is how Bundled proxies come to trust SPIRE-issued IDs.
 */
function localIssuers(view: AuthorityView): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const st of view.identities.values()) {
    if (!st.trustDomain || st.identity.spec.provider.type !== 'Bundled') continue;
    out.set(st.trustDomain, [...(out.get(st.trustDomain) ?? []), `${st.identity.mesh}/${st.identity.name}`].sort());
  }
  return out;
}

/** Where a followed bundle is trusted: every mesh, or those where no MeshTrust of its trust domain wins. */
function readyMessage(d: FederatedDomain, meshes: readonly string[], overridden: readonly [string, string[]][]): string {
  const bundle = describeBundle(d);
  if (meshes.length === 0) return `trust domain ${d.trustDomain} is trusted in every mesh (none yet): ${bundle}`;
  if (overridden.length === 0) return `trust domain ${d.trustDomain} is trusted in every mesh (${meshes.length}): ${bundle}`;
  const wins = overridden.map(([m, n]) => `MeshTrust ${n.join(', ')} wins in mesh ${m}`).join('; ');
  const trustedIn = meshes.filter((m) => !overridden.some(([o]) => o === m));
  if (trustedIn.length === 0) return `trust domain ${d.trustDomain} is trusted in no mesh from this bundle: ${wins}: ${bundle}`;
  return `trust domain ${d.trustDomain} is trusted in mesh ${trustedIn.join(', ')}; ${wins}: ${bundle}`;
}

/** The inputs and result of the last merge (views of one server come one after another). */
let lastMerge: { viewTrusts: readonly MeshTrust[]; fed: FederationState; inputs: string; trusts: readonly MeshTrust[] } | undefined;

/**
 * The trusts array of the last view when nothing it was made from changed (a Dataplane change in a
 * mesh already known): consumers skip a view whose trusts are the very same array (the publisher
 * then recomputes no bundle), and without federation that is the view's own array.
 */
function sameTrusts(view: AuthorityView, fed: FederationState, inputs: readonly string[], merged: MeshTrust[]): readonly MeshTrust[] {
  if (merged.length === view.trusts.length) return view.trusts;
  const key = inputs.join('\u0000');
  const last = lastMerge;
  if (last && last.viewTrusts === view.trusts && last.fed === fed && last.inputs === key) return last.trusts;
  lastMerge = { viewTrusts: view.trusts, fed, inputs: key, trusts: merged };
  return merged;
}
