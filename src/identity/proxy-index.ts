import { LayeredMap } from '../api/layered-map.js';
import { resourceKey, type Dataplane, type Resource } from '../api/types.js';
import type { AuthorityView, IdentityState } from './authorities.js';

/** What a new view changed, as far as SVIDs are concerned. */
export interface ViewChanges {
  /** Meshes whose identities changed (added, removed, edited, another CA, readiness). */
  meshes: string[];
  /** Dataplane keys (`mesh.name`) added, removed, or with other labels. */
  dataplanes: string[];
  /** Node ids (`mesh.name`) that more than one stored Dataplane now claims, with the one served. */
  duplicated: { dataplane: string; stored: string[]; served: string }[];
}

/**
 * Of several Dataplanes stored for one node id (a Universal `db-0.team-a` beside the Kubernetes
 * `db-0` of namespace `team-a`, say), the one a proxy gets: the smallest resource key, so every
 * replica and every command choose alike whatever order they read them in.
 */
export function servedDataplane<D extends Dataplane>(candidates: Iterable<D>): D | undefined {
  let best: D | undefined;
  let bestKey = '';
  for (const d of candidates) {
    const k = resourceKey(d);
    if (best === undefined || k < bestKey) [best, bestKey] = [d, k];
  }
  return best;
}

/** The key a proxy's Dataplane is found by: its node id, `<mesh>.<name>`. */
export const dataplaneKeyOf = (p: { mesh: string; name: string }) => `${p.mesh}.${p.name}`;

/**
 * The name a Dataplane is connected as (the node id's part after the mesh): a Kubernetes-form one
 * is `<name>.<namespace>`, as Kuma names it, since pods in two namespaces may share a name (a
 * StatefulSet's `db-0`); a Universal one its name.
 */
export const dataplaneNodeName = (d: Pick<Dataplane, 'name' | 'namespace'>) => (d.namespace ? `${d.name}.${d.namespace}` : d.name);

/** The node id a Dataplane resource answers to. */
export const nodeKeyOfDataplane = (d: Dataplane) => `${d.mesh}.${dataplaneNodeName(d)}`;

/**
 * The short node id `<mesh>.<name>` a Kubernetes-form Dataplane also answers to while it is the only
 * one of that name in its mesh (what this server accepted before namespaces were part of it).
 */
const aliasKeyOfDataplane = (d: Dataplane) => (d.namespace ? `${d.mesh}.${d.name}` : undefined);

/**
 * The Dataplane a node id names among `candidates` (one mesh's): the one whose own node id it is
 * (the smallest resource key if several, see servedDataplane), else the only Kubernetes-form one of
 * that name; undefined when nothing or, ambiguously, several namespaces' Dataplanes answer to it.
 */
export function dataplaneForNode<D extends Dataplane>(candidates: readonly D[], mesh: string, name: string): { dataplane?: D; ambiguous?: D[] } {
  const own = servedDataplane(candidates.filter((d) => d.mesh === mesh && dataplaneNodeName(d) === name));
  if (own) return { dataplane: own };
  const aliased = candidates.filter((d) => d.mesh === mesh && d.namespace !== '' && d.name === name);
  if (aliased.length === 1) return { dataplane: aliased[0] };
  return aliased.length > 1 ? { ambiguous: aliased } : {};
}

/** Why a short node id names no Dataplane although Dataplanes of that name exist in several namespaces. */
export function ambiguousNodeReason(nodeKey: string, dataplanes: Iterable<Dataplane>): string {
  const ids = [...dataplanes].map(nodeKeyOfDataplane).sort();
  return `node id ${nodeKey} is ambiguous: Dataplanes of that name exist in ${ids.length} Kubernetes namespaces; connect as ${ids.join(' or ')}`;
}

/**
 * The index from Dataplane and mesh to the proxies attached for them, and the diff of one view
 * against the last: a change re-evaluates only the proxies it concerns. Diffing costs one pass
 * over the snapshot's map (no parsing, no allocation per unchanged resource).
 */
