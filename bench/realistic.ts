// The production shape (SPEC §8): N proxies, each its own HTTP/2 connection with two StreamSecrets
// streams (`default`, `system_trust_bundle`) and its token. One function drives any server —
// mesh-sds (one or more replicas) or a transport floor — with the same generators, so their CPU
// and memory can be compared as ratios within one run.
import type { ChildProcess } from 'node:child_process';
import { monotonicSeconds } from './perf.js';
import { epochNow } from './protocol.js';
import { round, runPhase, startLoadgens, stats, stopLoadgens, type Loadgen } from './loadgens.js';

export interface RealisticTarget {
  label: string;
  /** One address per server process; the proxies are split evenly between them. */
  targets: string[];
  /** CPU ms (all threads) and RSS KB, summed over the server processes. */
  cpuMs(): number;
  /** CPU ms of the main threads alone (event loops), summed over the server processes. */
  mainThreadCpuMs(): number;
  /** System CPU ms and minor page faults, summed over the server processes. */
  kernel(): { systemCpuMs: number; minorFaults: number };
  rssKb(): number;
  /**
   * Makes every trust stream receive a new bundle (a MeshTrust change, or the floor's push); round
   * `k` of several: each round changes the bundle again (back and forth between two).
   */
  fanout(round: number): void | Promise<void>;
}

export interface RealisticOptions {
  root: string;
  children: Set<ChildProcess>;
  n: number;
  loadgens: number;
  tokensFile?: string;
  connectConcurrency: number;
  /** Keep the generators connected afterwards (for the churn phase); the caller stops them. */
  keep?: boolean;
  fanout?: boolean;
  /** Fan-outs measured one after the other (default 1); the figures are the median round's. */
  fanoutRounds?: number;
}

export interface RealisticResult {
  label: string;
  proxies: number;
  storm: { cpuMs: number; mainThreadCpuMs: number; systemCpuMs: number; minorFaults: number; wallMs: number; perProxyCpuMs: number; loadgenCpuMs: number[]; done: ReturnType<typeof stats>; connectErrors: number; reconnects: number; streamErrors: string[] };
  /**
   * One fan-out round, or with several the median: `cpuMs` the median of the rounds' CPU, the rest
   * from the round whose slowest stream was the median; every round in `rounds`.
   */
  fanout?: FanoutRound & { rounds: { cpuMs: number; maxMs: number | null }[] };
  memory: { rssBeforeKb: number; rssAfterKb: number; perProxyKb: number };
  trustDigests: string[];
  /** The storm's start and end on CLOCK_MONOTONIC, in seconds (the window of `--perf`). */
  stormWindow: [number, number];
  lgs?: Loadgen[];
}

