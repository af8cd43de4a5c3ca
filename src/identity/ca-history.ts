import { createHash } from 'node:crypto';
import { caTrustDomains, splitPemCertificates } from '../api/pem.js';
import type { StateStore } from '../store/types.js';

/** One CA an identity has issued with; kept in the trust bundle until its last leaf expires. */
export interface CaHistoryEntry {
  fingerprint: string;
  pem: string;
  /** ISO time after which no leaf signed by this CA is alive; absent for the current CA. */
  retireAfter?: string;
  /** The trust domain the CA issued for (absent in records written before it was kept). */
  trustDomain?: string;
  /**
   * The current CA: the leaf lifetime in force. Its retirement is timed by it, not by the lifetime
   * configured when it is rolled (an edit may roll the CA and shorten the expiry at once).
   */
  leafLifetimeMs?: number;
  /** The current CA: when leaves it signed under an earlier, longer lifetime expire (ISO), if later than those of now. */
  leavesUntil?: string;
}

/**
 * Records CA rolls per identity in the shared state, so a restart or another replica keeps serving
 * the old CA in the auto-created MeshTrust until every leaf it signed has expired.
 *
 * `known` is the history this process already holds: an entry the record lacks (the record was
 * lost — state directory removed, schema dropped — or never written) is added back, since leaves
 * the process issued from it may still be alive; it retires like any rolled CA.
 */
export async function recordCurrentCa(
  state: StateStore,
  key: string,
  current: { fingerprint: string; pem: string; trustDomain: string },
  leafLifetimeMs: number,
  now: Date,
  warn?: (problem: string) => void,
  known: readonly CaHistoryEntry[] = [],
): Promise<CaHistoryEntry[]> {
  const parsed = parseCaHistory(await state.get(key), key);
  const { problem } = parsed;
  if (problem) warn?.(problem);
  const recorded = new Set(parsed.entries.map((e) => e.fingerprint));
  const missing = known.filter((e) => !recorded.has(e.fingerprint));
  const entries = [...parsed.entries, ...missing];
  const nowMs = now.getTime();
  let changed = false;
  const kept: CaHistoryEntry[] = [];
  // Leaves of the current CA issued under an earlier (longer) lifetime, or before it was rolled
  // away and came back: they may outlive those issued now.
  let leavesUntilMs = 0;
  /**
   * A CA that stops being current, kept (as `fingerprint`) until its last leaf expires: one
   * lifetime in force until now from now (recorded with it; a record without one, the lifetime
   * configured now), or when leaves of an earlier, longer lifetime expire (leavesUntil).
   */
  const retiring = (e: CaHistoryEntry, fingerprint: string): CaHistoryEntry => {
    const retireMs = Math.max(nowMs + (e.leafLifetimeMs ?? leafLifetimeMs), e.leavesUntil ? Date.parse(e.leavesUntil) : 0);
    return { fingerprint, pem: e.pem, ...(e.trustDomain !== undefined ? { trustDomain: e.trustDomain } : {}), retireAfter: new Date(retireMs).toISOString() };
  };
  for (const e of entries) {
    if (e.fingerprint === current.fingerprint) {
      if (e.retireAfter) leavesUntilMs = Math.max(leavesUntilMs, Date.parse(e.retireAfter));
      else {
        if (e.pem !== current.pem) {
          // The same CA with another trust anchor (its chain changed: intermediates and a root
          // added, a root renewed). Leaves issued until now carry the old chain, which may not reach
          // the new anchor (an intermediate they lack): the old anchor retires like a rolled CA, as
          // an entry of its own.
          kept.push(retiring(e, `${e.fingerprint}~${createHash('sha256').update(e.pem).digest('hex').slice(0, 16)}`));
          changed = true;
        }
        if (e.leavesUntil) leavesUntilMs = Math.max(leavesUntilMs, Date.parse(e.leavesUntil));
        if (e.leafLifetimeMs !== undefined && e.leafLifetimeMs !== leafLifetimeMs) leavesUntilMs = Math.max(leavesUntilMs, nowMs + e.leafLifetimeMs);
      }
      continue;
    }
    if (!e.retireAfter) {
      // The previous current CA, by the lifetime in force until now, not the new one: an edit that
      // rolls the CA and shortens the expiry must not drop the CA while its longer leaves live.
      kept.push(retiring(e, e.fingerprint));
      changed = true;
    } else if (new Date(e.retireAfter).getTime() > nowMs) kept.push(e);
    else changed = true;
  }
  const leavesUntil = leavesUntilMs > nowMs + leafLifetimeMs ? new Date(leavesUntilMs).toISOString() : undefined;
  const wasCurrent = entries.some(
    (e) =>
      e.fingerprint === current.fingerprint &&
      !e.retireAfter &&
      e.pem === current.pem &&
      e.trustDomain === current.trustDomain &&
      e.leafLifetimeMs === leafLifetimeMs &&
      e.leavesUntil === leavesUntil,
  );
  // A damaged record is rewritten from what could be read; one missing CAs this process knows, with them.
  if (!wasCurrent || problem || missing.length > 0) changed = true;
  const result: CaHistoryEntry[] = [
    { fingerprint: current.fingerprint, pem: current.pem, trustDomain: current.trustDomain, leafLifetimeMs, ...(leavesUntil ? { leavesUntil } : {}) },
    ...kept,
  ];
  if (changed) await state.put(key, JSON.stringify(result));
  return result;
}

