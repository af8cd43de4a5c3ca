// bin/mesh-sds.js runs the TypeScript sources under tsx (npm start, npx mesh-sds). Started from a
// transpiled mirror of this repository (scripts/build-js.js, what the suite runs from), it runs the
// mirror's JavaScript instead; a mirror built from another repository, or a folder that merely
// looks like one, is never run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BIN } from './run.js';

const realBin = realpathSync(BIN);
const repo = dirname(dirname(realBin));
const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;

function run(bin: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8', timeout: 60_000 });
}

/** A folder shaped like the mirror: bin links to the repository's, src/cli/main.js says it ran. */
function fakeMirror(mark: string | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-entry-'));
  symlinkSync(dirname(realBin), join(dir, 'bin'));
  mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
  writeFileSync(join(dir, 'src', 'cli', 'main.js'), "console.log('transpiled main ran');\n");
  if (mark !== undefined) writeFileSync(join(dir, '.mesh-sds-transpiled-from'), mark);
  return dir;
}

test('the repository bin runs the TypeScript sources under tsx', () => {
  const r = run(realBin);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), version);
});

test('a mirror built from this repository runs its own JavaScript; one built from another, or unmarked, runs the sources', (t) => {
  const ours = fakeMirror(repo);
  const foreign = fakeMirror('/somewhere/else');
  const unmarked = fakeMirror(undefined);
  t.after(() => [ours, foreign, unmarked].forEach((d) => rmSync(d, { recursive: true, force: true })));
  const fromOurs = run(join(ours, 'bin', 'mesh-sds.js'));
  assert.equal(fromOurs.status, 0, fromOurs.stderr);
  assert.equal(fromOurs.stdout.trim(), 'transpiled main ran');
  for (const dir of [foreign, unmarked]) {
    const r = run(join(dir, 'bin', 'mesh-sds.js'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), version, dir);
  }
});
