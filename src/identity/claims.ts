// Token claims (labels, workload) and what they mean for a proxy (SPEC §5): with a Dataplane
// resource they are constraints that must equal the Dataplane's; without one they are the proxy's
// labels, and each distinct claim set is a proxy of its own (its own SVID, rotation, debug entry).
import { createHash } from 'node:crypto';
import { WORKLOAD_LABEL } from './template.js';
import { flatKey } from '../api/flat-key.js';

export interface Claims {
  mesh: string;
  name: string;
  workload?: string;
  labels?: Readonly<Record<string, string>>;
}

/** `<mesh>.<name>`: the node id, which is also what a Dataplane resource is found by. */
export const nodeKeyOf = (p: { mesh: string; name: string }) => flatKey(p.mesh, '.', p.name);

/** A Kubernetes Dataplane's `<name>.<namespace>` at its longest: 253 + 1 + 63. */
const MAX_DATAPLANE_NAME = 317;

/**
 * Why a name cannot be a node id's dataplane name (nor a token's), or undefined: printable ASCII
 * without `#` (it separates a node id from its claims hash in proxy keys, so a name holding one
 * could pass for another proxy) or `/`. A gateway without a Dataplane may have a name no resource
 * could (`edge_gw`).
 */
export function dataplaneNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.length > MAX_DATAPLANE_NAME) return `must not be longer than ${MAX_DATAPLANE_NAME} characters`;
  if (!/^[!-~]+$/.test(name)) return 'must be printable ASCII without spaces';
  if (/[#/]/.test(name)) return "must not contain '#' or '/'";
  return undefined;
}

/** Whether the principal carries any claim beyond its node id. */
export function hasClaims(p: Claims): boolean {
  return p.workload !== undefined || (p.labels !== undefined && Object.keys(p.labels).length > 0);
}

/**
 * A canonical hash of the claims: the same labels in any order and the same workload give the
 * same hash; anything else a different one. '' when there are no claims.
 */
export function claimsHash(p: Claims): string {
  if (!hasClaims(p)) return '';
  const labels = Object.entries(p.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = JSON.stringify({ w: p.workload ?? null, l: labels });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/**
 * The proxy a principal is: its node id, plus `#<claims hash>` when its token carries claims. Two
 * streams of one node id with different claims are different proxies and never share an SVID.
 */
export function proxyKeyOf(p: Claims): string {
  const hash = claimsHash(p);
  return hash === '' ? nodeKeyOf(p) : flatKey(p.mesh, '.', p.name, '#', hash);
}

/**
 * Why a claim set contradicts itself (a workload claim and a `kuma.io/workload` label claim that
 * differ: both name the workload, and selection and templates would each believe another), or
 * undefined.
 */
export function claimsContradiction(p: Pick<Claims, 'workload' | 'labels'>): string | undefined {
  const label = p.labels?.[WORKLOAD_LABEL];
  if (p.workload === undefined || label === undefined || label === p.workload) return undefined;
  return `token claims two workloads: workload "${p.workload}" and label "${WORKLOAD_LABEL}"="${label}"`;
}

/**
 * The labels a proxy without a Dataplane has (SPEC §5): its token's labels, and its workload claim
 * as the `kuma.io/workload` label (the label a Dataplane would carry), so selectors see it too.
 */
export function claimLabels(p: Pick<Claims, 'workload' | 'labels'>): Readonly<Record<string, string>> {
  const labels = p.labels ?? {};
  if (p.workload === undefined || labels[WORKLOAD_LABEL] !== undefined) return labels;
  return { ...labels, [WORKLOAD_LABEL]: p.workload };
}

/**
 * The first claim that differs from the Dataplane's, as a sentence safe to send to the peer
 * (labels and workloads are not secret), or undefined when every claim matches.
 */
export function claimMismatch(p: Claims, dataplane: { labels: Readonly<Record<string, string>> }): string | undefined {
  const dpLabels = dataplane.labels;
  for (const [k, v] of Object.entries(p.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    // Own labels only: a claim `constructor` found Object.prototype's function, and the refusal
    // quoted its source text as the Dataplane's value.
    const have = Object.hasOwn(dpLabels, k) ? dpLabels[k] : undefined;
    if (have !== v) {
      return `token claim label "${k}"="${v}" does not match Dataplane ${nodeKeyOf(p)} (${have === undefined ? 'no such label' : `"${have}"`})`;
    }
  }
  if (p.workload !== undefined) {
    const have = dpLabels[WORKLOAD_LABEL];
    if (have !== p.workload) {
      return `token claim workload "${p.workload}" does not match Dataplane ${nodeKeyOf(p)} (${have === undefined ? `no "${WORKLOAD_LABEL}" label` : `"${have}"`})`;
    }
  }
  return undefined;
}

/**
 * Why a token may not be served by a namespaced Dataplane (`<name>.<namespace>`: a Kubernetes one,
 * or a Universal one labelled `k8s.kuma.io/namespace`) that it reaches only through the short node
 * id `<mesh>.<name>`, or undefined. That alias follows whichever namespace holds the name while
 * only one does: a token made for team-a's `db-0` would be served team-b's identity once team-a's
 * is deleted and team-b's created. A token is bound to the Dataplane it names, so it must name the
 * namespace. (`--auth none` keeps the alias: there the node id alone selects the Dataplane.)
 */
export function shortNameTokenProblem(p: Claims, dataplane: { name: string; namespace: string }): string | undefined {
  const { name, namespace } = dataplane;
  if (namespace === '') return undefined;
  // Its own node id (the Dataplane found by `<name>.<namespace>`) is not the alias. Compared in
  // place: this runs on every stream a namespaced Dataplane's proxy opens.
  const n = p.name;
  if (n.length === name.length + 1 + namespace.length && n.startsWith(name) && n.charCodeAt(name.length) === 46 /* . */ && n.endsWith(namespace)) return undefined;
  const full = `${name}.${namespace}`;
  return `token for ${nodeKeyOf(p)} reaches Dataplane ${dataplane.name} of namespace ${dataplane.namespace} only through the short node id, which follows the name to whichever namespace holds it: a token must name a namespaced Dataplane in full (token generate --mesh ${p.mesh} --name ${full}) and Envoy connect as ${p.mesh}.${full}`;
}
