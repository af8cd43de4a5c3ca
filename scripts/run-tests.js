#!/usr/bin/env node
// Node 20's test runner does not expand globs or pick up .ts files, so list them here.
// The suite runs from the transpiled mirror (scripts/build-js.js): each test process, and each
// mesh-sds it spawns, starts without tsx's loader. MESH_SDS_TEST_TSX=1 runs the sources under tsx.
// Usage: node scripts/run-tests.js [filter-substring…]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildMirror } from './build-js.js';

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
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const underTsx = process.env.MESH_SDS_TEST_TSX === '1';
const mirror = underTsx ? undefined : buildMirror();
const args = mirror === undefined ? files : files.map((f) => join(mirror, f.replace(/\.ts$/, '.js')));
const loader = mirror === undefined ? ['--import', 'tsx'] : [];
const r = spawnSync(process.execPath, [...loader, '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...args], { stdio: 'inherit' });
process.exit(r.status ?? 1);
