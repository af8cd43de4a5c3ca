// The parent's side of the load generators (bench/loadgen.ts): fork them, arm a phase on all of
// them, collect their reports into per-proxy times relative to the phase's start.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { epochNow, type FromLoadgen, type LoadgenConfig, type Phase, type PhaseReport, type ToLoadgen } from './protocol.js';

export interface Loadgen {
  child: ChildProcess;
  from: number;
  to: number;
  next(type: FromLoadgen['type'], timeoutMs: number): Promise<FromLoadgen>;
  send(m: ToLoadgen): void;
}

export function startLoadgen(root: string, children: Set<ChildProcess>, config: LoadgenConfig): Loadgen {
  const { from, to } = config;
  const child = fork(join(root, 'bench/loadgen.ts'), [], { cwd: root, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const inbox: FromLoadgen[] = [];
  const waiters: (() => void)[] = [];
  let failure: Error | undefined;
  const wake = () => waiters.splice(0).forEach((w) => w());
  child.on('message', (m: FromLoadgen) => {
    if (m.type === 'fatal') failure = new Error(`loadgen ${from}-${to}: ${m.message}`);
    else inbox.push(m);
    wake();
  });
  child.on('exit', (code, sig) => {
    failure ??= new Error(`loadgen ${from}-${to} exited (${code ?? sig})`);
    wake();
  });
  const lg: Loadgen = {
    child,
    from,
    to,
    send: (m) => void child.send(m),
    next: (type, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`loadgen ${from}-${to}: no "${type}" within ${timeoutMs} ms`)), timeoutMs);
        const check = () => {
          const i = inbox.findIndex((m) => m.type === type);
          if (i >= 0) {
            clearTimeout(timer);
            return resolve(inbox.splice(i, 1)[0]!);
          }
          if (failure) {
            clearTimeout(timer);
            return reject(failure);
          }
          waiters.push(check);
        };
        check();
      }),
  };
  lg.send({ type: 'config', config });
  return lg;
}

/** Splits proxies [0, n) evenly over `k` generators and waits until all are ready. */
export async function startLoadgens(root: string, children: Set<ChildProcess>, n: number, k: number, base: Omit<LoadgenConfig, 'from' | 'to'>, offset = 0): Promise<Loadgen[]> {
  const per = Math.ceil(n / k);
  const lgs: Loadgen[] = [];
  for (let i = 0; i * per < n; i++) lgs.push(startLoadgen(root, children, { ...base, from: offset + i * per, to: offset + Math.min(n, (i + 1) * per) }));
  await Promise.all(lgs.map((lg) => lg.next('ready', 60_000)));
  return lgs;
}

export async function stopLoadgens(lgs: Loadgen[]): Promise<void> {
  await Promise.all(
    lgs.map(async (lg) => {
      if (lg.child.exitCode !== null || lg.child.signalCode !== null) return;
      const exited = new Promise((r) => lg.child.once('exit', r));
      if (lg.child.connected) lg.send({ type: 'stop' });
      const t = setTimeout(() => lg.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }),
  );
}

export interface PhaseResult {
  t0: number;
  /** ms from t0 per proxy, null = never. */
  done: (number | null)[];
  /** epochNow() per proxy (not relative), null = never. */
  firstNewAbs: (number | null)[];
  firstNew: (number | null)[];
  gaps: number;
  responses: number;
  sideChanges: number;
  streamErrors: string[];
  connectErrors: number;
  reconnects: number;
  touched: number[];
  trustDigests: string[];
  /** CPU ms each generator used during the phase (compare with the phase's wall time). */
  loadgenCpuMs: number[];
  /** CPU ms the server(s) used from arming to the last report. */
  serverCpuMs: number;
  wallMs: number;
}

/**
 * Arms a phase on every generator; `trigger` runs once all have taken their baselines (t0 = just
 * before it). `cpuMs` reads the server(s)' CPU so far. `endAfter` (churn) ends the phase when it
 * resolves instead of waiting for every proxy.
 */
export async function runPhase(cpuMs: () => number, lgs: Loadgen[], phase: Phase, deadlineMs: number, trigger?: () => void | Promise<void>, endAfter?: Promise<void>): Promise<PhaseResult> {
  const cpu0 = cpuMs();
  let t0 = epochNow();
  for (const lg of lgs) lg.send({ type: 'arm', phase, deadlineMs });
  await Promise.all(lgs.map((lg) => lg.next('armed', 30_000)));
  if (trigger) {
    t0 = epochNow();
    await trigger();
  }
  if (endAfter) {
    await endAfter;
    for (const lg of lgs) lg.send({ type: 'end' });
  }
  const reports = (await Promise.all(lgs.map((lg) => lg.next('report', deadlineMs + 30_000)))) as PhaseReport[];
  const serverCpuMs = cpuMs() - cpu0;
  const rel = (t: number | null) => (t === null ? null : t - t0);
  return {
    t0,
    wallMs: epochNow() - t0,
    done: reports.flatMap((r) => r.doneAt.map(rel)),
    firstNewAbs: reports.flatMap((r) => r.firstNewAt),
    firstNew: reports.flatMap((r) => r.firstNewAt.map(rel)),
    gaps: reports.reduce((a, r) => a + r.gaps, 0),
    responses: reports.reduce((a, r) => a + r.responses, 0),
    sideChanges: reports.reduce((a, r) => a + r.sideChanges, 0),
    streamErrors: reports.flatMap((r) => r.streamErrors).slice(0, 20),
    connectErrors: reports.reduce((a, r) => a + r.connectErrors, 0),
    reconnects: reports.reduce((a, r) => a + r.reconnects, 0),
    touched: reports.flatMap((r) => r.touched),
    trustDigests: [...new Set(reports.flatMap((r) => r.trustDigests))],
    loadgenCpuMs: reports.map((r) => r.cpuMs),
    serverCpuMs,
  };
}

export function stats(values: (number | null)[]) {
  const ok = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  const q = (p: number) => (ok.length ? round(ok[Math.min(ok.length - 1, Math.floor(p * ok.length))]!) : null);
  return { count: values.length, completed: ok.length, min: ok.length ? round(ok[0]!) : null, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: ok.length ? round(ok[ok.length - 1]!) : null };
}

export const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
