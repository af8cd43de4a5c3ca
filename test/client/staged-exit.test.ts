// A process that exits between writing a staged file and renaming it (a stop whose grace ran out)
// leaves no temp file behind: one may hold a private key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
