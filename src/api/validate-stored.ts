// A resource read back from storage (a database row written by any tool, a cache) goes through
// exactly the validation of `mesh-sds validate`: nothing half-checked ever reaches the pipeline.
import { tooDeep } from './parse.js';
import { isPlainObject } from './validate-common.js';
import { NAMESPACE_LABEL, normaliseDocument } from './validate.js';
import { resourceKey, type Resource, type ResourceError, type ResourceMeta, type SourceRef } from './types.js';

/** Fields the normalised form derives from others; the document form never carries them. */
function withoutDerived(spec: unknown): unknown {
  if (!isPlainObject(spec) || !isPlainObject(spec.provider)) return spec;
  const provider: Record<string, unknown> = { ...spec.provider };
  const bundled = provider.bundled;
  if (isPlainObject(bundled) && isPlainObject(bundled.certificateParameters)) {
    const { expiryMs: _expiryMs, ...cp } = bundled.certificateParameters;
    provider.bundled = { ...bundled, certificateParameters: cp };
  }
  const spire = provider.spire;
  if (isPlainObject(spire) && isPlainObject(spire.agent)) {
    const { timeoutMs: _timeoutMs, ...agent } = spire.agent;
    provider.spire = { ...spire, agent };
  }
  return { ...spec, provider };
}

/**
 * The Universal document of a stored normalised resource (the JSON of a `Resource`, Secret `data`
 * as base64), without trusting its shape: whatever is wrong in it is left for validation to name.
 */
export function storedToDocument(stored: unknown): unknown {
  if (!isPlainObject(stored)) return stored;
  // `source` is where it was read from, not content; any other unknown field is kept for validation to name.
  const { kind, namespace, labels, spec, source: _source, ...rest } = stored;
  const doc: Record<string, unknown> = { type: kind, ...rest };
  // Cluster-scoped: its document form names no mesh and no namespace.
  if (kind === 'ClusterFederatedTrustDomain') {
    delete doc.mesh;
    if (labels !== undefined) doc.labels = labels;
  } else if (namespace !== undefined && namespace !== '' && (labels === undefined || labels === null || isPlainObject(labels))) {
    doc.labels = { ...(labels ?? {}), [NAMESPACE_LABEL]: namespace };
  } else if (labels !== undefined) doc.labels = labels; // not a map: validation names it (never dropped silently)
  if (spec !== undefined) doc.spec = kind === 'MeshIdentity' ? withoutDerived(spec) : spec;
  return doc;
}

/**
 * Validates a stored normalised resource the way `validate` validates a file. With `expect`, the
 * resource must also be the one its storage key says it is (a row's kind/mesh/namespace/name).
 * Never throws: any failure, however unexpected, is an error naming `source` and the field.
 */
export function validateStoredResource(
  stored: unknown,
  source: SourceRef,
  expect?: Pick<ResourceMeta, 'kind' | 'mesh' | 'namespace' | 'name'>,
): { resource?: Resource; errors: ResourceError[] } {
  let result: ReturnType<typeof normaliseDocument>;
  try {
    result = normaliseDocument(storedToDocument(stored), source);
  } catch (e) {
    return { errors: [{ file: source.file, document: source.document, path: '', message: `cannot be processed: ${tooDeep((e as Error).message) ?? (e as Error).message}` }] };
  }
  const r = result.resource;
  if (!r || result.errors.length > 0) return { errors: result.errors };
  if (expect && resourceKey(r) !== resourceKey(expect)) {
    return {
      errors: [{ file: source.file, document: source.document, path: '', message: `holds ${resourceKey(r)} but is stored as ${resourceKey(expect)}` }],
    };
  }
  return { resource: r, errors: [] };
}