export interface FanoutRound {
  cpuMs: number;
  done: ReturnType<typeof stats>;
  loadgenCpuMs: number[];
  streamErrors: string[];
  window: [number, number];
  responses: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Source addresses for the generators' connections: ephemeral ports are counted per address pair. */
const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

export async function runRealistic(t: RealisticTarget, o: RealisticOptions): Promise<RealisticResult> {
  const lgs: Loadgen[] = [];
  const perTarget = Math.ceil(o.n / t.targets.length);
  const lgsPerTarget = Math.max(1, Math.round(o.loadgens / t.targets.length));
  try {
    const started = await Promise.all(
      t.targets.map((target, k) =>
        startLoadgens(o.root, o.children, Math.min(perTarget, o.n - k * perTarget), lgsPerTarget, {
          target,
          shape: 'realistic',
          channels: 0,
          names: ['default', 'system_trust_bundle'],
          tokensFile: o.tokensFile,
          localAddresses: SOURCES,
          connectConcurrency: o.connectConcurrency,
        }, k * perTarget),
      ),
    );
    lgs.push(...started.flat());
    await sleep(1000);
    const rssBefore = t.rssKb();
    const main0 = t.mainThreadCpuMs();
    const kernel0 = t.kernel();
    const mono0 = monotonicSeconds();
    const storm = await runPhase(() => t.cpuMs(), lgs, 'storm', 180_000);
    const stormWindow: [number, number] = [mono0, monotonicSeconds()];
    const stormMainCpuMs = t.mainThreadCpuMs() - main0;
    const kernel1 = t.kernel();
    const stormDone = stats(storm.done);
    if (stormDone.completed !== o.n) {
      throw new Error(`${t.label}: only ${stormDone.completed}/${o.n} proxies served in the realistic storm (connect errors ${storm.connectErrors}); ${storm.streamErrors.slice(0, 5).join('; ')}`);
    }
    await sleep(3000);
    const rssAfter = t.rssKb();
    const result: RealisticResult = {
      label: t.label,
      proxies: o.n,
      storm: { cpuMs: storm.serverCpuMs, mainThreadCpuMs: stormMainCpuMs, systemCpuMs: kernel1.systemCpuMs - kernel0.systemCpuMs, minorFaults: kernel1.minorFaults - kernel0.minorFaults, wallMs: round(storm.wallMs), perProxyCpuMs: round(storm.serverCpuMs / o.n, 3), loadgenCpuMs: storm.loadgenCpuMs, done: stormDone, connectErrors: storm.connectErrors, reconnects: storm.reconnects, streamErrors: storm.streamErrors },
      memory: { rssBeforeKb: rssBefore, rssAfterKb: rssAfter, perProxyKb: round((rssAfter - rssBefore) / o.n, 2) },
      trustDigests: storm.trustDigests,
      stormWindow,
    };
    if (o.fanout !== false) {
      const rounds: FanoutRound[] = [];
      for (let k = 0; k < Math.max(1, o.fanoutRounds ?? 1); k++) {
        await sleep(500);
        const start = monotonicSeconds();
        const f = await runPhase(() => t.cpuMs(), lgs, 'trust', 60_000, () => t.fanout(k));
        rounds.push({ cpuMs: f.serverCpuMs, done: stats(f.done), loadgenCpuMs: f.loadgenCpuMs, streamErrors: f.streamErrors, window: [start, monotonicSeconds()], responses: f.responses });
        result.trustDigests = f.trustDigests;
      }
      result.fanout = { ...medianRound(rounds), rounds: rounds.map((r) => ({ cpuMs: r.cpuMs, maxMs: r.done.max })) };
    }
    if (o.keep) result.lgs = lgs;
    return result;
  } finally {
    if (!o.keep) await stopLoadgens(lgs);
  }
}

/** The round whose slowest stream is the median (by time), with the median CPU of all rounds. */
function medianRound(rounds: FanoutRound[]): FanoutRound {
  const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const byTime = [...rounds].sort((a, b) => (a.done.max ?? Infinity) - (b.done.max ?? Infinity));
  const median = byTime[Math.floor((byTime.length - 1) / 2)]!;
  return { ...median, cpuMs: mid(rounds.map((r) => r.cpuMs)), streamErrors: rounds.flatMap((r) => r.streamErrors) };
}

export interface ChurnOptions {
  /** Changes per second and for how long (SPEC §8: 20/s for 20 s). */
  rate: number;
  seconds: number;
  n: number;
  /** The proxies whose Dataplane is changed, in order (each once). */
  changed: number[];
  /** Changes proxy i's Dataplane so that its SVID must change (another service account). */
  change(i: number): void | Promise<void>;
}

export interface ChurnResult {
  changes: number;
  /** The churn's start and end on CLOCK_MONOTONIC, in seconds (the window of `--perf`). */
  window: [number, number];
  /** Server CPU over the churn window as a fraction of one core. */
  cpuFractionOfCore: number;
  cpuMs: number;
  windowMs: number;
  /** ms from the change to the new SVID arriving, over the changed proxies. */
  latency: ReturnType<typeof stats>;
  /** Proxies that were sent anything although their Dataplane did not change. */
  othersTouched: number;
  changedTouched: number;
  loadgenCpuMs: number[];
}

export async function runChurn(cpuMs: () => number, lgs: Loadgen[], o: ChurnOptions): Promise<ChurnResult> {
  const changeAt = new Map<number, number>();
  const count = Math.min(o.changed.length, o.rate * o.seconds);
  let windowMs = 0;
  let window: [number, number] = [monotonicSeconds(), 0];
  const ended = (async () => {
    window = [monotonicSeconds(), 0];
    const t0 = epochNow();
    for (let k = 0; k < count; k++) {
      const due = t0 + (k * 1000) / o.rate;
      const wait = due - epochNow();
      if (wait > 0) await sleep(wait);
      const i = o.changed[k]!;
      changeAt.set(i, epochNow());
      await o.change(i);
    }
    // The last change still gets its second to arrive.
    await sleep(1500);
    windowMs = epochNow() - t0;
    window = [window[0], monotonicSeconds()];
  })();
  const r = await runPhase(cpuMs, lgs, 'churn', o.seconds * 1000 + 60_000, undefined, ended);
  const latency = stats([...changeAt].map(([i, at]) => {
    const got = r.firstNewAbs[i];
    return got === null || got === undefined ? null : got - at;
  }));
  const touched = new Set(r.touched);
  let changedTouched = 0;
  for (const i of changeAt.keys()) if (touched.delete(i)) changedTouched++;
  return {
    changes: count,
    cpuMs: r.serverCpuMs,
    windowMs: round(windowMs),
    window,
    cpuFractionOfCore: round(r.serverCpuMs / windowMs, 3),
    latency,
    othersTouched: touched.size,
    changedTouched,
    loadgenCpuMs: r.loadgenCpuMs,
  };
}
