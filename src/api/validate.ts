// One parsed document (Kubernetes or Universal form) → a normalised, validated Resource.
import { RESOURCE_KINDS, type Resource, type ResourceError, type ResourceKind, type SourceRef } from './types.js';
import {
  field,
  isPlainObject,
  Issues,
  labelNameProblem,
  mapKey,
  readName,
  readObject,
  readString,
  readLabelMap,
  readStringMap,
  unknownField,
} from './validate-common.js';
import { validateMeshTrustSpec } from './validate-meshtrust.js';
import { validateMeshIdentitySpec } from './validate-meshidentity.js';
import { inboundTags } from './validate-dataplane.js';
import { decodeBase64Field, kubernetesSecretData } from './validate-secret.js';
import { clusterScopedResource, FEDERATION_API_VERSIONS } from './validate-cluster.js';

export const KUMA_API_VERSION = 'kuma.io/v1alpha1';
export const MESH_LABEL = 'kuma.io/mesh';
/** Kuma puts a Kubernetes resource's namespace in this label; it also carries it in the Universal form. */
export const NAMESPACE_LABEL = 'k8s.kuma.io/namespace';
export const DEFAULT_MESH = 'default';

// Read-only fields that `kumactl get` prints; accepted and ignored so its output can be re-applied.
const UNIVERSAL_SERVER_FIELDS = ['creationTime', 'modificationTime', 'resourceVersion'];
const DATAPLANE_FIELDS = ['networking', 'metrics', 'probes'];

/** Kubernetes form when `apiVersion` or `kind` is present; Universal form when `type` is. */
export function normaliseDocument(doc: unknown, source: SourceRef): { resource?: Resource; errors: ResourceError[] } {
  const issues = new Issues();
  const resource = isPlainObject(doc)
    ? 'apiVersion' in doc || 'kind' in doc
      ? fromKubernetes(doc, issues)
      : 'type' in doc
        ? fromUniversal(doc, issues)
        : (issues.add('', 'document has neither kind (Kubernetes form) nor type (Universal form)'), undefined)
    : (issues.add('', 'document must be an object'), undefined);
  const errors = issues.list.map((i) => ({ file: source.file, document: source.document, path: i.path, message: i.message }));
  if (errors.length > 0 || !resource) return { errors };
  const version = isPlainObject(doc) ? requestedVersion(doc) : undefined;
  resource.source = version === undefined ? source : { ...source, resourceVersion: version };
  return { resource, errors };
}

/** The version a written document was based on (`metadata.resourceVersion` or Universal `resourceVersion`). */
function requestedVersion(doc: Record<string, unknown>): string | undefined {
  const md = doc.metadata;
  const v = isPlainObject(md) && md.resourceVersion !== undefined ? md.resourceVersion : doc.resourceVersion;
  return typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined;
}

function readKind(raw: unknown, path: string, issues: Issues): ResourceKind | undefined {
  if (typeof raw === 'string' && (RESOURCE_KINDS as readonly string[]).includes(raw)) return raw as ResourceKind;
  if (raw === undefined || raw === null || raw === '') issues.add(path, 'must not be empty');
  else issues.add(path, `unknown kind ${JSON.stringify(raw)}, expected one of ${RESOURCE_KINDS.join(', ')}`);
  return undefined;
}

function checkTopLevel(doc: Record<string, unknown>, allowed: readonly string[], issues: Issues): void {
  for (const k of Object.keys(doc)) if (!allowed.includes(k)) issues.add(unknownField('', k), 'unknown field');
}

function readMesh(raw: unknown, path: string, issues: Issues): string | undefined {
  if (raw === undefined || raw === null) return DEFAULT_MESH;
  return readName(raw, path, issues, labelNameProblem);
}

/** Labels without `kuma.io/mesh`: the mesh is its own field of the normalised resource. */
function withoutMeshLabel(labels: Record<string, string> | undefined): Record<string, string> {
  const out = { ...labels };
  delete out[MESH_LABEL];
  return out;
}

