// Cluster-scoped kinds (ClusterFederatedTrustDomain): no mesh, no namespace, same in both forms.
import type { ClusterFederatedTrustDomain } from './types.js';
import { mapKey, readName, readLabelMap, type Issues } from './validate-common.js';
import { validateFederationSpec } from './validate-federation.js';
import { MESH_LABEL } from './validate.js';

/** SPIRE's own API group is accepted so its controller-manager manifests apply unchanged. */
export const FEDERATION_API_VERSIONS: readonly string[] = ['spire.spiffe.io/v1alpha1', 'kuma.io/v1alpha1'];

interface MetaInput {
  name: unknown;
  namePath: string;
  namespace?: unknown;
  namespacePath?: string;
  labels: unknown;
  labelsPath: string;
}

const SCOPE = 'ClusterFederatedTrustDomain is cluster-scoped (it applies to every mesh)';

export function clusterScopedResource(
  kind: 'ClusterFederatedTrustDomain',
  m: MetaInput,
  rawSpec: unknown,
  issues: Issues,
): ClusterFederatedTrustDomain | undefined {
  const name = readName(m.name, m.namePath, issues);
  if (m.namespace !== undefined && m.namespace !== null && m.namespace !== '') issues.add(m.namespacePath ?? 'namespace', `must not be set: ${SCOPE}`);
  const labels = readLabelMap(m.labels, m.labelsPath, issues) ?? {};
  if (labels[MESH_LABEL] !== undefined) issues.add(mapKey(m.labelsPath, MESH_LABEL), `must not be set: ${SCOPE}`);
  const spec = validateFederationSpec(rawSpec, 'spec', issues);
  if (name === undefined || !spec) return undefined;
  return { kind, name, mesh: '', namespace: '', labels, spec };
}
