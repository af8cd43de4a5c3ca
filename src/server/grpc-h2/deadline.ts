// The client's deadline, sent as grpc-timeout (gRPC over HTTP/2, "Requests": 1 to 8 ASCII digits
// and a unit). Only calls that carry one get a timer; the callback and its state are shared
// (no closure per call), and the timer is unref'd: it never keeps the process alive by itself.

const TIMEOUT_VALUE = /^(\d{1,8})([HMSmun])$/;
const MS_PER_UNIT: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };
/** setTimeout's longest delay (about 24.8 days; a longer one fires at once): longer deadlines are waited for in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Milliseconds of a grpc-timeout value (rounded up: never before the deadline), or undefined when malformed. */
export function parseGrpcTimeout(value: string): number | undefined {
  const m = TIMEOUT_VALUE.exec(value);
  return m ? Math.ceil(Number(m[1]) * MS_PER_UNIT[m[2]!]!) : undefined;
}

/** What a deadline is armed on: it keeps the timer, and hears when the deadline passes. */
export interface DeadlineHolder {
  deadlineTimer: NodeJS.Timeout | undefined;
  deadlineExceeded(): void;
}

let pending = 0;

/** Deadline timers armed and neither cleared nor fired (tests check that ended calls leave none). */
export function pendingDeadlines(): number {
  return pending;
}

/** Calls `holder.deadlineExceeded()` in `ms` unless disarmed first. */
export function armDeadline(holder: DeadlineHolder, ms: number): void {
  pending++;
  schedule(holder, ms);
}

/** Clears the holder's timer, if it has one. */
export function disarmDeadline(holder: DeadlineHolder): void {
  if (holder.deadlineTimer === undefined) return;
  clearTimeout(holder.deadlineTimer);
  holder.deadlineTimer = undefined;
  pending--;
}

function schedule(holder: DeadlineHolder, ms: number): void {
  const step = Math.min(ms, MAX_DELAY_MS);
  holder.deadlineTimer = setTimeout(onTimer, step, holder, ms - step).unref();
}

function onTimer(holder: DeadlineHolder, remainingMs: number): void {
  if (remainingMs > 0) return schedule(holder, remainingMs);
  holder.deadlineTimer = undefined;
  pending--;
  holder.deadlineExceeded();
}
