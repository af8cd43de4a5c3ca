// The resource model shared by every layer. Parsed resources are normalised to one shape,
// whichever form (Kubernetes or Universal, YAML or JSON) they were written in.
import { LayeredMap } from './layered-map.js';
import { flatKey } from './flat-key.js';

export type ResourceKind = 'MeshTrust' | 'MeshIdentity' | 'Dataplane' | 'Secret' | 'ClusterFederatedTrustDomain';
export const RESOURCE_KINDS: readonly ResourceKind[] = ['MeshTrust', 'MeshIdentity', 'Dataplane', 'Secret', 'ClusterFederatedTrustDomain'];

/** Where a resource came from, so every error can name the file and the document. */
export interface SourceRef {
  file: string;
  /** Zero-based index of the YAML document inside the file. */
  document: number;
  /**
   * Written input only: the `metadata.resourceVersion` / `resourceVersion` the writer based this
   * document on, a precondition of `apply` (see WriteOptions in store/types).
   */
  resourceVersion?: string;
}

export interface ResourceMeta {
  kind: ResourceKind;
  name: string;
  /** From `mesh` (Universal) or the `kuma.io/mesh` label (Kubernetes); `default` when absent. */
  mesh: string;
  /** Kubernetes namespace; empty for the Universal form. Part of the KRI. */
  namespace: string;
  labels: Readonly<Record<string, string>>;
  source?: SourceRef;
}

export type SecureDataSource =
  | { type: 'File'; file: { path: string } }
  | { type: 'EnvVar'; envVar: { name: string } }
  | { type: 'InsecureInline'; insecureInline: { value: string } }
  | { type: 'Secret'; secretRef: { kind: 'Secret'; name: string } };

/**
 * `Pem` (Kuma): concatenated PEM certificates. `SpiffeBundle`: a SPIFFE bundle (JWK Set), e.g.
 * from `export-trust --format spiffe-bundle`; validation decodes it into `pem.value`, so every
 * consumer reads `pem.value` whatever the type.
 */
export interface CaBundle {
  type: 'Pem' | 'SpiffeBundle';
  pem: { value: string };
  /** `SpiffeBundle` only: the document as written (what serialisation gives back). */
  spiffeBundle?: { value: string };
}

export interface MeshTrustSpec {
  trustDomain: string;
  caBundles: CaBundle[];
  origin?: { kri?: string };
}

export interface BundledProvider {
  meshTrustCreation: 'Enabled' | 'Disabled';
  insecureAllowSelfSigned: boolean;
  autogenerate: { enabled: boolean };
  ca?: { certificate: SecureDataSource; privateKey: SecureDataSource };
  certificateParameters: { expiry: string; expiryMs: number };
}

export interface SpireProvider {
  agent: { timeout: string; timeoutMs: number };
}

export type IdentityProvider =
  | { type: 'Bundled'; bundled: BundledProvider }
  | { type: 'Spire'; spire: SpireProvider };

export interface MeshIdentitySpec {
  /** Absent selector or absent `dataplane` matches nothing (Kuma semantics). */
  selector?: { dataplane?: { matchLabels: Record<string, string> } };
  /** Templates with defaults applied. */
  spiffeID: { trustDomain: string; path: string };
  provider: IdentityProvider;
}

export interface MeshTrust extends ResourceMeta {
  kind: 'MeshTrust';
  spec: MeshTrustSpec;
}

export interface MeshIdentity extends ResourceMeta {
  kind: 'MeshIdentity';
  spec: MeshIdentitySpec;
}

export interface Dataplane extends ResourceMeta {
  kind: 'Dataplane';
}

export interface SecretResource extends ResourceMeta {
  kind: 'Secret';
  /** Decoded secret bytes (Universal `data` base64, Kubernetes `data.value`/`stringData.value`). */
  data: Buffer;
}

export type BundleEndpointProfile = { type: 'https_spiffe'; endpointSPIFFEID: string } | { type: 'https_web' };

/** SPIRE controller manager's ClusterFederatedTrustDomain spec (SPEC §10). */
export interface FederationSpec {
  trustDomain: string;
  bundleEndpointURL: string;
  bundleEndpointProfile: BundleEndpointProfile;
  /** Bootstrap bundle (SPIFFE bundle JWKS or PEM), as written; required for https_spiffe. */
  trustDomainBundle?: string;
  /** SPIRE's controller class; accepted so SPIRE manifests apply unchanged, otherwise ignored. */
  className?: string;
}

/** Cluster-scoped: `mesh` and `namespace` are always empty; its trust flows into every mesh. */
export interface ClusterFederatedTrustDomain extends ResourceMeta {
  kind: 'ClusterFederatedTrustDomain';
  spec: FederationSpec;
}

export type Resource = MeshTrust | MeshIdentity | Dataplane | SecretResource | ClusterFederatedTrustDomain;

/** One validation problem, always naming where it is and what is wrong. */
export interface ResourceError {
  file: string;
  document: number;
  /** Field path such as `spec.caBundles[0].pem.value`; empty for document-level problems. */
  path: string;
  message: string;
  /** A write refused because the resource changed since its writer read it (optimistic concurrency). */
  conflict?: boolean;
}