export class ProxyIndex {
  private readonly byDataplane = new Map<string, Set<string>>();
  private readonly byMesh = new Map<string, Set<string>>();
  private readonly dataplanes = new Map<string, Dataplane>();
  /** Every Dataplane of a node id that more than one stored Dataplane claims, by resource key. */
  private readonly shared = new Map<string, Map<string, Dataplane>>();
  /** Kubernetes-form Dataplanes by their short node id (`<mesh>.<name>`), by resource key. */
  private readonly aliases = new Map<string, Map<string, Dataplane>>();
  private resources?: ReadonlyMap<string, Resource>;
  private meshSignatures = new Map<string, string>();
  /** The identities the signatures were computed from. */
  private identities: AuthorityView['identities'] | undefined;

  add(proxyKey: string, p: { mesh: string; name: string }): void {
    addTo(this.byDataplane, dataplaneKeyOf(p), proxyKey);
    addTo(this.byMesh, p.mesh, proxyKey);
  }

  remove(proxyKey: string, p: { mesh: string; name: string }): void {
    removeFrom(this.byDataplane, dataplaneKeyOf(p), proxyKey);
    removeFrom(this.byMesh, p.mesh, proxyKey);
  }

  proxiesOfDataplane(dataplaneKey: string): Iterable<string> {
    return this.byDataplane.get(dataplaneKey) ?? [];
  }

  proxiesOfMesh(mesh: string): Iterable<string> {
    return this.byMesh.get(mesh) ?? [];
  }

  /** The node ids of the Dataplanes served (one per node id). */
  dataplaneKeys(): IterableIterator<string> {
    return this.dataplanes.keys();
  }

  dataplaneEntries(): IterableIterator<[string, Dataplane]> {
    return this.dataplanes.entries();
  }

  /** The Dataplane served for a node id in full (not a short Kubernetes alias). */
  dataplaneByKey(nodeKey: string): Dataplane | undefined {
    return this.dataplanes.get(nodeKey);
  }

  /** Whether no proxy is attached to this Dataplane, by its node id or by its short Kubernetes one. */
  unattached(dp: Dataplane): boolean {
    const alias = aliasKeyOfDataplane(dp);
    return (this.byDataplane.get(nodeKeyOfDataplane(dp))?.size ?? 0) === 0 && (alias === undefined || (this.byDataplane.get(alias)?.size ?? 0) === 0);
  }

  dataplane(p: { mesh: string; name: string }): Dataplane | undefined {
    const key = dataplaneKeyOf(p);
    const own = this.dataplanes.get(key);
    if (own) return own;
    const aliased = this.aliases.get(key);
    return aliased?.size === 1 ? aliased.values().next().value : undefined;
  }

  /** Why the node id names no Dataplane when several namespaces' Dataplanes answer to it, else undefined. */
  ambiguity(p: { mesh: string; name: string }): string | undefined {
    const key = dataplaneKeyOf(p);
    const aliased = this.aliases.get(key);
    if (!aliased || aliased.size < 2 || this.dataplanes.has(key)) return undefined;
    return ambiguousNodeReason(key, aliased.values());
  }

  /** Takes the view's Dataplanes and identities; returns what changed since the last view. */
  update(view: AuthorityView): ViewChanges {
    const dataplanes: string[] = [];
    const duplicated: ViewChanges['duplicated'] = [];
    const next = view.snapshot.resources;
    const prev = this.resources;
    if (next !== prev) {
      // A store's snapshot made from the last one says which keys changed: no pass over the rest.
      const changed = next instanceof LayeredMap ? next.changedSince(prev) : undefined;
      if (changed) {
        for (const k of changed) this.diffKey(prev?.get(k), next.get(k), dataplanes, duplicated);
      } else {
        for (const [k, r] of next) if (r.kind === 'Dataplane') this.diffKey(prev?.get(k), r, dataplanes, duplicated);
        if (prev) for (const [k, r] of prev) if (r.kind === 'Dataplane' && !next.has(k)) this.diffKey(r, undefined, dataplanes, duplicated);
      }
      this.resources = next;
    }
    // Views made for a Dataplane change share the previous view's identities: no mesh changed.
    if (view.identities === this.identities) return { meshes: [], dataplanes, duplicated };
    this.identities = view.identities;
    const signatures = meshSignatures(view.identities);
    const meshes: string[] = [];
    for (const [mesh, sig] of signatures) if (this.meshSignatures.get(mesh) !== sig) meshes.push(mesh);
    for (const mesh of this.meshSignatures.keys()) if (!signatures.has(mesh)) meshes.push(mesh);
    this.meshSignatures = signatures;
    return { meshes, dataplanes, duplicated };
  }

