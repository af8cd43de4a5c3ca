// The resource model shared by every layer. Parsed resources are normalised to one shape,
// whichever form (Kubernetes or Universal, YAML or JSON) they were written in.

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
  return `${r.kind}/${r.mesh}/${r.namespace}/${r.name}`;
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

/** Per snapshot map, its resources grouped by kind: one pass however many kinds are asked for. */
const byKindCache = new WeakMap<ReadonlyMap<string, Resource>, Map<ResourceKind, Resource[]>>();

/** The snapshot's resources of one kind, in the snapshot's order. Shared: do not modify. */
export function resourcesOfKind<K extends ResourceKind>(snap: ResourceSnapshot, kind: K): readonly Extract<Resource, { kind: K }>[] {
  let byKind = byKindCache.get(snap.resources);
  if (!byKind) {
    byKind = new Map();
    for (const r of snap.resources.values()) {
      const list = byKind.get(r.kind);
      if (list) list.push(r);
      else byKind.set(r.kind, [r]);
    }
    byKindCache.set(snap.resources, byKind);
  }
  return (byKind.get(kind) ?? []) as unknown as readonly Extract<Resource, { kind: K }>[];
}