function fromKubernetes(doc: Record<string, unknown>, issues: Issues): Resource | undefined {
  const kind = readKind(doc.kind, 'kind', issues);
  if (!kind) return undefined;
  if (kind === 'ClusterFederatedTrustDomain') {
    if (typeof doc.apiVersion !== 'string' || !FEDERATION_API_VERSIONS.includes(doc.apiVersion)) issues.add('apiVersion', `must be one of ${FEDERATION_API_VERSIONS.join(', ')}`);
    checkTopLevel(doc, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], issues);
    if (doc.metadata === undefined || doc.metadata === null) issues.add('metadata', 'must be defined');
    const md = readObject(doc.metadata, 'metadata', issues, 'any') ?? {};
    return clusterScopedResource(kind, { name: md.name, namePath: 'metadata.name', namespace: md.namespace, namespacePath: 'metadata.namespace', labels: md.labels, labelsPath: 'metadata.labels' }, doc.spec, issues);
  }
  const apiVersion = kind === 'Secret' ? 'v1' : KUMA_API_VERSION;
  if (doc.apiVersion !== apiVersion) issues.add('apiVersion', `must be ${apiVersion}`);
  const allowed =
    kind === 'Secret'
      ? ['apiVersion', 'kind', 'metadata', 'type', 'data', 'stringData', 'immutable']
      : kind === 'Dataplane'
        ? ['apiVersion', 'kind', 'metadata', 'mesh', 'spec', 'status']
        : ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
  checkTopLevel(doc, allowed, issues);

  if (doc.metadata === undefined || doc.metadata === null) issues.add('metadata', 'must be defined');
  // Server-populated metadata (uid, resourceVersion, annotations, …) is accepted and ignored.
  const md = readObject(doc.metadata, 'metadata', issues, 'any') ?? {};
  const name = readName(md.name, 'metadata.name', issues);
  let namespace = '';
  if (md.namespace !== undefined && md.namespace !== null) {
    namespace = readName(md.namespace, 'metadata.namespace', issues, labelNameProblem) ?? '';
  }
  const rawLabels = readLabelMap(md.labels, 'metadata.labels', issues);
  readStringMap(md.annotations, 'metadata.annotations', issues);
  const meshRaw = kind === 'Dataplane' && doc.mesh !== undefined ? doc.mesh : rawLabels?.[MESH_LABEL];
  const mesh = readMesh(meshRaw, kind === 'Dataplane' && doc.mesh !== undefined ? 'mesh' : mapKey('metadata.labels', MESH_LABEL), issues);
  // Kuma labels Kubernetes resources with their namespace (templates read `.Namespace` from a
  // Dataplane's label); the Universal form carries the namespace the same way.
  const labels = { ...withoutMeshLabel(rawLabels), ...(namespace ? { [NAMESPACE_LABEL]: namespace } : {}) };
  if (name === undefined || mesh === undefined) return undefined;
  const meta = { name, mesh, namespace, labels };

  switch (kind) {
    case 'MeshTrust':
    case 'MeshIdentity':
      return policyResource(kind, meta, doc.spec, issues);
    case 'Dataplane': {
      const spec = readObject(doc.spec, 'spec', issues, DATAPLANE_FIELDS);
      const tags = inboundTags(spec?.networking, 'spec.networking', issues);
      return { kind, ...meta, labels: { ...tags, ...labels } };
    }
    case 'Secret': {
      if (doc.type !== undefined) readString(doc.type, 'type', issues);
      const data = kubernetesSecretData(doc, issues);
      return data && { kind, ...meta, data };
    }
  }
}

/** MeshTrust and MeshIdentity read the same way in both forms: metadata plus a validated spec. */
function policyResource(
  kind: 'MeshTrust' | 'MeshIdentity',
  meta: { name: string; mesh: string; namespace: string; labels: Record<string, string> },
  rawSpec: unknown,
  issues: Issues,
): Resource | undefined {
  if (kind === 'MeshTrust') {
    const spec = validateMeshTrustSpec(rawSpec, 'spec', issues);
    return spec && { kind, ...meta, spec };
  }
  const spec = validateMeshIdentitySpec(rawSpec, 'spec', issues);
  return spec && { kind, ...meta, spec };
}

function fromUniversal(doc: Record<string, unknown>, issues: Issues): Resource | undefined {
  const kind = readKind(doc.type, 'type', issues);
  if (!kind) return undefined;
  if (kind === 'ClusterFederatedTrustDomain') {
    // A stored normalised resource carries `mesh: ''`.
    if (doc.mesh !== undefined && doc.mesh !== null && doc.mesh !== '') issues.add('mesh', 'must not be set: ClusterFederatedTrustDomain is cluster-scoped (it applies to every mesh)');
    checkTopLevel(doc, ['type', 'name', 'mesh', 'labels', 'spec', 'status', ...UNIVERSAL_SERVER_FIELDS], issues);
    return clusterScopedResource(kind, { name: doc.name, namePath: 'name', labels: doc.labels, labelsPath: 'labels' }, doc.spec, issues);
  }
  const base = ['type', 'name', 'mesh', 'labels', ...UNIVERSAL_SERVER_FIELDS];
  const allowed =
    kind === 'Secret' ? [...base, 'data'] : kind === 'Dataplane' ? [...base, ...DATAPLANE_FIELDS] : [...base, 'spec'];
  checkTopLevel(doc, allowed, issues);

  const name = readName(doc.name, 'name', issues);
  const rawLabels = readLabelMap(doc.labels, 'labels', issues);
  const mesh = readMesh(doc.mesh ?? rawLabels?.[MESH_LABEL], doc.mesh !== undefined ? 'mesh' : mapKey('labels', MESH_LABEL), issues);
  const labels = withoutMeshLabel(rawLabels);
  let namespace = '';
  const ns = labels[NAMESPACE_LABEL];
  if (ns !== undefined) {
    const p = labelNameProblem(ns);
    if (p) issues.add(mapKey('labels', NAMESPACE_LABEL), p);
    else namespace = ns;
  }
  if (name === undefined || mesh === undefined) return undefined;
  const meta = { name, mesh, namespace, labels };

  switch (kind) {
    case 'MeshTrust':
    case 'MeshIdentity':
      return policyResource(kind, meta, doc.spec, issues);
    case 'Dataplane': {
      const tags = inboundTags(doc.networking, field('', 'networking'), issues);
      return { kind, ...meta, labels: { ...tags, ...labels } };
    }
    case 'Secret': {
      const data = decodeBase64Field(doc.data, 'data', issues);
      return data && { kind, ...meta, data };
    }
  }
}
