// Messages between bench/run.ts (parent) and bench/loadgen.ts (children) over the fork IPC channel.
// Times are epoch milliseconds from `epochNow()` so parent and children share one clock.

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

export interface LoadgenConfig {
  target: string;
  /** Proxies [from, to) of this generator; proxy i is dataplane `dp-i`. */
  from: number;
  to: number;
  /**
   * `multiplexed`: `channels` HTTP/2 connections opened up front, one stream per proxy asking for
   * both names. `realistic`: as Envoy without ADS — per proxy its own connection (opened in the
   * storm) and one stream per name, with the proxy's token.
   */
  shape: 'multiplexed' | 'realistic';
  channels: number;
  names: string[];
  /** Realistic: file with one bearer token per line, line i for proxy i (absent: no authorization header). */
  tokensFile?: string;
  /** Realistic: source addresses to spread connections over (ephemeral ports are per address pair). */
  localAddresses?: string[];
  /** Realistic: most connections being set up at once by this generator. */
  connectConcurrency?: number;
}

export type Phase = 'storm' | 'trust' | 'rotation' | 'churn';

export type ToLoadgen =
  | { type: 'config'; config: LoadgenConfig }
  /** Open every stream now (storm) or start watching for a change (trust, rotation); answered by
   * `armed` once the baselines are taken, and by a report when every stream is done or at the deadline. */
  | { type: 'arm'; phase: Phase; deadlineMs: number }
  /** Ends the phase now and reports (churn: the parent decides when it is over). */
  | { type: 'end' }
  | { type: 'stop' };

export interface PhaseReport {
  type: 'report';
  phase: Phase;
  /** Per stream: epochNow() when the awaited secret(s) had been received and ACKed; null = never. */
  doneAt: (number | null)[];
  /** Rotation: epochNow() when a response first carried a new certificate (receive time). */
  firstNewAt: (number | null)[];
  /** Responses that carried no identity after the stream had one (a gap a proxy would see). */
  gaps: number;
  /** Responses received during the phase. */
  responses: number;
  /** Responses during the phase whose trust bundle changed (rotation) or whose cert changed (trust). */
  sideChanges: number;
  streamErrors: string[];
  /** CPU time (user + system) this generator used during the phase, to tell a saturated client. */
  cpuMs: number;
  /** Proxies (global index) that received any response during the phase (churn: must be only the changed ones). */
  touched: number[];
  /** Connections that failed to open (realistic storm), after retries. */
  connectErrors: number;
  /** Connections that dropped before their proxy was served and were opened again. */
  reconnects: number;
  /** Short digests of the distinct trust bundles the proxies hold. */
  trustDigests: string[];
}

export type FromLoadgen =
  | { type: 'ready'; channels: number }
  | { type: 'armed'; phase: Phase }
  | PhaseReport
  | { type: 'fatal'; message: string };
