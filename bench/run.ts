// `npm run bench` (SPEC §8): drives the real server (its own process) over real gRPC connections from
// separate load-generator processes, beside same-run references (transport floors, naive issuer,
// raw crypto), prints one row per figure and writes bench/results/<ts>.json.
// See bench/README.md for what each row measures.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem, platform } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchIssuance } from './issuance.js';
import { churnSet, makeFixture, trustCasOfRound, type Fixture } from './fixtures.js';
import { spawnFloor, type FloorKind } from './floors.js';
import { round, runPhase, startLoadgens, stats, stopLoadgens, type Loadgen } from './loadgens.js';
import { discardJitdump, formatPerfSummary, perfUnavailable, recordPerf, summarisePerf, type PerfRecording } from './perf.js';
import { formatSummary, profileFiles, summariseProfile, type ProfileSummary } from './profile.js';
import { epochNow } from './protocol.js';
import { runChurn, runRealistic, type RealisticResult } from './realistic.js';
import { replicaScenario } from './replicas.js';
import { spawnServer, waitPrepared, waitReady, type ServerProc } from './server.js';
import { formatTable, type Row } from './table.js';
import { makeTokens } from './tokens.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIOS = ['issuance', 'startup', 'multiplexed', 'realistic', 'churn', 'curve', 'replicas'] as const;
type Scenario = (typeof SCENARIOS)[number];

