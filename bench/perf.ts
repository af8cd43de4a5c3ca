// `--perf`: on-CPU samples of the mesh-sds server in the realistic storm, fan-out and churn, taken by Linux perf with
// V8's jitdump so JavaScript frames are named. Unlike `--profile` (V8's wall-clock sampler, which
// charges a thread taken off its core to the function it stopped in), a sample here is a
// millisecond the thread really ran. Summarised per thread (main, issuance workers, V8 helpers) and,
// for the main thread, by what the stack shows (transport alone, product code and what it calls).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const HZ = 999;

/** Why perf cannot be used here, or undefined when it can. */
export function perfUnavailable(): string | undefined {
  try {
    execFileSync('perf', ['record', '-q', '-e', 'cpu-clock', '-o', '/dev/null', '--', 'true'], { stdio: 'ignore' });
    return undefined;
  } catch (e) {
    return `--perf needs Linux perf allowed to record (apt-get install linux-perf; perf_event_paranoid ≤ 2 or root): ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Seconds on CLOCK_MONOTONIC, the clock of `perf record -k mono` (libuv's hrtime is the same clock). */
export const monotonicSeconds = (): number => Number(process.hrtime.bigint()) / 1e9;

export interface PerfRecording {
  readonly pid: number;
  /** Where perf.data (and, after the summary, perf.jit.data) are. */
  readonly dir: string;
  /** Waits for perf to finish writing (it stops when the recorded process exits). */
  done(): Promise<void>;
}

/** Records `pid` until it exits, into `<dir>/perf.data`. The process must run with node's `--perf-prof`. */
export function recordPerf(pid: number, dir: string): PerfRecording {
  const child: ChildProcess = spawn('perf', ['record', '-q', '-k', 'mono', '-e', 'cpu-clock', '-F', String(HZ), '-g', '-p', String(pid), '-o', join(dir, 'perf.data')], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve()); // could not start: the summary then says there is no data
  });
  return {
    pid,
    dir,
    done: async () => {
      const timer = setTimeout(() => child.kill('SIGINT'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface PerfSummary {
  windowSeconds: number;
  /** CPU ms per thread role over the window. */
  threads: { main: number; issuanceWorkers: number; v8Helpers: number; other: number };
  /** Main thread: ms by what its stacks show. */
  mainThread: { category: string; ms: number; percent: number }[];
  /** Main thread: the innermost mesh-sds function of each stack through product code, by ms. */
  productFunctions: { fn: string; ms: number; percent: number }[];
}

/** V8 writes `jit-<pid>.dump` into the server's working directory; perf.data names it by path, so it goes only after `perf inject`. */
export function discardJitdump(pid: number, jitdumpDir: string): void {
  const jitdump = join(jitdumpDir, `jit-${pid}.dump`);
  if (existsSync(jitdump)) rmSync(jitdump);
}

/** Names JIT frames (`perf inject --jit`, in the recording's dir) and reads the window's samples. */
export function summarisePerf({ dir, pid }: PerfRecording, window: [number, number]): PerfSummary {
  if (!existsSync(join(dir, 'perf.jit.data'))) execFileSync('perf', ['inject', '--jit', '-i', 'perf.data', '-o', 'perf.jit.data'], { cwd: dir, stdio: 'ignore' });
  const script = execFileSync('perf', ['script', '-i', 'perf.jit.data', '--time', `${window[0].toFixed(6)},${window[1].toFixed(6)}`, '-F', 'tid,ip,sym'], {
    cwd: dir,
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return summariseStacks(parseStacks(script), pid, window[1] - window[0]);
}

interface Sample {
  tid: number;
  /** Innermost frame first. */
  frames: string[];
}

function parseStacks(text: string): Sample[] {
  const samples: Sample[] = [];
  let cur: Sample | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (cur) samples.push(cur);
      cur = undefined;
    } else if (!cur) {
      cur = { tid: Number(line.trim().split(/\s+/)[0]), frames: [] };
    } else {
      const sp = line.trim().indexOf(' ');
      cur.frames.push(sp < 0 ? line.trim() : line.trim().slice(sp + 1));
    }
  }
  if (cur) samples.push(cur);
  return samples;
}

const ms = (samples: number) => Math.round((samples * 1000) / HZ);
const has = (frames: string[], s: string) => frames.some((f) => f.includes(s));
const productFrame = (f: string) => f.startsWith('JS:') && f.includes('/src/') && !f.includes('/node_modules/') && !f.includes('/src/server/grpc-h2/');

function threadRole(frames: string[][]): 'issuance' | 'v8' | 'other' {
  let issuance = 0;
  let v8 = 0;
  for (const st of frames) {
    if (has(st, 'issue-worker') || has(st, 'issueLeafSync') || has(st, 'ecp_nistz256')) issuance++;
    else if (has(st, 'v8::internal::compiler') || has(st, 'ConcurrentMarking') || has(st, 'Scavenger') || has(st, 'PlatformWorkerThread')) v8++;
  }
  if (issuance > frames.length / 4) return 'issuance';
  if (v8 > frames.length / 4) return 'v8';
  return 'other';
}

function mainCategory(st: string[]): { category: string; fn?: string } {
  const i = st.findIndex(productFrame);
  if (i < 0) {
    if (has(st, 'Scaveng') || has(st, 'MarkCompact') || has(st, 'Heap::')) return { category: 'GC' };
    if (has(st, '/src/server/grpc-h2/') && !has(st, '/node_modules/')) return { category: 'own gRPC layer (src/server/grpc-h2)' };
    return { category: 'node:http2, V8, kernel (no mesh-sds frame)' };
  }
  const below = st.slice(0, i).join(' ');
  const fn = st[i]!.replace(/^JS:[*^~]?/, '').replace(/\+0x[0-9a-f]+.*$/, '').replace(/ \(.*\)$/, '').replace(/file:\/\/\S*?\/src\//, 'src/');
  if (below.includes('pino') || below.includes('sonic-boom')) return { category: 'product: logging', fn };
  if (below.includes('prom-client')) return { category: 'product: metrics', fn };
  if (/http2|StreamBase|nghttp2|grpc-h2/.test(below)) return { category: 'product: writes and ends it makes', fn };
  if (/crypto|ecp_|Sign|sha256|EVP_/.test(below)) return { category: 'product: hashing, HMAC, inline signing', fn };
  if (/Scaveng|MarkCompact|Heap::/.test(below)) return { category: 'product: GC while in it', fn };
  return { category: 'product: own JavaScript', fn };
}

function summariseStacks(samples: Sample[], pid: number, windowSeconds: number): PerfSummary {
  const byTid = new Map<number, string[][]>();
  for (const s of samples) {
    let l = byTid.get(s.tid);
    if (!l) byTid.set(s.tid, (l = []));
    l.push(s.frames);
  }
  const threads = { main: 0, issuanceWorkers: 0, v8Helpers: 0, other: 0 };
  for (const [tid, stacks] of byTid) {
    if (tid === pid) threads.main += ms(stacks.length);
    else {
      const role = threadRole(stacks);
      if (role === 'issuance') threads.issuanceWorkers += ms(stacks.length);
      else if (role === 'v8') threads.v8Helpers += ms(stacks.length);
      else threads.other += ms(stacks.length);
    }
  }
  const main = byTid.get(pid) ?? [];
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const st of main) {
    const { category, fn } = mainCategory(st);
    cats.set(category, (cats.get(category) ?? 0) + 1);
    if (fn && category === 'product: own JavaScript') fns.set(fn, (fns.get(fn) ?? 0) + 1);
  }
  const pct = (n: number) => Math.round((1000 * n) / Math.max(1, main.length)) / 10;
  return {
    windowSeconds: Math.round(windowSeconds * 10) / 10,
    threads,
    mainThread: [...cats].sort((a, b) => b[1] - a[1]).map(([category, n]) => ({ category, ms: ms(n), percent: pct(n) })),
    productFunctions: [...fns].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([fn, n]) => ({ fn, ms: ms(n), percent: pct(n) })),
  };
}

export function formatPerfSummary(s: PerfSummary, phase: string): string {
  const t = s.threads;
  const lines = [
    `on-CPU (perf) of the mesh-sds server over ${phase} (${s.windowSeconds} s): main thread ${t.main} ms, issuance workers ${t.issuanceWorkers} ms, V8 helpers (compiler, GC) ${t.v8Helpers} ms, other threads ${t.other} ms`,
    '  main thread by what its stacks show:',
    ...s.mainThread.map((c) => `    ${String(c.ms).padStart(7)} ms ${c.percent.toFixed(1).padStart(5)} %  ${c.category}`),
    "  main thread, product code's own JavaScript by innermost mesh-sds function:",
    ...s.productFunctions.map((f) => `    ${String(f.ms).padStart(7)} ms ${f.percent.toFixed(1).padStart(5)} %  ${f.fn}`),
  ];
  return lines.join('\n');
}
