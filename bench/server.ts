// The server under test, as its own process: `node bin/mesh-sds.js serve` on loopback ports, logs
// to a file, RSS read from /proc, counters scraped from /metrics.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { epochNow } from './protocol.js';

export interface ServerProc {
  child: ChildProcess;
  pid: number;
  target: string;
  adminUrl: string;
  logPath: string;
  /** epochNow() just before spawn. */
  spawnedAt: number;
  exited: Promise<number | null>;
  rssKb(): number;
  /** CPU time (user + system, all threads) the server has used so far, from /proc/<pid>/stat. */
  cpuMs(): number;
  mainThreadCpuMs(): number;
  kernel(): { systemCpuMs: number; minorFaults: number };
  metrics(): Promise<Map<string, number>>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

export interface SpawnOptions {
  repoRoot: string;
  /** The directory store, or `store` (a postgres:// URL). */
  resourcesDir?: string;
  store?: string;
  stateDir: string;
  /** `token` (default, as in production) or `none`. */
  auth?: 'token' | 'none';
  logDir: string;
  /** Write V8 CPU profiles of every thread here (they appear when the server exits). */
  profileDir?: string;
  /** More node flags (e.g. `--perf-prof` for `--perf`). */
  nodeArgs?: string[];
  /** More `mesh-sds serve` flags. */
  serveArgs?: string[];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * MESH_SDS_BENCH_SERVER_NODE_ARGS: extra node flags for every server measured (mesh-sds and the
 * floors), e.g. `--perf-prof` so `perf` names JavaScript frames, or `--trace-gc`.
 */
export function benchServerNodeArgs(): string[] {
  return process.env['MESH_SDS_BENCH_SERVER_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
}

/**
 * MESH_SDS_BENCH_MESH_NODE_ARGS: extra node flags for mesh-sds alone (not the floors), to A/B a
 * flag the product itself would run with against references that run without it.
 */
function meshSdsNodeArgs(): string[] {
  return process.env['MESH_SDS_BENCH_MESH_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
}

export async function spawnServer(o: SpawnOptions): Promise<ServerProc> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const logPath = join(o.logDir, 'server.log');
  const fd = openSync(logPath, 'a');
  const nodeArgs = [...benchServerNodeArgs(), ...meshSdsNodeArgs(), ...(o.nodeArgs ?? []), ...(o.profileDir ? ['--cpu-prof', '--cpu-prof-dir', o.profileDir] : [])];
  const args = [
    ...nodeArgs, join(o.repoRoot, 'bin/mesh-sds.js'), 'serve',
    // Unsealed keys in Postgres are refused by default; sealing costs nothing after start-up.
    ...(o.store ? ['--store', o.store, '--insecure-plaintext-state'] : ['--resources', o.resourcesDir!]), '--state-dir', o.stateDir,
    '--listen', `127.0.0.1:${port}`, '--auth', o.auth ?? 'token', '--admin', `127.0.0.1:${adminPort}`,
    // The default keeps 1,024 descriptors of the open-file limit for files and the database; the
    // curve's largest size is sized to the limit itself (as an operator would raise the limit).
    '--max-connections', '0',
    ...(o.serveArgs ?? []),
  ];
  const spawnedAt = epochNow();
  const child = spawn(process.execPath, args, { cwd: o.repoRoot, stdio: ['ignore', fd, fd], env: { ...process.env, NODE_OPTIONS: '' } });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  return {
    child,
    pid: child.pid!,
    target: `127.0.0.1:${port}`,
    adminUrl,
    logPath,
    spawnedAt,
    exited,
    rssKb: () => procRssKb(child.pid!),
    cpuMs: () => procCpuMs(child.pid!),
    mainThreadCpuMs: () => procMainThreadCpuMs(child.pid!),
    kernel: () => procKernel(child.pid!),
    metrics: async () => parseMetrics(await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text()),
    logTail: (lines = 20) => readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n'),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      // Graceful exit lets --cpu-prof write its profiles; never wait for ever.
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** CPU ms (user + system, all threads) of a process so far, from /proc/<pid>/stat. */
export function procCpuMs(pid: number): number {
  return statCpuMs(`/proc/${pid}/stat`);
}

/**
 * CPU of the process' main thread alone (its task id is the pid): the event loop, where the
 * transport and the product's own JavaScript run; the rest is issuance workers and V8's helpers
 * (optimising compiler, concurrent GC), which perf showed to be a large share of a cold storm.
 */
export function procMainThreadCpuMs(pid: number): number {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

function statCpuMs(path: string): number {
  const f = statFields(path);
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Fields of /proc/<pid>/stat after the parenthesised command name (field 3, the state, is [0]). */
function statFields(path: string): string[] {
  const stat = readFileSync(path, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * The kernel's share of a process (all threads): system CPU ms (stime, field 15) and minor page
 * faults (minflt, field 10). On a VM whose balloon reports free pages to the host, a first touch
 * of a page costs ~10 µs (the host backs it again), so faults are a cost that follows how much
 * fresh memory a server writes, apart from what its JavaScript does.
 */
export function procKernel(pid: number): { systemCpuMs: number; minorFaults: number } {
  const f = statFields(`/proc/${pid}/stat`);
  return { systemCpuMs: Number(f[12]) * 10, minorFaults: Number(f[7]) };
}

export function procRssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('VmRSS not found');
  return Number(m[1]);
}

/** Polls /readyz until 200; returns epochNow() of the first 200. Bounded by `timeoutMs`. */
export async function waitReady(s: ServerProc, timeoutMs: number): Promise<number> {
  const deadline = epochNow() + timeoutMs;
  let exitCode: number | null | undefined;
  void s.exited.then((c) => (exitCode = c));
  while (epochNow() < deadline) {
    if (exitCode !== undefined) throw new Error(`server exited (${exitCode}) before it was ready:\n${s.logTail()}`);
    try {
      const res = await fetch(`${s.adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return epochNow();
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`server not ready within ${timeoutMs} ms:\n${s.logTail()}`);
}

/** SVIDs the server holds prepared for Dataplanes without a proxy (`mesh_sds_prepared_svids`), by state. */
export async function preparedSvids(s: ServerProc): Promise<{ held: number; issuing: number; queued: number }> {
  const text = await (await fetch(`${s.adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const out = { held: 0, issuing: 0, queued: 0 };
  for (const m of text.matchAll(/^mesh_sds_prepared_svids\{state="(held|issuing|queued)"\} (\S+)$/gm)) out[m[1] as keyof typeof out] = Number(m[2]);
  return out;
}

/**
 * Waits until the server has prepared the SVIDs of its Dataplanes (none queued or being issued):
 * a storm measured before that would pay for the preparation too. Returns epochNow() then and the count held.
 */
export async function waitPrepared(s: ServerProc, timeoutMs: number): Promise<{ at: number; held: number }> {
  const deadline = epochNow() + timeoutMs;
  for (;;) {
    const p = await preparedSvids(s);
    if (p.issuing === 0 && p.queued === 0) return { at: epochNow(), held: p.held };
    if (epochNow() > deadline) throw new Error(`SVIDs still being prepared after ${timeoutMs} ms: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Prometheus text → metric name → value summed over label sets. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[2]);
    if (Number.isFinite(v)) out.set(m[1]!, (out.get(m[1]!) ?? 0) + v);
  }
  return out;
}
