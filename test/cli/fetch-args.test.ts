// `mesh-sds fetch` arguments the shell passes as bytes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './run.js';

describe('mesh-sds fetch arguments', () => {
  it('an --out-dir that is not UTF-8 is refused naming the flag, and nothing is made', () => {
    const root = mkdtempSync(join(tmpdir(), 'mesh-sds-fetch-args-'));
    try {
      // Byte 0xff is not UTF-8; node would read the argument as "out\uFFFD".
      const r = spawnSync('sh', ['-c', `exec "$0" "$1" fetch --server 127.0.0.1:1 --node default.web --timeout 1s --out-dir "$(printf '${root}/out\\377')"`, process.execPath, BIN], { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--out-dir .* is not valid UTF-8/);
      assert.deepEqual(readdirSync(root), []);
      assert.equal(existsSync(join(root, 'out\uFFFD')), false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