  /** One key's change, as far as Dataplanes go: a new, removed or relabelled one is reported. */
  private diffKey(old: Resource | undefined, r: Resource | undefined, out: string[], duplicated: ViewChanges['duplicated']): void {
    if (old === r) return;
    this.diffAlias(old?.kind === 'Dataplane' ? old : undefined, r?.kind === 'Dataplane' ? r : undefined, out);
    if (r?.kind === 'Dataplane') {
      const dk = nodeKeyOfDataplane(r);
      const cur = this.dataplanes.get(dk);
      if (!this.shared.has(dk) && (cur === undefined || cur === old || (old === undefined && resourceKey(cur) === resourceKey(r)))) {
        // Stores keep unchanged objects, but a reload may re-create them: only labels matter here.
        if (old?.kind !== 'Dataplane' || !sameLabels(old.labels, r.labels)) out.push(dk);
        this.dataplanes.set(dk, r);
        return;
      }
      // Another stored Dataplane claims the same node id.
      let group = this.shared.get(dk);
      if (!group) this.shared.set(dk, (group = new Map([[resourceKey(cur!), cur!]])));
      if (old?.kind === 'Dataplane' && nodeKeyOfDataplane(old) === dk) group.delete(resourceKey(old));
      group.set(resourceKey(r), r);
      this.elect(dk, group, out);
      if (group.size > 1) duplicated.push({ dataplane: dk, stored: [...group.keys()].sort(), served: resourceKey(this.dataplanes.get(dk)!) });
    } else if (old?.kind === 'Dataplane') {
      const dk = nodeKeyOfDataplane(old);
      const group = this.shared.get(dk);
      if (group) {
        group.delete(resourceKey(old));
        this.elect(dk, group, out);
        if (group.size <= 1) this.shared.delete(dk);
        return;
      }
      if (this.dataplanes.get(dk) === old) this.dataplanes.delete(dk);
      out.push(dk);
    }
  }

  /** Keeps the short node ids of Kubernetes-form Dataplanes; proxies connected by one are re-evaluated when it changes. */
  private diffAlias(old: Dataplane | undefined, r: Dataplane | undefined, out: string[]): void {
    const before = old && aliasKeyOfDataplane(old);
    const after = r && aliasKeyOfDataplane(r);
    if (before === undefined && after === undefined) return;
    if (before !== undefined) {
      const group = this.aliases.get(before);
      group?.delete(resourceKey(old!));
      if (group?.size === 0) this.aliases.delete(before);
    }
    if (after !== undefined) {
      let group = this.aliases.get(after);
      if (!group) this.aliases.set(after, (group = new Map()));
      group.set(resourceKey(r!), r!);
    }
    if (before !== after || !sameLabels(old?.labels, r?.labels)) {
      if (before !== undefined) out.push(before);
      if (after !== undefined && after !== before) out.push(after);
    }
  }

  /** Serves the chosen one of a node id's Dataplanes; its proxies are re-evaluated when that changes. */
  private elect(dk: string, group: ReadonlyMap<string, Dataplane>, out: string[]): void {
    const before = this.dataplanes.get(dk);
    const chosen = servedDataplane(group.values());
    if (chosen) this.dataplanes.set(dk, chosen);
    else this.dataplanes.delete(dk);
    if (chosen !== before) out.push(dk);
  }
}

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

function sameLabels(a: Readonly<Record<string, string>> | undefined, b: Readonly<Record<string, string>> | undefined): boolean {
  if (a === b) return true;
  const ak = Object.keys(a ?? {});
  if (ak.length !== Object.keys(b ?? {}).length) return false;
  for (const k of ak) if (a![k] !== b?.[k]) return false;
  return true;
}

/** Resource objects are immutable and kept by the stores while unchanged: number them by identity. */
const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;
function objectId(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) objectIds.set(o, (id = nextObjectId++));
  return id;
}

/** Per mesh, everything about its identities that can change an SVID. */
function meshSignatures(identities: ReadonlyMap<string, IdentityState>): Map<string, string> {
  const out = new Map<string, string>();
  for (const st of identities.values()) {
    const mesh = st.identity.mesh;
    out.set(mesh, `${out.get(mesh) ?? ''}${st.key}#${objectId(st.identity)}#${st.ca?.fingerprint ?? ''}#${st.ready}\n`);
  }
  return out;
}