const { values: flags } = parseArgs({
  options: {
    proxies: { type: 'string', default: '10000' },
    only: { type: 'string' },
    loadgens: { type: 'string', default: '2' },
    channels: { type: 'string', default: '4' },
    curve: { type: 'string', default: '1000,5000,10000,20000' },
    'issuance-seconds': { type: 'string', default: '3' },
    'connect-concurrency': { type: 'string', default: '200' },
    pg: { type: 'string', default: process.env['MESH_SDS_BENCH_PG'] ?? 'postgres://postgres@127.0.0.1:5432/test' },
    'time-limit': { type: 'string', default: '9.5' },
    profile: { type: 'boolean', default: false },
    perf: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(`npm run bench -- [--proxies N] [--only ${SCENARIOS.join(',')}] [--curve 1000,5000,...] [--loadgens K] [--channels C] [--pg URL] [--issuance-seconds S] [--connect-concurrency C] [--time-limit MIN] [--profile] [--perf]`);
  process.exit(0);
}
const N = positiveInt(flags.proxies, '--proxies');
const LOADGENS = Math.min(positiveInt(flags.loadgens, '--loadgens'), N);
const CHANNELS = positiveInt(flags.channels, '--channels');
const CONNECT_CONCURRENCY = positiveInt(flags['connect-concurrency'], '--connect-concurrency');
/** Everything, defaults included, must end inside this (10 minutes on the idle 2-core machine; raise it on a loaded one). */
const HARD_LIMIT_MS = Number(flags['time-limit']) * 60_000;
if (!(HARD_LIMIT_MS > 0)) throw new Error(`--time-limit: expected minutes, got "${flags['time-limit']}"`);
const CURVE = flags.curve.split(',').map((v) => positiveInt(v.trim(), '--curve'));
const only = new Set<Scenario>(
  flags.only
    ? flags.only.split(',').map((s) => {
        if (!(SCENARIOS as readonly string[]).includes(s.trim())) throw new Error(`--only: unknown scenario "${s}" (one of ${SCENARIOS.join(', ')})`);
        return s.trim() as Scenario;
      })
    : SCENARIOS,
);
/** SPEC §8's churn: 20 Dataplane changes per second for 20 seconds. */
const CHURN = { rate: 20, seconds: 20 };
/**
 * Fan-outs per server in the main realistic comparison (mesh-sds and each floor): one fan-out's CPU
 * swings by a third between rounds on these shared cores, so the rows judge the median of three.
 * The curve and the replicas measure one.
 */
const FANOUT_ROUNDS = 3;

function positiveInt(v: string | undefined, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag}: expected a positive integer, got "${v}"`);
  return n;
}

/**
 * Every connection is a file descriptor in the server and in a generator: raise this process's
 * limit (inherited by everything it starts) where allowed, else say what it is.
 */
let fileLimitNow = Infinity;
function raiseFileLimit(want: number): string {
  const current = () => (fileLimitNow = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()));
  const before = current();
  if (before >= want) return `open files limit ${before}`;
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    // Not allowed (not root, hard limit lower): report it.
  }
  const after = current();
  if (after < want) console.warn(`warning: open files limit is ${after} (wanted ${want}); large scenarios may fail to connect`);
  return `open files limit ${before} → ${after}`;
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
const runStarted = epochNow();
const loadAtStart = loadavg();
const watchdog = setTimeout(() => {
  console.error(`bench exceeded ${HARD_LIMIT_MS / 60_000} minutes: tearing down`);
  details['error'] = `stopped by the time limit (${HARD_LIMIT_MS / 60_000} minutes)`;
  void teardown().finally(() => {
    console.log(`\nresults so far: ${relative(process.cwd(), writeResults(loadAtStart, 'see the log', runStarted))}`);
    process.exit(2);
  });
}, HARD_LIMIT_MS);
watchdog.unref();

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------

const rows: Row[] = [];
/** `--perf`: where perf's data is kept after the run (bench/perf.ts). */
let perfDir: string | undefined;
const details: Record<string, unknown> = {};
function addRow(r: Row): void {
  rows.push(r);
  console.log(formatTable([r], rows.length === 1));
}

const COUNTERS = ['mesh_sds_streams', 'mesh_sds_pushes_total', 'mesh_sds_acks_total', 'mesh_sds_nacks_total', 'mesh_sds_svid_issued_total', 'mesh_sds_stream_auth_failures_total'];

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
  const load = loadavg();
  const largest = Math.max(N, ...(only.has('curve') ? CURVE : []));
  const fileLimit = raiseFileLimit(Math.max(65_536, 3 * largest + 1000));
  if (load[0]! > 1) console.warn(`warning: load average ${load.map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores; other work distorts absolute figures (ratios are same-run)\n`);
  console.log(`mesh-sds bench: ${fmtInt(N)} proxies, ${LOADGENS} load generators, ${cpus().length} cores, ${fileLimit}${flags.profile ? ', server CPU-profiled (figures are slower than normal)' : ''}\n`);
  const runDir = mkdtempSync(join(tmpdir(), 'mesh-sds-bench-run-'));
  cleanups.push(() => rmSync(runDir, { recursive: true, force: true }));
  // Profiles stay in the temp dir after the run (the path is printed); they are large.
  const profileDir = flags.profile ? join(tmpdir(), `mesh-sds-prof-${stamp()}`) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  if (flags.perf) {
    const why = perfUnavailable();
    if (why) throw new Error(why);
    perfDir = mkdtempSync(join(tmpdir(), 'mesh-sds-perf-'));
  }
  let profiles: ProfileSummary[] = [];
  let failure: Error | undefined;
  // The CLI's JavaScript is made once per state of the sources, on the first run of the bin after a
  // change (bin/mesh-sds.js, ~0.8 s): made here, so start-up is measured as every later start is.
  execFileSync(process.execPath, [join(ROOT, 'bin', 'mesh-sds.js'), '--version'], { stdio: 'ignore' });

  try {
    if (only.has('issuance')) await issuanceScenario();
    if (only.has('startup') || only.has('multiplexed')) await multiplexedScenario(runDir, profileDir);
    let realistic: RealisticResult | undefined;
    if (only.has('realistic') || only.has('churn')) realistic = await realisticScenario(runDir, profileDir);
    if (only.has('curve')) await curveScenario(runDir, realistic);
    if (only.has('replicas')) {
      const r = await replicaScenario({ root: ROOT, children, cleanups, runDir, n: N, loadgens: LOADGENS, pg: flags.pg, connectConcurrency: CONNECT_CONCURRENCY, churn: CHURN, single: realistic });
      details['replicas'] = r.details;
      for (const row of r.rows) addRow(row);
    }
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

  const file = writeResults(load, fileLimit, started, profiles);
  console.log(`\nresults: ${relative(process.cwd(), file)}${profileDir ? `, CPU profiles: ${profileDir}` : ''}${perfDir ? `, perf data: ${perfDir}` : ''}`);
  process.exitCode = failure ? 2 : rows.some((r) => r.pass === false) ? 1 : 0;
}

/** Prints the table and writes bench/results/<ts>.json (also when the time limit stops the run). */
function writeResults(load: number[], fileLimit: string, started: number, profiles: ProfileSummary[] = []): string {
  const seconds = round((epochNow() - started) / 1000);
  console.log(`\n${formatTable(rows, true)}\n\nrun time ${seconds} s, load average at start ${load.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  for (const p of profiles) console.log(`\n${formatSummary({ ...p, top: p.top.slice(0, p.thread === '0' ? 20 : 8) })}`);
  const file = join(ROOT, 'bench/results', `${stamp()}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(
    file,
    JSON.stringify(
      {
        timestamp: new Date().toISOString(),
        machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', totalMemoryBytes: totalmem(), node: process.version, platform: platform(), release: release(), loadAverageAtStart: load.map((l) => round(l, 2)), loadAverageAtEnd: loadavg().map((l) => round(l, 2)), fileLimit },
        options: { proxies: N, loadgens: LOADGENS, channelsPerLoadgen: CHANNELS, curve: CURVE, only: [...only], profiled: flags.profile, names: ['default', 'system_trust_bundle'], timeLimitMinutes: HARD_LIMIT_MS / 60_000 },
        runSeconds: seconds,
        rows,
        details,
      },
      null,
      2,
    ) + '\n',
  );
  return file;
}

async function issuanceScenario(): Promise<void> {
  // SvidIssuer and raw crypto alternate in slices (see bench/issuance.ts): the ratio is same-run.
  const r = await benchIssuance({ seconds: Number(flags['issuance-seconds']) });
  const ofRaw = r.fractionOfRaw;
  details['issuance'] = { ...r, rawCryptoPerSec: round(r.rawCryptoPerSec), fractionOfRaw: round(ofRaw, 3) };
  addRow({
    scenario: 'leaf issuance (ECDSA P-256)',
    measured: `${fmtInt(r.fastPerSec)}/s = ${(ofRaw * 100).toFixed(0)} % of raw crypto ${fmtInt(r.rawCryptoPerSec)}/s (${r.rawCryptoThreads} threads; slices ${r.slices.map((x) => (x.fast / x.raw).toFixed(2)).join(', ')}); ×${r.ratio.toFixed(0)} naive ${fmtInt(r.naivePerSec)}/s`,
    target: '≥ 10,000/s and ≥ 60 % raw',
    pass: r.fastPerSec >= 10_000 && ofRaw >= 0.6,
  });
  // The contenders leave this process collecting garbage for a while: let it settle.
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(2000);
}

/** The friendly shape: one stream per proxy asking for both names, over a few shared connections, `--auth none`. Start-up is measured here. */
async function multiplexedScenario(runDir: string, profileDir: string | undefined): Promise<void> {
  const fixture: Fixture = makeFixture(N);
  cleanups.push(() => fixture.cleanup());
  const server = await spawnServer({ repoRoot: ROOT, resourcesDir: fixture.resourcesDir, stateDir: fixture.stateDir, logDir: runDir, profileDir, auth: 'none' });
  children.add(server.child);
  try {
    const readyAt = await waitReady(server, 300_000);
    const startupMs = readyAt - server.spawnedAt;
    const prepared = await waitPrepared(server, 120_000);
    details['startup'] = { ms: round(startupMs), dataplanes: N, preparedSvids: prepared.held, preparedAfterReadyMs: round(prepared.at - readyAt), note: 'includes node start-up, loading the CLI from its transpiled build (made before the run), and CA autogeneration (fresh state dir)' };
    if (only.has('startup')) addRow({ scenario: `start-up to ready (${fmtInt(N)} Dataplanes)`, measured: `${fmtInt(startupMs)} ms; their ${fmtInt(prepared.held)} SVIDs prepared ${fmtInt(prepared.at - readyAt)} ms later`, target: '≤ 3,000 ms', pass: startupMs <= 3000 });
    if (!only.has('multiplexed')) return;
    await sleep(1000);
    const rssBefore = server.rssKb();
    const lgs = await startLoadgens(ROOT, children, N, LOADGENS, { target: server.target, shape: 'multiplexed', channels: CHANNELS, names: ['default', 'system_trust_bundle'] });
    try {
      await multiplexedPhases(server, fixture, lgs, rssBefore);
    } finally {
      await stopLoadgens(lgs);
    }
  } finally {
    await server.stop();
  }
}

async function multiplexedPhases(server: ServerProc, fixture: Fixture, lgs: Loadgen[], rssBefore: number): Promise<void> {
  const cpu = () => server.cpuMs();
  const storm = await runPhase(cpu, lgs, 'storm', 120_000);
  const stormStats = stats(storm.done);
  const stormAcks = await serverAcksSettled(server, storm.t0, 0);
  details['multiplexed.storm'] = { ...stormStats, responses: storm.responses, gaps: storm.gaps, streamErrors: storm.streamErrors, loadgenCpuMs: storm.loadgenCpuMs, serverCpuMs: storm.serverCpuMs, serverAllAckedByMs: stormAcks.atMs, serverMetrics: stormAcks.metrics };
  const stormOk = stormStats.completed === N;
  addRow({
    scenario: `multiplexed storm (${fmtInt(N)} streams / ${LOADGENS * CHANNELS} conns)`,
    measured: stormOk ? `${fmtInt(stormStats.max!)} ms (p50 ${fmtInt(stormStats.p50!)}), server CPU ${fmtInt(storm.serverCpuMs)} ms, generators ${storm.loadgenCpuMs.map(fmtInt).join('+')} ms` : `incomplete: ${stormStats.completed}/${N} in 120 s`,
    target: '≤ 5,000 ms',
    pass: stormOk && stormStats.max! <= 5000,
  });
  if (!stormOk) throw new Error(`only ${stormStats.completed}/${N} streams were served; errors: ${storm.streamErrors.join('; ') || 'none'}\n${server.logTail()}`);
  await sleep(3000);
  const rssAfter = server.rssKb();
  details['multiplexed.memory'] = { rssBeforeKb: rssBefore, rssAfterKb: rssAfter, perProxyKb: round((rssAfter - rssBefore) / N, 2) };
  addRow({ scenario: 'multiplexed memory per proxy', measured: `${((rssAfter - rssBefore) / N).toFixed(1)} KB (RSS ${fmtInt(rssBefore / 1024)} → ${fmtInt(rssAfter / 1024)} MB)`, target: 'report only', pass: null });

  await sleep(500);
  let acksBefore = (await scrape(server))['mesh_sds_acks_total'] ?? 0;
  const f = await runPhase(cpu, lgs, 'trust', 30_000, () => fixture.writeTrust(2));
  const fs = stats(f.done);
  const facks = await serverAcksSettled(server, f.t0, acksBefore);
  details['multiplexed.fanout'] = { ...fs, responses: f.responses, certChanges: f.sideChanges, gaps: f.gaps, streamErrors: f.streamErrors, loadgenCpuMs: f.loadgenCpuMs, serverCpuMs: f.serverCpuMs, serverAllAckedByMs: facks.atMs };
  addRow({
    scenario: `multiplexed trust fan-out`,
    measured: fs.completed === N ? `${fmtInt(fs.max!)} ms (first ${fmtInt(fs.min!)}, p50 ${fmtInt(fs.p50!)}), server CPU ${fmtInt(f.serverCpuMs)} ms` : `incomplete: ${fs.completed}/${N}`,
    target: '≤ 1,000 ms',
    pass: fs.completed === N && fs.max! <= 1000,
  });

  // Rotation wave: every SVID reissued at once by the admin API (POST /rotate).
  await sleep(500);
  acksBefore = (await scrape(server))['mesh_sds_acks_total'] ?? 0;
  let rotatedByAdmin: number | undefined;
  const r = await runPhase(cpu, lgs, 'rotation', 60_000, async () => {
    const res = await fetch(`${server.adminUrl}/rotate`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
    if (res.status !== 200) throw new Error(`POST /rotate answered ${res.status}: ${await res.text()}`);
    rotatedByAdmin = ((await res.json()) as { rotated?: number }).rotated;
  });
  const first = stats(r.firstNew);
  const acked = stats(r.done);
  const racks = await serverAcksSettled(server, r.t0, acksBefore);
  details['multiplexed.rotation'] = { trigger: 'admin POST /rotate', rotatedByAdmin, firstNewSvid: first, ackedNewSvid: acked, gaps: r.gaps, trustChanges: r.sideChanges, responses: r.responses, streamErrors: r.streamErrors, loadgenCpuMs: r.loadgenCpuMs, serverCpuMs: r.serverCpuMs, serverAllAckedByMs: racks.atMs };
  addRow({
    scenario: `rotation wave (${fmtInt(N)} SVIDs)`,
    measured: first.completed > 0 ? `${fmtInt(first.min!)} → ${fmtInt(first.max!)} ms after POST /rotate, ${fmtInt(acked.completed)}/${fmtInt(N)} rotated, ${r.gaps} gaps` : `no new SVID in 60 s (${r.gaps} gaps)`,
    target: 'report only',
    pass: null,
  });
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : Infinity);
const threads = (r: RealisticResult) => `${fmtInt(r.storm.mainThreadCpuMs)} + ${fmtInt(r.storm.cpuMs - r.storm.mainThreadCpuMs)}`;
const x = (r: number) => `${r.toFixed(2)}×`;

/** A realistic run of mesh-sds (directory store, token auth) with a fresh fixture and tokens of `n` proxies; churn optional. */
async function meshSdsRealistic(
  runDir: string,
  n: number,
  profileDir: string | undefined,
  churn: boolean,
  prepare = true,
): Promise<{ result: RealisticResult; churn?: Awaited<ReturnType<typeof runChurn>>; startupMs: number; preparation?: Preparation }> {
  const changed = churn ? churnSet(n, CHURN.rate * CHURN.seconds) : [];
  const fixture = makeFixture(n, changed);
  cleanups.push(() => fixture.cleanup());
  const tokensFile = join(runDir, `tokens-${n}.txt`);
  const tokenMs = await makeTokens(ROOT, n, tokensFile, { stateDir: fixture.stateDir });
  details[`tokens-${n}`] = { ms: round(tokenMs), note: 'first through `mesh-sds token generate`, the rest with TokenAuthority.generate on the same state dir' };
  // --perf records the server of the main realistic run (not the curve's, nor the run with
  // --prepare-svids 0, whose recording replaced the first's and whose empty summaries replaced its
  // perf.realistic-* in the JSON): see bench/perf.ts.
  const perf = perfDir && n === N && prepare ? perfDir : undefined;
  const server = await spawnServer({ repoRoot: ROOT, resourcesDir: fixture.resourcesDir, stateDir: fixture.stateDir, logDir: runDir, profileDir, auth: 'token', nodeArgs: perf ? ['--perf-prof'] : [], serveArgs: prepare ? [] : ['--prepare-svids', '0'] });
  children.add(server.child);
  let recording: PerfRecording | undefined;
  let windows: { storm: [number, number]; fanout?: [number, number]; churn?: [number, number] } | undefined;
  try {
    const readyAt = await waitReady(server, 300_000);
    const startupMs = readyAt - server.spawnedAt;
    const preparation = prepare ? await measurePreparation(server, readyAt) : undefined;
    // Attached once ready: perf -p follows the threads that exist then (V8's helpers, the issuance workers).
    if (perf) recording = recordPerf(server.pid, perf);
    const result = await runRealistic(
      { label: 'mesh-sds', targets: [server.target], cpuMs: () => server.cpuMs(), mainThreadCpuMs: () => server.mainThreadCpuMs(), kernel: () => server.kernel(), rssKb: () => server.rssKb(), fanout: (k) => fixture.writeTrust(trustCasOfRound(k)) },
      { root: ROOT, children, n, loadgens: LOADGENS, tokensFile, connectConcurrency: CONNECT_CONCURRENCY, keep: churn, fanoutRounds: n === N ? FANOUT_ROUNDS : 1 },
    );
    windows = { storm: result.stormWindow, fanout: result.fanout?.window };
    if (!churn) return { result, startupMs, preparation };
    try {
      await sleep(1000);
      const c = await runChurn(() => server.cpuMs(), result.lgs!, { ...CHURN, n, changed, change: (i) => fixture.changeDataplane(i) });
      windows.churn = c.window;
      return { result, churn: c, startupMs, preparation };
    } finally {
      await stopLoadgens(result.lgs!);
      delete result.lgs;
    }
  } finally {
    await server.stop();
    if (recording) {
      await recording.done();
      // A perf problem is reported, not a failed benchmark.
      try {
        for (const [phase, window] of Object.entries(windows ?? {})) {
          if (!window) continue;
          const summary = summarisePerf(recording, window);
          details[`perf.realistic-${phase}`] = summary;
          console.log(`\n${formatPerfSummary(summary, `the realistic ${phase === 'fanout' ? 'fan-out' : phase}`)}\n`);
        }
      } catch (e) {
        console.warn(`--perf: no summary (${(e as Error).message.split('\n')[0]}); data kept in ${recording.dir}`);
      }
      discardJitdump(server.pid, ROOT);
    }
  }
}

/** The SVIDs a server prepared for its Dataplanes before any proxy connected: how many, how long after ready, the CPU and RSS from ready until then. */
interface Preparation {
  held: number;
  afterReadyMs: number;
  cpuAfterReadyMs: number;
  rssGrowthKb: number;
}

async function measurePreparation(server: ServerProc, readyAt: number): Promise<Preparation> {
  const cpu0 = server.cpuMs();
  const rss0 = server.rssKb();
  const p = await waitPrepared(server, 120_000);
  return { held: p.held, afterReadyMs: round(p.at - readyAt), cpuAfterReadyMs: server.cpuMs() - cpu0, rssGrowthKb: server.rssKb() - rss0 };
}

async function floorRealistic(kind: FloorKind, n: number, trustPemsFile: string, tokensFile: string): Promise<RealisticResult> {
  const floor = await spawnFloor(ROOT, children, kind, trustPemsFile);
  try {
    return await runRealistic(
      { label: `${kind} floor`, targets: [floor.target], cpuMs: () => floor.cpuMs(), mainThreadCpuMs: () => floor.mainThreadCpuMs(), kernel: () => floor.kernel(), rssKb: () => floor.rssKb(), fanout: async () => void (await floor.push()) },
      { root: ROOT, children, n, loadgens: LOADGENS, tokensFile, connectConcurrency: CONNECT_CONCURRENCY, fanoutRounds: FANOUT_ROUNDS },
    );
  } finally {
    await floor.stop();
  }
}

function churnRow(label: string, c: Awaited<ReturnType<typeof runChurn>>): Row {
  const ok = c.latency.completed === c.changes && c.othersTouched === 0 && c.cpuFractionOfCore <= 0.1 && (c.latency.p99 ?? Infinity) <= 1000;
  return {
    scenario: `churn ${CHURN.rate}/s × ${CHURN.seconds} s, ${label}`,
    measured: `CPU ${(c.cpuFractionOfCore * 100).toFixed(1)} % of a core; new SVID p99 ${c.latency.p99 === null ? '–' : fmtInt(c.latency.p99)} ms (${c.latency.completed}/${c.changes}); others sent anything: ${c.othersTouched}`,
    target: '≤ 10 %, ≤ 1 s, 0',
    pass: ok,
  };
}

/** The production shape on mesh-sds and on the two transport floors, with the same generators and tokens; churn on mesh-sds. */
async function realisticScenario(runDir: string, profileDir: string | undefined): Promise<RealisticResult> {
  const m = await meshSdsRealistic(runDir, N, profileDir, only.has('churn'));
  const me = m.result;
  details['realistic.mesh-sds'] = me;
  details['realistic.preparation'] = m.preparation;
  if (m.churn) {
    details['churn.directory'] = m.churn;
    addRow(churnRow('directory store', m.churn));
  }
  if (!only.has('realistic')) return me;
  const fx = makeFixture(1);
  cleanups.push(() => fx.cleanup());
  const floors: Partial<Record<FloorKind, RealisticResult>> = {};
  // grpc-h2: mesh-sds' own gRPC transport with nothing behind it (not a SPEC reference): what is
  // left of mesh-sds' figures above it is the product's own work (auth, identity, issuance, xDS).
  for (const kind of ['grpc-js', 'http2', 'grpc-h2'] as const) {
    await sleep(1000);
    floors[kind] = await floorRealistic(kind, N, fx.trustPemsFile, join(runDir, `tokens-${N}.txt`));
    details[`realistic.floor.${kind}`] = floors[kind];
  }
  // The same storm on a server that issues every SVID when its proxy connects (--prepare-svids 0):
  // what preparing them ahead moves out of the storm.
  await sleep(1000);
  const onConnect = (await meshSdsRealistic(runDir, N, undefined, false, false)).result;
  details['realistic.mesh-sds-issue-on-connect'] = onConnect;
  const g = floors['grpc-js']!;
  const h = floors['http2']!;
  const lg = (r: RealisticResult) => r.storm.loadgenCpuMs.reduce((a, b) => a + b, 0);
  const prep = m.preparation!;
  addRow({
    scenario: `SVIDs prepared before the storm (${fmtInt(N)} Dataplanes)`,
    measured: `${fmtInt(prep.held)} held ${fmtInt(prep.afterReadyMs)} ms after ready; from ready until then CPU ${fmtInt(prep.cpuAfterReadyMs)} ms, RSS +${fmtInt(prep.rssGrowthKb / 1024)} MB (${(prep.rssGrowthKb / Math.max(1, prep.held)).toFixed(1)} KB each; not in the storm's memory per proxy below)`,
    target: 'report only',
    pass: null,
  });
  addRow({
    scenario: 'realistic storm, SVIDs issued on connect (--prepare-svids 0)',
    measured: `CPU ${fmtInt(onConnect.storm.cpuMs)} ms = ${x(ratio(onConnect.storm.cpuMs, g.storm.cpuMs))} grpc-js (main ${threads(onConnect)} other ms); all in ${fmtInt(onConnect.storm.done.max!)} ms; memory ${onConnect.memory.perProxyKb.toFixed(1)} KB/proxy = ${x(ratio(onConnect.memory.perProxyKb, g.memory.perProxyKb))}`,
    target: 'report only',
    pass: null,
  });
  addRow({
    scenario: `realistic storm (${fmtInt(N)} conns × 2 streams, tokens)`,
    measured: `CPU ${fmtInt(me.storm.cpuMs)} ms = ${x(ratio(me.storm.cpuMs, g.storm.cpuMs))} grpc-js ${fmtInt(g.storm.cpuMs)}, ${x(ratio(me.storm.cpuMs, h.storm.cpuMs))} http2 ${fmtInt(h.storm.cpuMs)}; all in ${fmtInt(me.storm.done.max!)} ms; gens ${fmtInt(lg(me))} ms`,
    target: '≤ 1.0× grpc-js',
    pass: me.storm.cpuMs <= g.storm.cpuMs,
  });
  const mf = me.fanout!;
  const gf = g.fanout!;
  const rounds = (f: NonNullable<RealisticResult['fanout']>) => f.rounds.map((r) => `${fmtInt(r.maxMs ?? NaN)} ms/${fmtInt(r.cpuMs)} ms CPU`).join(', ');
  const hf = h.fanout!;
  addRow({
    scenario: `realistic fan-out (${fmtInt(N)} trust streams)`,
    measured: `${fmtInt(mf.done.max ?? NaN)} ms (${mf.done.completed}/${N}); CPU ${fmtInt(mf.cpuMs)} ms = ${x(ratio(mf.cpuMs, gf.cpuMs))} grpc-js ${fmtInt(gf.cpuMs)}, ${x(ratio(mf.cpuMs, hf.cpuMs))} http2 ${fmtInt(hf.cpuMs)}; median of ${mf.rounds.length}: ${rounds(mf)}; grpc-js ${rounds(gf)}`,
    target: '≤ 1 s, ≤ 1.0×',
    pass: mf.done.completed === N && (mf.done.max ?? Infinity) <= 1000 && mf.cpuMs <= gf.cpuMs,
  });
  const own = floors['grpc-h2']!;
  addRow({
    scenario: 'realistic: own transport alone',
    measured: `storm CPU ${fmtInt(own.storm.cpuMs)} ms, fan-out ${fmtInt(own.fanout!.cpuMs)} ms, ${own.memory.perProxyKb.toFixed(1)} KB/proxy (src/server/grpc-h2 answering pre-encoded); mesh-sds' own work above it: storm ${fmtInt(me.storm.cpuMs - own.storm.cpuMs)} ms, ${(me.memory.perProxyKb - own.memory.perProxyKb).toFixed(1)} KB/proxy`,
    target: 'report only',
    pass: null,
  });
  addRow({
    scenario: 'realistic storm CPU: main thread + other threads',
    measured: `mesh-sds ${threads(me)} ms; grpc-js ${threads(g)}; http2 ${threads(h)}; own transport ${threads(own)} (other threads: issuance workers, V8's compiler and GC helpers)`,
    target: 'report only',
    pass: null,
  });
  const kernel = (r: RealisticResult) => `${fmtInt(r.storm.systemCpuMs)} ms, ${fmtInt(r.storm.minorFaults / 1000)}k faults`;
  addRow({
    scenario: 'realistic storm: kernel CPU, page faults',
    measured: `mesh-sds ${kernel(me)}; grpc-js ${kernel(g)}; http2 ${kernel(h)}; own transport ${kernel(own)} (system time is in the CPU above: sockets, and first touches of memory)`,
    target: 'report only',
    pass: null,
  });
  const withPrepared = me.memory.perProxyKb + prep.rssGrowthKb / N;
  addRow({
    scenario: 'realistic memory per proxy',
    measured: `${me.memory.perProxyKb.toFixed(1)} KB = ${x(ratio(me.memory.perProxyKb, g.memory.perProxyKb))} grpc-js ${g.memory.perProxyKb.toFixed(1)} KB, ${x(ratio(me.memory.perProxyKb, h.memory.perProxyKb))} http2 ${h.memory.perProxyKb.toFixed(1)} KB; with the prepared SVIDs' RSS ${withPrepared.toFixed(1)} KB = ${x(ratio(withPrepared, g.memory.perProxyKb))}`,
    target: '≤ 1.0× grpc-js',
    pass: me.memory.perProxyKb <= g.memory.perProxyKb,
  });
  details['realistic.ratios'] = {
    stormCpuVsGrpcJs: round(ratio(me.storm.cpuMs, g.storm.cpuMs), 3),
    stormCpuVsHttp2: round(ratio(me.storm.cpuMs, h.storm.cpuMs), 3),
    stormCpuIssueOnConnectVsGrpcJs: round(ratio(onConnect.storm.cpuMs, g.storm.cpuMs), 3),
    fanoutCpuVsGrpcJs: round(ratio(mf.cpuMs, gf.cpuMs), 3),
    fanoutCpuVsHttp2: round(ratio(mf.cpuMs, hf.cpuMs), 3),
    memoryVsGrpcJs: round(ratio(me.memory.perProxyKb, g.memory.perProxyKb), 3),
    memoryVsHttp2: round(ratio(me.memory.perProxyKb, h.memory.perProxyKb), 3),
  };
  return me;
}

/** Per-proxy CPU (storm + fan-out) and memory of mesh-sds at each size; 20k within 1.25× of 1k. */
async function curveScenario(runDir: string, atN: RealisticResult | undefined): Promise<void> {
  const points: { n: number; stormCpuPerProxyMs: number; fanoutCpuPerProxyMs: number; kbPerProxy: number }[] = [];
  for (const asked of CURVE) {
    // One connection per proxy is one descriptor in the server: a size over the open files limit is cut to fit (and says so).
    const n = Math.min(asked, Math.floor((fileLimitNow - 1000) / 1000) * 1000);
    if (n !== asked) console.warn(`curve: ${asked} proxies need more than the open files limit ${fileLimitNow}; measuring ${n}`);
    const r = n === N && atN ? atN : (await meshSdsRealistic(runDir, n, undefined, false)).result;
    points.push({ n, stormCpuPerProxyMs: round(r.storm.cpuMs / n, 3), fanoutCpuPerProxyMs: round((r.fanout?.cpuMs ?? 0) / n, 3), kbPerProxy: r.memory.perProxyKb });
    await sleep(1000);
  }
  details['curve'] = points;
  const base = points[0]!;
  const last = points[points.length - 1]!;
  const cpuGrowth = ratio(last.stormCpuPerProxyMs + last.fanoutCpuPerProxyMs, base.stormCpuPerProxyMs + base.fanoutCpuPerProxyMs);
  const memGrowth = ratio(last.kbPerProxy, base.kbPerProxy);
  addRow({
    scenario: `scaling ${points.map((p) => `${p.n / 1000}k`).join('/')} (per proxy)`,
    measured: points.map((p) => `${p.n / 1000}k: ${p.stormCpuPerProxyMs.toFixed(2)}+${p.fanoutCpuPerProxyMs.toFixed(2)} ms ${p.kbPerProxy.toFixed(0)} KB`).join('; ') + `; last/first CPU ${x(cpuGrowth)}, mem ${x(memGrowth)}`,
    target: '≤ 1.25×',
    pass: cpuGrowth <= 1.25 && memGrowth <= 1.25,
  });
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

main().catch(async (e: Error) => {
  console.error(`\nbench failed: ${e.stack ?? e.message}`);
  await teardown();
  process.exit(2);
});
