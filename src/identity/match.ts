import type { MeshIdentity } from '../api/types.js';
import { MESH_LABEL } from '../api/validate.js';

export interface DataplaneLabels {
  mesh: string;
  labels: Readonly<Record<string, string>>;
}

export interface CandidateVerdict {
  identity: MeshIdentity;
  matches: boolean;
  /** Number of matchLabels; the precedence key among matching identities. */
  specificity: number;
  reason: string;
}

export interface IdentityMatch {
  winner?: MeshIdentity;
  /** Every MeshIdentity of the mesh, in precedence order, with why it did or did not win. */
  candidates: CandidateVerdict[];
}

function verdict(mi: MeshIdentity, dp: DataplaneLabels): CandidateVerdict {
  const dataplane = mi.spec.selector?.dataplane;
  if (!dataplane) {
    return { identity: mi, matches: false, specificity: -1, reason: 'no selector.dataplane: selects nothing' };
  }
  const entries = Object.entries(dataplane.matchLabels);
  for (const [k, v] of entries) {
    // Kuma labels every mesh-scoped resource with its mesh (the mesh is its own field here).
    const actual = k === MESH_LABEL ? dp.mesh : dp.labels[k];
    if (actual !== v) {
      const why = actual === undefined ? `label "${k}" missing` : `label "${k}" is "${actual}", not "${v}"`;
      return { identity: mi, matches: false, specificity: entries.length, reason: why };
    }
  }
  const reason = entries.length === 0 ? 'empty matchLabels: selects every dataplane of the mesh' : `matches ${entries.length} label(s)`;
  return { identity: mi, matches: true, specificity: entries.length, reason };
}

/** Orders matching identities first, most matchLabels first, then by name (Kuma's precedence). */
function precedence(a: CandidateVerdict, b: CandidateVerdict): number {
  if (a.matches !== b.matches) return a.matches ? -1 : 1;
  if (a.specificity !== b.specificity) return b.specificity - a.specificity;
  const an = a.identity.name;
  const bn = b.identity.name;
  return an < bn ? -1 : an > bn ? 1 : a.identity.namespace < b.identity.namespace ? -1 : 1;
}

/**
 * A mesh's identities in the order precedence sorts them among those that match alike (most
 * matchLabels first, then by name): sorted once, a dataplane's candidates are then a stable split.
 */
export function precedenceOrder(identities: Iterable<MeshIdentity>): MeshIdentity[] {
  const keyed = [...identities].map((mi) => ({ identity: mi, matches: true, specificity: mi.spec.selector?.dataplane ? Object.keys(mi.spec.selector.dataplane.matchLabels).length : -1, reason: '' }));
  return keyed.sort(precedence).map((c) => c.identity);
}

/**
 * Picks the MeshIdentity for a dataplane: of all identities of its mesh whose selector matches,
 * the one with most matchLabels wins; ties go to the lexicographically smallest name. `ordered`:
 * `identities` are one mesh's, in precedenceOrder already (no sort per dataplane: a change
 * re-evaluates every proxy of the mesh, and sorting 1,000 identities for each of 4,000 proxies took
 * 1.2 s). Either way the candidates are that order split stably: the matching ones first.
 */
export function selectIdentity(identities: Iterable<MeshIdentity>, dp: DataplaneLabels, ordered = false): IdentityMatch {
  const inOrder = ordered ? identities : precedenceOrder([...identities].filter((mi) => mi.mesh === dp.mesh));
  const matching: CandidateVerdict[] = [];
  const rest: CandidateVerdict[] = [];
  for (const mi of inOrder) {
    const v = verdict(mi, dp);
    (v.matches ? matching : rest).push(v);
  }
  const candidates = matching.concat(rest);
  const first = candidates[0];
  const winner = first?.matches ? first.identity : undefined;
  for (const c of candidates.slice(1)) {
    if (c.matches && winner) c.reason += `; lost to ${winner.name} (${c.specificity < candidates[0]!.specificity ? 'fewer labels' : 'name order'})`;
  }
  return { winner, candidates };
}
