#!/usr/bin/env node
// Node 20's test runner does not expand globs or pick up .ts files, so list them here.
// The suite runs from a transpiled mirror (scripts/build-js.js) of its own, .build/run-<pid>, removed
// when it ends (and, when a run was killed, by the next): each test process, and each mesh-sds it
// spawns, starts without tsx's loader. MESH_SDS_TEST_TSX=1 runs the sources under tsx.
// Usage: node scripts/run-tests.js [filter-substring…]
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT, buildMirror } from './build-js.js';

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const filters = process.argv.slice(2);
const files = walk('test').sort().filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Three files at once on the 2-core machines: about a third of a file's time is spent waiting (on
// child processes, timers, Postgres), and with two at once the cores idled through 38 % of the run
// (701 s; three: 566 s, the same CPU time).
const concurrency = process.env.TEST_CONCURRENCY ?? '3';
const underTsx = process.env.MESH_SDS_TEST_TSX === '1';
const BUILD = join(ROOT, '.build');
removeMirrorsOfEndedRuns();
const mirror = underTsx ? undefined : buildMirror(join(BUILD, `run-${process.pid}`));
const args = mirror === undefined ? files : files.map((f) => join(mirror, f.replace(/\.ts$/, '.js')));
const loader = mirror === undefined ? ['--import', 'tsx'] : [];
const r = spawnSync(process.execPath, [...loader, '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...args], { stdio: 'inherit' });
if (mirror !== undefined) rmSync(mirror, { recursive: true, force: true });
process.exit(r.status ?? 1);

/** Mirrors of runs that were killed before they could remove their own. */
function removeMirrorsOfEndedRuns() {
  let names;
  try {
    names = readdirSync(BUILD);
  } catch {
    return; // no .build yet
  }
  for (const name of names) {
    const pid = /^run-(\d+)(\.\d+\.tmp)?$/.exec(name)?.[1];
    if (pid !== undefined && !runs(Number(pid))) rmSync(join(BUILD, name), { recursive: true, force: true });
  }
}

function runs(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}
