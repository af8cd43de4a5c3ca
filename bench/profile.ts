// Summarises V8 .cpuprofile files (node --cpu-prof): top functions by self time, per thread.
// Run directly: npx tsx bench/profile.ts DIR_OR_FILE… [--top 25] [--from S --to S]
// (--from/--to: only samples in that window, seconds since the profile started, e.g. one phase).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface HotSpot {
  function: string;
  location: string;
  selfMs: number;
  percent: number;
}

export interface ProfileSummary {
  file: string;
  /** Node names its files CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread. */
  thread: string;
  totalMs: number;
  /** Time outside idle / program / GC pseudo-frames. */
  busyMs: number;
  gcMs: number;
  top: HotSpot[];
  byFile: { location: string; selfMs: number; percent: number }[];
  /** Functions of this repository (not node_modules, not node:) by inclusive time: where the time goes from our side. */
  ownInclusive: HotSpot[];
}

function shortUrl(url: string, root: string): string {
  if (!url) return '(native)';
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = path.lastIndexOf('node_modules/');
  return nm >= 0 ? path.slice(nm + 'node_modules/'.length) : path.startsWith('/') ? relative(root, path) : path;
}

export function summariseProfile(file: string, top = 25, root = process.cwd(), window?: { from: number; to: number }): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; attribute each sample the delta of the next one.
  let at = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    at += prof.timeDeltas[i] ?? 0;
    if (window && (at < window.from * 1e6 || at >= window.to * 1e6)) continue;
    const dt = prof.timeDeltas[i + 1] ?? 0;
    selfUs.set(prof.samples[i]!, (selfUs.get(prof.samples[i]!) ?? 0) + Math.max(dt, 0));
  }
  const fnTotals = new Map<string, { fn: string; loc: string; us: number }>();
  const fileTotals = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  let gcUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    totalUs += us;
    const fn = n.callFrame.functionName || '(anonymous)';
    if (fn === '(idle)' || fn === '(program)') {
      idleUs += us;
      continue;
    }
    if (fn === '(garbage collector)') gcUs += us;
    const loc = `${shortUrl(n.callFrame.url, root)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    const key = `${fn}@${loc}`;
    const cur = fnTotals.get(key) ?? { fn, loc, us: 0 };
    cur.us += us;
    fnTotals.set(key, cur);
    const fileKey = shortUrl(n.callFrame.url, root);
    fileTotals.set(fileKey, (fileTotals.get(fileKey) ?? 0) + us);
  }
  // Inclusive time of the repository's own functions (each counted once per sample stack).
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const own = new Map<string, { fn: string; loc: string; us: number }>();
  for (const [id, us] of selfUs) {
    const fnName = byId.get(id)?.callFrame.functionName;
    if (fnName === '(idle)' || fnName === '(program)') continue;
    const seen = new Set<string>();
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
      const cf = byId.get(x)!.callFrame;
      const loc = shortUrl(cf.url, root);
      if (!cf.url.startsWith('file://') || cf.url.includes('/node_modules/') || loc.startsWith('/') || loc.startsWith('..')) continue;
      const fn = cf.functionName || '(anonymous)';
      const key = `${fn}@${loc}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const cur = own.get(key) ?? { fn, loc, us: 0 };
      cur.us += us;
      own.set(key, cur);
    }
  }
  const busyUs = totalUs - idleUs;
  const pct = (us: number) => (busyUs > 0 ? Math.round((1000 * us) / busyUs) / 10 : 0);
  const ms = (us: number) => Math.round(us / 100) / 10;
  const parts = basename(file).split('.');
  return {
    file,
    thread: parts.length >= 6 ? parts[4]! : '?',
    totalMs: ms(totalUs),
    busyMs: ms(busyUs),
    gcMs: ms(gcUs),
    top: [...fnTotals.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((t) => ({ function: t.fn, location: t.loc, selfMs: ms(t.us), percent: pct(t.us) })),
    byFile: [...fileTotals.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([location, us]) => ({ location, selfMs: ms(us), percent: pct(us) })),
    ownInclusive: [...own.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((t) => ({ function: t.fn, location: t.loc, selfMs: ms(t.us), percent: pct(t.us) })),
  };
}

export function profileFiles(dirOrFile: string): string[] {
  if (!statSync(dirOrFile).isDirectory()) return [dirOrFile];
  return readdirSync(dirOrFile)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(dirOrFile, f));
}

export function formatSummary(s: ProfileSummary): string {
  const lines = [`${basename(s.file)} (thread ${s.thread}): busy ${s.busyMs} ms of ${s.totalMs} ms, GC ${s.gcMs} ms`];
  lines.push('  self ms     %  function  (location)');
  for (const t of s.top) lines.push(`  ${t.selfMs.toFixed(1).padStart(8)} ${t.percent.toFixed(1).padStart(5)}  ${t.function}  (${t.location})`);
  lines.push('  by file (self):');
  for (const f of s.byFile) lines.push(`  ${f.selfMs.toFixed(1).padStart(8)} ${f.percent.toFixed(1).padStart(5)}  ${f.location}`);
  if (s.ownInclusive.length > 0) {
    lines.push('  repository functions by inclusive time:');
    for (const t of s.ownInclusive) lines.push(`  ${t.selfMs.toFixed(1).padStart(8)} ${t.percent.toFixed(1).padStart(5)}  ${t.function}  (${t.location})`);
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const flag = (name: string): number | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args.splice(i, 2)[1]) : undefined;
  };
  const top = flag('--top') ?? 25;
  const from = flag('--from');
  const to = flag('--to');
  const window = from !== undefined || to !== undefined ? { from: from ?? 0, to: to ?? Infinity } : undefined;
  for (const a of args) for (const f of profileFiles(a)) console.log(formatSummary(summariseProfile(f, top, process.cwd(), window)) + '\n');
}
