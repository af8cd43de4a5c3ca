// `npm run bench` (SPEC §8): drives the real server (its own process) over real gRPC connections from
// separate load-generator processes, prints one row per scenario and writes bench/results/<ts>.json.
// See bench/README.md for what each row measures.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem, platform } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchIssuance } from './issuance.js';
import { makeFixture, type Fixture } from './fixtures.js';
import { formatSummary, profileFiles, summariseProfile, type ProfileSummary } from './profile.js';
import { epochNow, type FromLoadgen, type Phase, type PhaseReport, type ToLoadgen } from './protocol.js';
import { spawnServer, waitReady, type ServerProc } from './server.js';
import { formatTable, type Row } from './table.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIOS = ['issuance', 'startup', 'storm', 'fanout', 'rotation', 'memory'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** Everything, defaults included, must end well inside this (the brief allows 10 minutes). */
const HARD_LIMIT_MS = 9.5 * 60_000;

const { values: flags } = parseArgs({
  options: {
    proxies: { type: 'string', default: '10000' },
    only: { type: 'string' },
    loadgens: { type: 'string', default: '2' },
    channels: { type: 'string', default: '4' },
    'issuance-seconds': { type: 'string', default: '3' },
    profile: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(`npm run bench -- [--proxies N] [--only ${SCENARIOS.join(',')}] [--loadgens K] [--channels C] [--issuance-seconds S] [--profile]`);
  process.exit(0);
}
const N = positiveInt(flags.proxies, '--proxies');
const LOADGENS = Math.min(positiveInt(flags.loadgens, '--loadgens'), N);
const CHANNELS = positiveInt(flags.channels, '--channels');
const only = new Set<Scenario>(
  flags.only
    ? flags.only.split(',').map((s) => {
        if (!(SCENARIOS as readonly string[]).includes(s.trim())) throw new Error(`--only: unknown scenario "${s}" (one of ${SCENARIOS.join(', ')})`);
        return s.trim() as Scenario;
      })
    : SCENARIOS,
);

function positiveInt(v: string | undefined, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag}: expected a positive integer, got "${v}"`);
  return n;
}

// ------------------------------------------------------------------------------------------------
// Teardown: everything started is registered here and stopped on success, failure, signal or timeout.

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void> | void)[] = [];
let tornDown: Promise<void> | undefined;
const teardown = () =>
  (tornDown ??= (async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch((e: Error) => console.error(`teardown: ${e.message}`));
  })());
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: tearing down`);
    void teardown().finally(() => process.exit(130));
  });
}
const watchdog = setTimeout(() => {
  console.error(`bench exceeded ${HARD_LIMIT_MS / 60_000} minutes: tearing down`);
  void teardown().finally(() => process.exit(2));
}, HARD_LIMIT_MS);
watchdog.unref();

// ------------------------------------------------------------------------------------------------
// Load generators.

interface Loadgen {
  child: ChildProcess;
  from: number;
  to: number;
  next(type: FromLoadgen['type'], timeoutMs: number): Promise<FromLoadgen>;
  send(m: ToLoadgen): void;
}

