// Two mesh-sds replicas on one Postgres schema (fresh, dropped afterwards), the generators split
// the proxies between them: the same per-proxy figures as one server, one CA for both, and the
// churn scenario on the Postgres store (changes through the store's own `apply`).
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { PostgresStore } from '../src/store/postgres.js';
import { churnSet, fixtureTexts, makeFixture, trustCasOfRound } from './fixtures.js';
import { round, stopLoadgens } from './loadgens.js';
import { runChurn, runRealistic, type ChurnResult, type RealisticResult } from './realistic.js';
import { spawnServer, waitPrepared, waitReady, type ServerProc } from './server.js';
import type { Row } from './table.js';
import { makeTokens } from './tokens.js';

export interface ReplicaOptions {
  root: string;
  children: Set<ChildProcess>;
  cleanups: (() => Promise<void> | void)[];
  runDir: string;
  n: number;
  loadgens: number;
  pg: string;
  connectConcurrency: number;
  churn: { rate: number; seconds: number };
  /** The single-server realistic run of the same N, to compare per-proxy figures with. */
  single?: RealisticResult;
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function withSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.toString();
}

export async function replicaScenario(o: ReplicaOptions): Promise<{ rows: Row[]; details: object }> {
  const schema = `bench_${Date.now().toString(36)}_${process.pid}`;
  const url = withSchema(o.pg, schema);
  const dropSchema = async () => {
    const c = new pg.Client({ connectionString: o.pg });
    await c.connect();
    try {
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await c.end();
    }
  };
  o.cleanups.push(dropSchema);
  const changed = churnSet(o.n, o.churn.rate * o.churn.seconds);
  const fixture = makeFixture(o.n, changed);
  o.cleanups.push(() => fixture.cleanup());

  // Load the resources through the store's own apply (as `mesh-sds apply` does), then the tokens.
  const t0 = performance.now();
  const writer = await PostgresStore.open(url);
  o.cleanups.push(() => writer.close());
  for (const f of fixtureTexts(fixture.resourcesDir)) {
    const errors = await writer.apply(f.text, f.name);
    if (errors.length) throw new Error(`loading ${f.name} into Postgres: ${errors.map((e) => e.message).join('; ')}`);
  }
  const loadMs = performance.now() - t0;
  const tokensFile = join(o.runDir, `tokens-pg-${o.n}.txt`);
  await makeTokens(o.root, o.n, tokensFile, { stateDir: fixture.stateDir, store: url });

  const servers: ServerProc[] = [];
  try {
    // Both at the same instant on the fresh schema: they must agree on one CA.
    servers.push(
      ...(await Promise.all(
        [0, 1].map(async (k) => {
          const s = await spawnServer({ repoRoot: o.root, store: url, stateDir: join(fixture.root, `state-${k}`), logDir: o.runDir, auth: 'token' });
          o.children.add(s.child);
          return s;
        }),
      )),
    );
    await Promise.all(servers.map((s) => waitReady(s, 300_000)));
    // Each replica prepares an SVID for every Dataplane (it cannot know which proxies will be its own).
    const prepared = await Promise.all(servers.map((s) => waitPrepared(s, 120_000)));
    const cpuMs = () => servers.reduce((a, s) => a + s.cpuMs(), 0);
    const r = await runRealistic(
      {
        label: 'mesh-sds ×2 (Postgres)',
        targets: servers.map((s) => s.target),
        cpuMs,
        mainThreadCpuMs: () => servers.reduce((a, s) => a + s.mainThreadCpuMs(), 0),
        kernel: () => servers.map((s) => s.kernel()).reduce((a, k) => ({ systemCpuMs: a.systemCpuMs + k.systemCpuMs, minorFaults: a.minorFaults + k.minorFaults })),
        rssKb: () => servers.reduce((a, s) => a + s.rssKb(), 0),
        fanout: async (k) => void (await writer.apply(fixture.trustText(trustCasOfRound(k)), 'trust.yaml')),
      },
      { root: o.root, children: o.children, n: o.n, loadgens: o.loadgens, tokensFile, connectConcurrency: o.connectConcurrency, keep: true },
    );
    let churn: ChurnResult | undefined;
    try {
      await sleep(1000);
      churn = await runChurn(cpuMs, r.lgs!, { ...o.churn, n: o.n, changed, change: async (i) => void (await writer.apply(fixture.changedDataplaneText(i), `dp-${i}.yaml`)) });
    } finally {
      await stopLoadgens(r.lgs!);
      delete r.lgs;
    }
    const rows: Row[] = [];
    const s = o.single;
    const vs = (a: number, b: number | undefined) => (b ? ` (${(a / b).toFixed(2)}× one server)` : '');
    const perCpu = (r.storm.cpuMs + (r.fanout?.cpuMs ?? 0)) / o.n;
    const singleCpu = s ? (s.storm.cpuMs + (s.fanout?.cpuMs ?? 0)) / s.proxies : undefined;
    rows.push({
      scenario: `2 replicas on Postgres (${fmtInt(o.n)} proxies)`,
      measured: `CPU ${perCpu.toFixed(2)} ms/proxy${vs(perCpu, singleCpu)}, ${r.memory.perProxyKb.toFixed(1)} KB/proxy${vs(r.memory.perProxyKb, s?.memory.perProxyKb)}, fan-out ${fmtInt(r.fanout?.done.max ?? NaN)} ms, CAs seen: ${r.trustDigests.length}`,
      target: '≤ 1.25× one, 1 CA',
      pass: r.trustDigests.length === 1 && (singleCpu === undefined || (perCpu <= 1.25 * singleCpu && r.memory.perProxyKb <= 1.25 * s!.memory.perProxyKb)),
    });
    const c = churn;
    rows.push({
      scenario: `churn ${o.churn.rate}/s × ${o.churn.seconds} s, Postgres ×2`,
      measured: `CPU ${(c.cpuFractionOfCore * 100).toFixed(1)} % of a core (2 replicas together, ${(c.cpuFractionOfCore * 50).toFixed(1)} % each); new SVID p99 ${c.latency.p99 === null ? '–' : fmtInt(c.latency.p99)} ms (${c.latency.completed}/${c.changes}); others sent anything: ${c.othersTouched}`,
      target: '≤ 10 %, ≤ 1 s, 0',
      pass: c.latency.completed === c.changes && c.othersTouched === 0 && c.cpuFractionOfCore <= 0.1 && (c.latency.p99 ?? Infinity) <= 1000,
    });
    return { rows, details: { schema, loadMs: round(loadMs), preparedSvids: prepared.map((p) => p.held), realistic: r, churn } };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
