// SIGTERM drain (SPEC §7): streams are ended one connection at a time, at times spread over the
// drain period, each connection told GOAWAY first, so its Envoy opens its next stream on a new
// connection (to another replica) instead of all of this replica's Envoys reconnecting at once.
import type { Http2Session } from 'node:http2';
import type { Logger } from './logger.js';

export interface DrainableStream {
  /** The HTTP/2 connection the stream runs on, when the transport exposes it. */
  readonly connection: Http2Session | undefined;
  readonly info: { readonly peer: string };
  /** Ends the stream with UNAVAILABLE (the proxy retries, on a new connection after GOAWAY). */
  unavailable(reason: string): void;
}

export const DRAIN_REASON = 'mesh-sds is shutting down (draining); reconnect to another replica';

/**
 * `n` offsets in [0, periodMs), one in each of n equal slices at a random point within it: spread
 * evenly (no burst) yet not in lock step across replicas. Sorted ascending.
 */
export function spreadOffsets(n: number, periodMs: number, random: () => number = Math.random): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(((i + random()) / n) * periodMs);
  return out;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

export interface DrainOptions {
  periodMs: number;
  log: Logger;
  random?: () => number;
}

export interface DrainHandle {
  /** Resolves when every connection known at the start has been ended (by periodMs at the latest). */
  readonly done: Promise<void>;
  /** Ends what is left now (a second signal). */
  finishNow(): void;
  /** A stream opened while draining: GOAWAY its connection and end it at once. */
  refuse(stream: DrainableStream): void;
}

/** Tells a connection to go away (its client opens its next stream elsewhere); a closed one is left alone. */
export function goaway(session: Http2Session | undefined): void {
  if (!session || session.destroyed || session.closed) return;
  try {
    session.goaway();
  } catch {
    // Already going away or destroyed: nothing to tell.
  }
}

/** Groups the open streams by connection and ends each group at its slot of the drain period. */
export function drainStreams(streams: Iterable<DrainableStream>, opts: DrainOptions): DrainHandle {
  const random = opts.random ?? Math.random;
  const groups = new Map<object | string, DrainableStream[]>();
  for (const s of streams) {
    const key = s.connection ?? s.info.peer;
    const g = groups.get(key);
    if (g) g.push(s);
    else groups.set(key, [s]);
  }
  const order = shuffle([...groups.values()], random);
  const offsets = spreadOffsets(order.length, opts.periodMs, random);
  const started = Date.now();
  opts.log.info({ connections: order.length, streams: order.reduce((n, g) => n + g.length, 0), drainMs: opts.periodMs }, 'draining: streams end spread over the drain period');

  const endGroup = (g: DrainableStream[]) => {
    goaway(g[0]?.connection);
    for (const s of g) s.unavailable(DRAIN_REASON);
  };
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const tick = () => {
    const elapsed = Date.now() - started;
    while (next < order.length && offsets[next]! <= elapsed) endGroup(order[next++]!);
    if (next >= order.length) return resolve();
    timer = setTimeout(tick, Math.max(0, offsets[next]! - elapsed));
  };
  tick();
  return {
    done,
    finishNow() {
      clearTimeout(timer);
      while (next < order.length) endGroup(order[next++]!);
      resolve();
    },
    refuse(stream) {
      goaway(stream.connection);
      stream.unavailable(DRAIN_REASON);
    },
  };
}

/** Waits for `p` at most `ms`; on timeout logs what was abandoned and resolves anyway. */
export async function bounded(what: string, p: Promise<unknown>, ms: number, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), ms);
    timer.unref();
  });
  try {
    const r = await Promise.race([p.then(() => 'ok' as const), timedOut]);
    if (r === 'timeout') log.warn({ what, waitedMs: ms }, 'shutdown step did not finish in time; abandoned');
  } catch (e) {
    log.warn({ what, err: (e as Error).message }, 'shutdown step failed');
  } finally {
    clearTimeout(timer);
  }
}
