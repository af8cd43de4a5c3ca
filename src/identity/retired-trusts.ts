// An auto-created MeshTrust whose identity stops publishing it (the MeshIdentity deleted, its trust
// domain changed, its computation failing; not `meshTrustCreation: Disabled`, an explicit request
// that takes effect at once) is kept, with every CA it carried, until the last leaf those CAs may
// have signed has expired. Envoys keep the SVIDs they
// hold (a proxy left without an identity is held, not sent anything), so their peers must keep
// trusting them: dropping the CA at once fails every mTLS handshake with them (SPEC §2, "never
// dropping the old one while leaves signed by it are alive"). Kept in the shared state, so a
// restart or another replica serves it too.
import { createHash } from 'node:crypto';
import { splitPemCertificates } from '../api/pem.js';
import type { MeshTrust } from '../api/types.js';
import type { StateStore } from '../store/types.js';

export const RETIRED_TRUSTS_STATE_KEY = 'ca-retired';

export interface RetiredTrust {
  mesh: string;
  namespace: string;
  /** Name of the MeshIdentity that created it. */
  identity: string;
  trustDomain: string;
  /** The identity's KRI, kept as the MeshTrust's origin. */
  kri: string;
  pems: string[];
  /** ISO time after which no leaf signed by these CAs is alive. */
  retireAfter: string;
}

const sameOrigin = (a: RetiredTrust, b: RetiredTrust) =>
  a.mesh === b.mesh && a.namespace === b.namespace && a.identity === b.identity && a.trustDomain === b.trustDomain;

const alive = (r: RetiredTrust, nowMs: number) => Date.parse(r.retireAfter) > nowMs;

function isRetiredTrust(v: unknown): v is RetiredTrust {
  const r = v as Partial<RetiredTrust> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.mesh === 'string' &&
    typeof r.namespace === 'string' &&
    typeof r.identity === 'string' &&
    typeof r.trustDomain === 'string' &&
    typeof r.kri === 'string' &&
    Array.isArray(r.pems) &&
    // Certificates, each: a damaged PEM went to every consumer, and the bundle endpoint's CA list threw on it.
    r.pems.every((p) => typeof p === 'string' && splitPemCertificates(p).error === undefined) &&
    typeof r.retireAfter === 'string' &&
    !Number.isNaN(Date.parse(r.retireAfter))
  );
}

/** The stored list; entries that are not well formed are left out (and said so by `invalid`). */
export function parseRetired(raw: string | undefined): { entries: RetiredTrust[]; invalid: number } {
  if (raw === undefined) return { entries: [], invalid: 0 };
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    return { entries: [], invalid: 1 };
  }
  if (!Array.isArray(list)) return { entries: [], invalid: 1 };
  const entries = list.filter(isRetiredTrust);
  return { entries, invalid: list.length - entries.length };
}

/**
 * `current` with `additions` merged in (one entry per identity and trust domain: CAs united, the
 * later retirement kept) and expired entries dropped.
 */
export function mergeRetired(current: readonly RetiredTrust[], additions: readonly RetiredTrust[], nowMs: number): RetiredTrust[] {
  const out = current.filter((r) => alive(r, nowMs)).map((r) => ({ ...r, pems: [...r.pems] }));
  for (const add of additions) {
    if (!alive(add, nowMs)) continue;
    const same = out.find((r) => sameOrigin(r, add));
    if (!same) {
      out.push({ ...add, pems: [...add.pems] });
      continue;
    }
    for (const pem of add.pems) if (!same.pems.includes(pem)) same.pems.push(pem);
    if (Date.parse(add.retireAfter) > Date.parse(same.retireAfter)) same.retireAfter = add.retireAfter;
  }
  return out;
}

/** Records `additions` in the shared state (atomically, whatever other replicas write meanwhile). */
export async function recordRetired(state: StateStore, additions: readonly RetiredTrust[], nowMs: number): Promise<void> {
  await state.update(RETIRED_TRUSTS_STATE_KEY, (raw) => JSON.stringify(mergeRetired(parseRetired(raw).entries, additions, nowMs)));
}

/** Earliest retirement among `entries`, to recompute the trusts when it comes. */
export function nextRetiredExpiry(entries: readonly RetiredTrust[]): number | undefined {
  return entries.length ? Math.min(...entries.map((r) => Date.parse(r.retireAfter))) : undefined;
}

/**
 * The MeshTrust a retired entry is served as. Its name is the identity's with a suffix naming the
 * trust domain, so it never takes the name of the identity's live MeshTrust (same identity, new
 * trust domain) or of another retired one.
 */
export function retiredMeshTrust(r: RetiredTrust): MeshTrust {
  const suffix = createHash('sha256').update(r.trustDomain).digest('hex').slice(0, 8);
  return {
    kind: 'MeshTrust',
    name: `${r.identity}-retired-${suffix}`,
    mesh: r.mesh,
    namespace: r.namespace,
    labels: { 'kuma.io/origin': 'mesh-sds' },
    spec: {
      trustDomain: r.trustDomain,
      caBundles: r.pems.map((pem) => ({ type: 'Pem' as const, pem: { value: pem } })),
      origin: { kri: r.kri },
    },
  };
}
