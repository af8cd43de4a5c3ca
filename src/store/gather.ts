// How long a store gathers changes before reading them, shared by the directory and Postgres stores.

/**
 * While changes keep coming (a read started less than BUSY_WINDOW_MS ago) they are gathered for
 * BUSY_GATHER_MS: each read costs a pass (a query or file reads), a snapshot, a view and a push, so
 * churn of 20 changes a second cost a third less CPU read in twos (bench `--only churn`: directory
 * 7.3/6.9 → 4.4/4.5 % of a core, Postgres two replicas 9.7/9.3 → 6.2/5.5 %), for ~70 ms more latency.
 */
export const BUSY_GATHER_MS = 100;
const BUSY_WINDOW_MS = 1000;

/** `quietMs` for a lone change, `busyMs` while the last read (at `lastReadAt`, performance.now()) is recent. */
export function gatherMs(lastReadAt: number, quietMs: number, busyMs = BUSY_GATHER_MS): number {
  return performance.now() - lastReadAt < BUSY_WINDOW_MS ? busyMs : quietMs;
}