function startLoadgen(target: string, from: number, to: number): Loadgen {
  const child = fork(join(ROOT, 'bench/loadgen.ts'), [], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
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
  lg.send({ type: 'config', config: { target, from, to, channels: CHANNELS, names: ['default', 'system_trust_bundle'] } });
  return lg;
}

async function stopLoadgens(lgs: Loadgen[]): Promise<void> {
  await Promise.all(
    lgs.map(async (lg) => {
      if (lg.child.exitCode !== null || lg.child.signalCode !== null) return;
      const exited = new Promise((r) => lg.child.once('exit', r));
      if (lg.child.connected) lg.send({ type: 'stop' });
      const t = setTimeout(() => lg.child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }),
  );
}

interface PhaseResult {
  t0: number;
  /** ms from t0 per stream, null = never. */
  done: (number | null)[];
  firstNew: (number | null)[];
  gaps: number;
  responses: number;
  sideChanges: number;
  streamErrors: string[];
  /** CPU ms each generator used during the phase (compare with the phase's wall time). */
  loadgenCpuMs: number[];
  /** CPU ms the server used from arming to the last report. */
  serverCpuMs: number;
}

/** Arms a phase on every generator; `trigger` runs once all have taken their baselines (t0 = just before it). */
async function runPhase(server: ServerProc, lgs: Loadgen[], phase: Phase, deadlineMs: number, trigger?: () => void | Promise<void>): Promise<PhaseResult> {
  const cpu0 = server.cpuMs();
  let t0 = epochNow();
  for (const lg of lgs) lg.send({ type: 'arm', phase, deadlineMs });
  await Promise.all(lgs.map((lg) => lg.next('armed', 30_000)));
  if (trigger) {
    t0 = epochNow();
    await trigger();
  }
  const reports = (await Promise.all(lgs.map((lg) => lg.next('report', deadlineMs + 30_000)))) as PhaseReport[];
  const serverCpuMs = server.cpuMs() - cpu0;
  const rel = (t: number | null) => (t === null ? null : t - t0);
  return {
    t0,
    done: reports.flatMap((r) => r.doneAt.map(rel)),
    firstNew: reports.flatMap((r) => r.firstNewAt.map(rel)),
    gaps: reports.reduce((a, r) => a + r.gaps, 0),
    responses: reports.reduce((a, r) => a + r.responses, 0),
    sideChanges: reports.reduce((a, r) => a + r.sideChanges, 0),
    streamErrors: reports.flatMap((r) => r.streamErrors).slice(0, 20),
    loadgenCpuMs: reports.map((r) => r.cpuMs),
    serverCpuMs,
  };
}

function stats(values: (number | null)[]) {
  const ok = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  const q = (p: number) => (ok.length ? round(ok[Math.min(ok.length - 1, Math.floor(p * ok.length))]!) : null);
  return { count: values.length, completed: ok.length, min: ok.length ? round(ok[0]!) : null, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: ok.length ? round(ok[ok.length - 1]!) : null };
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------

const rows: Row[] = [];
const details: Record<string, unknown> = {};
function addRow(r: Row): void {
  rows.push(r);
  console.log(formatTable([r], rows.length === 1));
}

const COUNTERS = ['mesh_sds_streams', 'mesh_sds_pushes_total', 'mesh_sds_acks_total', 'mesh_sds_nacks_total', 'mesh_sds_svid_issued_total', 'mesh_sds_stream_auth_failures_total'];
const HEAP = ['nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes'];

async function scrape(server: ServerProc, names = COUNTERS): Promise<Record<string, number>> {
  const m = await server.metrics();
  return Object.fromEntries(names.map((k) => [k, m.get(k) ?? 0]));
}

/**
 * After the generators reported, confirms on the server side that every stream's last response
 * was ACKed: the ACK counter must have grown by N (one per stream). Earlier ACKs of a phase may be
 * legitimately ignored as stale when a newer response was already on its way, so pushes and ACKs
 * need not match. Polls after the phase only, so it never loads the server during a measurement;
 * returns ms from t0 (an upper bound) or null if the counter did not get there within 10 s.
 */
async function serverAcksSettled(server: ServerProc, t0: number, acksBefore: number): Promise<{ atMs: number | null; metrics: Record<string, number> }> {
  const deadline = epochNow() + 10_000;
  for (;;) {
    const m = await scrape(server);
    if ((m['mesh_sds_acks_total'] ?? 0) >= acksBefore + N) return { atMs: round(epochNow() - t0), metrics: m };
    if (epochNow() > deadline) return { atMs: null, metrics: m };
    await sleep(20);
  }
}

async function main(): Promise<void> {
  const started = epochNow();
  const load = loadavg()[0]!;
  if (load > 1) console.warn(`warning: 1-minute load average is ${load.toFixed(1)} on ${cpus().length} cores; other work will distort the figures\n`);
  console.log(`mesh-sds bench: ${fmtInt(N)} proxies, ${LOADGENS} load generators × ${CHANNELS} connections, ${cpus().length} cores${flags.profile ? ', server CPU-profiled (figures are slower than normal)' : ''}\n`);
  const runDir = mkdtempSync(join(tmpdir(), 'mesh-sds-bench-run-'));
  cleanups.push(() => rmSync(runDir, { recursive: true, force: true }));
  // Profiles stay in the temp dir after the run (the path is printed); they are large.
  const profileDir = flags.profile ? join(tmpdir(), `mesh-sds-prof-${stamp()}`) : undefined;
  let profiles: ProfileSummary[] = [];
  let failure: Error | undefined;

  try {
    if (only.has('issuance')) {
      const r = await benchIssuance({ seconds: Number(flags['issuance-seconds']) });
      details['issuance'] = r;
      addRow({ scenario: 'leaf issuance (ECDSA P-256)', measured: `${fmtInt(r.fastPerSec)}/s (x${r.ratio.toFixed(1)} vs naive ${fmtInt(r.naivePerSec)}/s)`, target: '≥ 10,000/s', pass: r.fastPerSec >= 10_000 });
    }
    const needServer = [...only].some((s) => s !== 'issuance');
    if (needServer && only.has('issuance')) {
      // The issuance contenders leave this process collecting garbage for a while: let it settle
      // so the server scenarios start on a quiet machine.
      (globalThis as { gc?: () => void }).gc?.();
      await sleep(3000);
    }
    if (needServer) await serverScenarios(runDir, profileDir);
  } catch (e) {
    failure = e as Error;
    details['error'] = failure.message;
    console.error(`\nbench failed: ${failure.stack ?? failure.message}`);
  } finally {
    await teardown();
    if (profileDir) {
      profiles = profileFiles(profileDir).map((f) => summariseProfile(f, 25, ROOT));
      details['profiles'] = profiles;
    }
  }

  const seconds = round((epochNow() - started) / 1000);
  console.log(`\n${formatTable(rows, true)}\n\nrun time ${seconds} s`);
  for (const p of profiles) console.log(`\n${formatSummary({ ...p, top: p.top.slice(0, p.thread === '0' ? 20 : 8) })}`);
  const file = join(ROOT, 'bench/results', `${stamp()}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(
    file,
    JSON.stringify(
      {
        timestamp: new Date().toISOString(),
        machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', totalMemoryBytes: totalmem(), node: process.version, platform: platform(), release: release(), loadAverageAtStart: round(load, 2), loadAverageAtEnd: round(loadavg()[0]!, 2) },
        options: { proxies: N, loadgens: LOADGENS, channelsPerLoadgen: CHANNELS, only: [...only], profiled: flags.profile, streamsPerProxy: 1, names: ['default', 'system_trust_bundle'] },
        runSeconds: seconds,
        rows,
        details,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nresults: ${relative(process.cwd(), file)}${profileDir ? `, CPU profiles: ${profileDir}` : ''}`);
  process.exitCode = failure ? 2 : rows.some((r) => r.pass === false) ? 1 : 0;
}

async function serverScenarios(runDir: string, profileDir: string | undefined): Promise<void> {
  const fixture: Fixture = makeFixture(N);
  cleanups.push(() => fixture.cleanup());
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const server = await spawnServer({ repoRoot: ROOT, resourcesDir: fixture.resourcesDir, stateDir: fixture.stateDir, logDir: runDir, profileDir });
  children.add(server.child);
  cleanups.push(() => server.stop());

  const readyAt = await waitReady(server, 120_000);
  const startupMs = readyAt - server.spawnedAt;
  details['startup'] = { ms: round(startupMs), dataplanes: N, note: 'includes node + tsx start-up and CA autogeneration (fresh state dir)' };
  if (only.has('startup')) addRow({ scenario: `start-up to ready (${fmtInt(N)} Dataplanes)`, measured: `${fmtInt(startupMs)} ms`, target: '≤ 3,000 ms', pass: startupMs <= 3000 });

  if (![...only].some((s) => s === 'storm' || s === 'fanout' || s === 'rotation' || s === 'memory')) return;
  await sleep(1000);
  const rssBefore = server.rssKb();
  const heapBefore = await scrape(server, HEAP);

  const per = Math.ceil(N / LOADGENS);
  const lgs: Loadgen[] = [];
  for (let k = 0; k * per < N; k++) lgs.push(startLoadgen(server.target, k * per, Math.min(N, (k + 1) * per)));
  cleanups.push(() => stopLoadgens(lgs));
  await Promise.all(lgs.map((lg) => lg.next('ready', 60_000)));

  // 3. Connect storm: every stream opened at once over the already-established connections.
  const storm = await runPhase(server, lgs, 'storm', 120_000);
  const stormStats = stats(storm.done);
  const stormAcks = await serverAcksSettled(server, storm.t0, 0);
  details['storm'] = { ...stormStats, responses: storm.responses, gaps: storm.gaps, streamErrors: storm.streamErrors, loadgenCpuMs: storm.loadgenCpuMs, serverCpuMs: storm.serverCpuMs, serverAllAckedByMs: stormAcks.atMs, serverMetrics: stormAcks.metrics };
  const stormOk = stormStats.completed === N;
  if (only.has('storm')) {
    addRow({
      scenario: `connect storm (${fmtInt(N)} streams)`,
      measured: stormOk ? `${fmtInt(stormStats.max!)} ms (p50 ${fmtInt(stormStats.p50!)}, p99 ${fmtInt(stormStats.p99!)})` : `incomplete: ${stormStats.completed}/${N} in 120 s`,
      target: '≤ 5,000 ms',
      pass: stormOk && stormStats.max! <= 5000,
    });
  }
  if (!stormOk) throw new Error(`only ${stormStats.completed}/${N} streams were served; errors: ${storm.streamErrors.join('; ') || 'none'}\n${server.logTail()}`);

  // 6. Memory: server RSS with every stream connected and served, after the storm settled.
  await sleep(3000);
  const rssAfter = server.rssKb();
  const heapAfter = await scrape(server, HEAP);
  const perProxyKb = (rssAfter - rssBefore) / N;
  const heapPerProxyKb = ((heapAfter['nodejs_heap_size_used_bytes'] ?? 0) - (heapBefore['nodejs_heap_size_used_bytes'] ?? 0)) / 1024 / N;
  details['memory'] = { rssBeforeKb: rssBefore, rssAfterKb: rssAfter, perProxyKb: round(perProxyKb, 2), heapUsedPerProxyKb: round(heapPerProxyKb, 2), heapBefore, heapAfter };
  if (only.has('memory')) {
    addRow({ scenario: 'memory per connected proxy', measured: `${perProxyKb.toFixed(1)} KB (RSS ${fmtInt(rssBefore / 1024)} → ${fmtInt(rssAfter / 1024)} MB)`, target: '≤ 30 KB', pass: perProxyKb <= 30 });
  }

  // 4. Trust fan-out: a second CA added to the MeshTrust file.
  if (only.has('fanout')) {
    await sleep(500);
    const acksBefore = (await scrape(server))['mesh_sds_acks_total'] ?? 0;
    const r = await runPhase(server, lgs, 'trust', 30_000, () => fixture.writeTrust(2));
    const s = stats(r.done);
    const acks = await serverAcksSettled(server, r.t0, acksBefore);
    details['fanout'] = { ...s, responses: r.responses, certChanges: r.sideChanges, gaps: r.gaps, streamErrors: r.streamErrors, loadgenCpuMs: r.loadgenCpuMs, serverCpuMs: r.serverCpuMs, serverAllAckedByMs: acks.atMs, serverMetrics: acks.metrics };
    const ok = s.completed === N;
    addRow({
      scenario: `trust fan-out (${fmtInt(N)} streams)`,
      measured: ok ? `${fmtInt(s.max!)} ms (first ${fmtInt(s.min!)}, p50 ${fmtInt(s.p50!)})` : `incomplete: ${s.completed}/${N} in 30 s`,
      target: '≤ 1,000 ms',
      pass: ok && s.max! <= 1000,
    });
  }

  // 5. Rotation wave: every SVID reissued at once, by the admin API's POST /rotate where the server
  // has it, else by a MeshIdentity edit that changes every SVID (certificate expiry 24h → 23h).
  if (only.has('rotation')) {
    await sleep(500);
    const acksBefore = (await scrape(server))['mesh_sds_acks_total'] ?? 0;
    const probe = await fetch(`${server.adminUrl}/rotate`, { signal: AbortSignal.timeout(5000) });
    await probe.arrayBuffer();
    const viaAdmin = probe.status === 405 && (probe.headers.get('allow') ?? '').includes('POST');
    let rotatedByAdmin: number | undefined;
    const trigger = viaAdmin
      ? async () => {
          const res = await fetch(`${server.adminUrl}/rotate`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
          if (res.status !== 200) throw new Error(`POST /rotate answered ${res.status}: ${await res.text()}`);
          rotatedByAdmin = ((await res.json()) as { rotated?: number }).rotated;
        }
      : () => fixture.writeIdentity('23h');
    const r = await runPhase(server, lgs, 'rotation', 60_000, trigger);
    const first = stats(r.firstNew);
    const acked = stats(r.done);
    const acks = await serverAcksSettled(server, r.t0, acksBefore);
    details['rotation'] = {
      trigger: viaAdmin ? 'admin POST /rotate (every connected proxy)' : 'MeshIdentity certificateParameters.expiry 24h → 23h (reissues every SVID at once)',
      rotatedByAdmin,
      firstNewSvid: first,
      ackedNewSvid: acked,
      waveMs: first.max !== null && first.min !== null ? round(first.max - first.min) : null,
      gaps: r.gaps,
      trustChanges: r.sideChanges,
      responses: r.responses,
      streamErrors: r.streamErrors,
      loadgenCpuMs: r.loadgenCpuMs,
      serverCpuMs: r.serverCpuMs,
      serverAllAckedByMs: acks.atMs,
      serverMetrics: acks.metrics,
    };
    addRow({
      scenario: `rotation wave (${fmtInt(N)} SVIDs)`,
      measured:
        first.completed > 0
          ? `${fmtInt(first.min!)} → ${fmtInt(first.max!)} ms after ${viaAdmin ? 'POST /rotate' : 'edit'}, ${fmtInt(acked.completed)}/${fmtInt(N)} rotated, ${r.gaps} gaps`
          : `no new SVID in 60 s (${r.gaps} gaps)`,
      target: 'report only',
      pass: null,
    });
  }
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

main().catch(async (e: Error) => {
  console.error(`\nbench failed: ${e.stack ?? e.message}`);
  await teardown();
  process.exit(2);
});