/** Earliest time at which an entry retires, to schedule the next recomputation. */
export function nextRetirement(entries: CaHistoryEntry[]): number | undefined {
  const times = entries.flatMap((e) => (e.retireAfter ? [new Date(e.retireAfter).getTime()] : []));
  return times.length ? Math.min(...times) : undefined;
}

/**
 * The entries of a stored CA history. A damaged record (not JSON, not a list, entries without a
 * fingerprint and PEM) must not take its identity down: what can be read is used, and the problem
 * is returned, naming the state key, to be logged.
 */
export function parseCaHistory(raw: string | undefined, key: string): { entries: CaHistoryEntry[]; problem?: string } {
  if (!raw) return { entries: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    return { entries: [], problem: `state key ${key} is not valid JSON (${(e as Error).message}); the CA history starts again from the current CA` };
  }
  if (!Array.isArray(parsed)) return { entries: [], problem: `state key ${key} is not a list of CAs; the CA history starts again from the current CA` };
  const entries: CaHistoryEntry[] = [];
  for (const e of parsed as unknown[]) {
    const x = e as Partial<CaHistoryEntry> | null;
    // A PEM that is not a certificate would be published in the MeshTrust and kept when it retires.
    if (!x || typeof x.fingerprint !== 'string' || typeof x.pem !== 'string' || splitPemCertificates(x.pem).error !== undefined) continue;
    if (x.retireAfter !== undefined && (typeof x.retireAfter !== 'string' || Number.isNaN(Date.parse(x.retireAfter)))) continue;
    const entry: CaHistoryEntry = { fingerprint: x.fingerprint, pem: x.pem };
    if (x.retireAfter !== undefined) entry.retireAfter = x.retireAfter;
    if (typeof x.trustDomain === 'string') entry.trustDomain = x.trustDomain;
    if (typeof x.leafLifetimeMs === 'number' && x.leafLifetimeMs > 0 && Number.isFinite(x.leafLifetimeMs)) entry.leafLifetimeMs = x.leafLifetimeMs;
    if (typeof x.leavesUntil === 'string' && !Number.isNaN(Date.parse(x.leavesUntil))) entry.leavesUntil = x.leavesUntil;
    entries.push(entry);
  }
  const dropped = parsed.length - entries.length;
  return dropped > 0 ? { entries, problem: `state key ${key}: ${dropped} of ${parsed.length} entries are not CAs (fingerprint, pem, retireAfter) and were left out` } : { entries };
}

/**
 * The CAs still to be trusted for an identity that cannot load its CA now and has none from
 * before (a restart with a broken CA input): every recorded CA whose leaves may still be alive.
 * The last current CA has no retirement time, since its leaves were issued up to the failure.
 */
export async function trustedFromHistory(state: StateStore, key: string, now: Date, warn?: (problem: string) => void): Promise<CaHistoryEntry[]> {
  const { entries, problem } = parseCaHistory(await state.get(key), key);
  if (problem) warn?.(problem);
  return stillTrusted(entries, now);
}

/** The entries whose leaves may still be alive: not retired yet (the current CA has no retirement time). */
export function stillTrusted(entries: readonly CaHistoryEntry[], now: Date): CaHistoryEntry[] {
  return entries.filter((e) => !e.retireAfter || Date.parse(e.retireAfter) > now.getTime());
}

/** The trust domains the trust anchor of a record written before they were kept names (by PEM). */
const namedDomains = new Map<string, readonly string[]>();
const MAX_REMEMBERED = 256;

function legacyDomains(pem: string): readonly string[] {
  let d = namedDomains.get(pem);
  if (d === undefined) {
    try {
      d = caTrustDomains(pem);
    } catch {
      d = [];
    }
    if (namedDomains.size >= MAX_REMEMBERED) namedDomains.clear();
    namedDomains.set(pem, d);
  }
  return d;
}

/**
 * The entries that may be trusted for `trustDomain`: a CA recorded for another trust domain (the
 * CA of the identity before its trust domain changed) is left out — trusting it here would let it
 * sign this domain's identities. Its own domain keeps it as a retired MeshTrust for as long as its
 * leaves live. A record from before trust domains were kept is judged by its `spiffe://` URI SANs.
 */
export function inTrustDomain(entries: readonly CaHistoryEntry[], trustDomain: string): CaHistoryEntry[] {
  return entries.filter((e) => {
    if (e.trustDomain !== undefined) return e.trustDomain === trustDomain;
    return !legacyDomains(e.pem).some((d) => d !== trustDomain);
  });
}
