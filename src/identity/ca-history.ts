import type { StateStore } from '../store/types.js';

/** One CA an identity has issued with; kept in the trust bundle until its last leaf expires. */
export interface CaHistoryEntry {
  fingerprint: string;
  pem: string;
  /** ISO time after which no leaf signed by this CA is alive; absent for the current CA. */
  retireAfter?: string;
}

/**
 * Records CA rolls per identity in the shared state, so a restart or another replica keeps serving
 * the old CA in the auto-created MeshTrust until every leaf it signed has expired.
 */
export async function recordCurrentCa(
  state: StateStore,
  key: string,
  current: { fingerprint: string; pem: string },
  leafLifetimeMs: number,
  now: Date,
): Promise<CaHistoryEntry[]> {
  const raw = await state.get(key);
  const entries: CaHistoryEntry[] = raw ? (JSON.parse(raw) as CaHistoryEntry[]) : [];
  const horizon = new Date(now.getTime() + leafLifetimeMs).toISOString();
  let changed = false;
  const kept: CaHistoryEntry[] = [];
  for (const e of entries) {
    if (e.fingerprint === current.fingerprint) continue;
    if (!e.retireAfter) {
      // The previous current CA: leaves issued until now live at most one lifetime longer.
      kept.push({ ...e, retireAfter: horizon });
      changed = true;
    } else if (new Date(e.retireAfter).getTime() > now.getTime()) kept.push(e);
    else changed = true;
  }
  const wasCurrent = entries.some((e) => e.fingerprint === current.fingerprint && !e.retireAfter);
  if (!wasCurrent) changed = true;
  const result = [{ fingerprint: current.fingerprint, pem: current.pem }, ...kept];
  if (changed) await state.put(key, JSON.stringify(result));
  return result;
}

/** Earliest time at which an entry retires, to schedule the next recomputation. */
export function nextRetirement(entries: CaHistoryEntry[]): number | undefined {
  const times = entries.flatMap((e) => (e.retireAfter ? [new Date(e.retireAfter).getTime()] : []));
  return times.length ? Math.min(...times) : undefined;
}