export function formatResourceError(e: ResourceError): string {
  const where = `${e.file} (document ${e.document + 1})`;
  return e.path ? `${where}: ${e.path}: ${e.message}` : `${where}: ${e.message}`;
}

/** Identity of a resource inside the store: kind, mesh, namespace and name. */
export function resourceKey(r: Pick<ResourceMeta, 'kind' | 'mesh' | 'namespace' | 'name'>): string {
  return flatKey(r.kind, '/', r.mesh, '/', r.namespace, '/', r.name);
}

/** Kuma Resource Identifier of a MeshIdentity; empty segments stay empty. */
export function meshIdentityKri(mi: Pick<ResourceMeta, 'mesh' | 'namespace' | 'name'>, zone: string): string {
  return `kri_mid_${mi.mesh}_${zone}_${mi.namespace}_${mi.name}_`;
}

/** An immutable view of every valid resource, published by a store on each change. */
export interface ResourceSnapshot {
  /** Monotonic per store instance. */
  readonly revision: number;
  readonly resources: ReadonlyMap<string, Resource>;
  /** Problems of the current inputs; the last good version of each affected resource stays in `resources`. */
  readonly errors: readonly ResourceError[];
  /** resourceKey → opaque version of the stored resource (optimistic concurrency), when the store has them. */
  readonly versions?: ReadonlyMap<string, string>;
}

/** A snapshot map's resources by kind (each kind a LayeredMap). */
interface KindGroups {
  readonly mapId: number;
  readonly kinds: ReadonlyMap<string, LayeredMap<Resource>>;
}

const kindGroups = new WeakMap<ReadonlyMap<string, Resource>, KindGroups>();
const NO_RESOURCES: readonly Resource[] = Object.freeze([]);
/** The grouping of the last LayeredMap seen: the next snapshot (made from it) is grouped from its changed keys. */
let lastGroups: KindGroups | undefined;

/** Keys begin with the kind (resourceKey). */
const kindOfKey = (key: string) => key.slice(0, key.indexOf('/'));

function groupsOf(resources: ReadonlyMap<string, Resource>): KindGroups {
  const cached = kindGroups.get(resources);
  if (cached) return cached;
  const layered = resources instanceof LayeredMap ? resources : undefined;
  const changed = layered && lastGroups ? layered.changedSinceId(lastGroups.mapId) : undefined;
  let kinds: Map<string, LayeredMap<Resource>>;
  if (changed && lastGroups) {
    // 20 Dataplane changes a second with 10,000 of them: regroup the changed keys, share the rest.
    kinds = new Map(lastGroups.kinds);
    const byKind = new Map<string, Map<string, Resource | undefined>>();
    for (const key of changed) {
      const kind = kindOfKey(key);
      let m = byKind.get(kind);
      if (!m) byKind.set(kind, (m = new Map()));
      m.set(key, resources.get(key));
    }
    for (const [kind, m] of byKind) kinds.set(kind, (kinds.get(kind) ?? LayeredMap.from<Resource>([])).with(m));
  } else {
    const plain = new Map<string, Map<string, Resource>>();
    resources.forEach((r, key) => {
      const m = plain.get(r.kind);
      if (m) m.set(key, r);
      else plain.set(r.kind, new Map([[key, r]]));
    });
    kinds = new Map();
    for (const [kind, m] of plain) kinds.set(kind, LayeredMap.from(m));
  }
  const groups: KindGroups = { mapId: layered?.id ?? -1, kinds };
  kindGroups.set(resources, groups);
  if (layered) lastGroups = groups;
  return groups;
}

/** The list handed out for a kind's map: a kind unchanged between snapshots keeps its map, and so its list. */
const kindLists = new WeakMap<LayeredMap<Resource>, readonly Resource[]>();

/**
 * The snapshot's resources of one kind. Shared: do not modify. While a kind is unchanged from one
 * snapshot to the next (a store's snapshots are made from the last one), the same array is
 * returned, so a consumer can tell "nothing of this kind changed" by identity.
 */
export function resourcesOfKind<K extends ResourceKind>(snap: ResourceSnapshot, kind: K): readonly Extract<Resource, { kind: K }>[] {
  const map = groupsOf(snap.resources).kinds.get(kind);
  let list = map ? kindLists.get(map) : NO_RESOURCES;
  if (!list) {
    const out: Resource[] = [];
    map!.forEach((r) => out.push(r));
    kindLists.set(map!, (list = out));
  }
  return list as unknown as readonly Extract<Resource, { kind: K }>[];
}

/**
 * Whether a resource's text carries key material: a Secret's data, or a MeshIdentity's inline CA
 * private key. Such text is written owner-only and shown redacted.
 */
export function holdsKeyMaterial(r: Resource): boolean {
  if (r.kind === 'Secret') return true;
  if (r.kind !== 'MeshIdentity' || r.spec.provider.type !== 'Bundled') return false;
  const ca = r.spec.provider.bundled.ca;
  return ca?.privateKey.type === 'InsecureInline';
}
