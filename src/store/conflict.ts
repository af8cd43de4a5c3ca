// How both stores name a resource and word a write conflict, so `apply` reads the same on either.
import { isScalar, parseDocument } from 'yaml';
import { quoted } from '../api/quote.js';
import type { Resource, ResourceError } from '../api/types.js';

export function describeResource(r: Pick<Resource, 'kind' | 'mesh' | 'namespace' | 'name'>): string {
  // Cluster-scoped resources (ClusterFederatedTrustDomain) have no mesh. Names may come from the
  // command line (`delete`): quoted, so no character of one acts on the terminal.
  return `${r.kind} ${quoted(r.name)}${r.mesh ? ` of mesh ${quoted(r.mesh)}` : ''}${r.namespace ? ` (namespace ${quoted(r.namespace)})` : ''}`;
}

/** `was`/`now`: what the writer read and what it found, already worded ("version 3 when read", "now absent"). */
export function conflictError(file: string, r: Resource, was: string, now: string): ResourceError {
  return {
    file,
    document: r.source?.document ?? 0,
    path: '',
    message: `conflict: ${describeResource(r)} was changed by another writer (${was}, ${now}); read it again and re-apply, or use --force`,
    conflict: true,
  };
}

/**
 * `version` (the document's resourceVersion as compared) as the document wrote it: an unquoted
 * number such as 1e3 is compared by its value (1000), but a conflict should quote the writer's text.
 */
export function writtenVersion(docText: string, version: string): string {
  try {
    const d = parseDocument(docText);
    const node = d.getIn(['metadata', 'resourceVersion'], true) ?? d.getIn(['resourceVersion'], true);
    return isScalar(node) && typeof node.value === 'number' && String(node.value) === version && node.source ? node.source : version;
  } catch {
    return version;
  }
}
