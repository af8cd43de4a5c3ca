// A process that exits between writing a staged file and renaming it (a stop whose grace ran out)
// leaves no temp file behind: one may hold a private key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

test('a staged file not yet renamed is removed when the process exits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-staged-'));
  try {
    const files = pathToFileURL(join(import.meta.dirname, '..', '..', 'src', 'client', 'files.ts')).href;
    const script = `
      const { stageFile } = await import(${JSON.stringify(files)});
      await stageFile(${JSON.stringify(join(dir, 'key.pem'))}, 'PRIVATE', 0o600);
      console.log(require('node:fs').readdirSync(${JSON.stringify(dir)}).join(','));
      process.exit(0);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=commonjs', '-e', `(async () => {${script}})()`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\.key\.pem\.\d+\.[0-9a-f]+\.tmp/, 'the staged file existed before the exit');
    assert.deepEqual(readdirSync(dir), [], 'and is gone after it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a staged file of a writer still running is left alone until it is older than a write can take', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-staged-'));
  try {
    const { removeStaleStagedFiles } = await import('../../src/client/files.js');
    const live = `.key.pem.${process.ppid}.0123abcd.tmp`; // the test runner's parent: a process that runs
    writeFileSync(join(dir, live), 'PRIVATE');
    assert.deepEqual(await removeStaleStagedFiles(dir, ['key.pem']), [], 'a live writer may be about to rename it');
    assert.deepEqual(await removeStaleStagedFiles(dir, ['key.pem'], Date.now() + 61_000), [live], 'a minute later it was left behind');
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the staged symlinks a killed writer left (..data and the names linked into it) are removed, not only staged files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-staged-'));
  try {
    const { removeStaleStagedFiles } = await import('../../src/client/files.js');
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
    mkdirSync(join(dir, '..2026_01_01_00_00_00.000.AbCdEf'));
    writeFileSync(join(dir, 'kept.txt'), 'x');
    // What a SIGKILL between symlink(2) and rename(2) leaves: one link to a version folder, one to a name in ..data.
    const data = `...data.${dead}.0badc0de.tmp`;
    const cert = `.cert.pem.${dead}.0badc0de.tmp`;
    symlinkSync('..2026_01_01_00_00_00.000.AbCdEf', join(dir, data));
    symlinkSync('..data/cert.pem', join(dir, cert));
    const removed = await removeStaleStagedFiles(dir, ['cert.pem', '..data']);
    assert.deepEqual(removed.sort(), [data, cert].sort());
    assert.deepEqual(readdirSync(dir).sort(), ['..2026_01_01_00_00_00.000.AbCdEf', 'kept.txt'], 'what they pointed at stays');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
