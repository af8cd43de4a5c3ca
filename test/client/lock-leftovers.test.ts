// An agent killed (SIGKILL, OOM) between writing its lock aside and linking it into place leaves
// `.mesh-sds-fetch.lock.<pid>.<hex>.tmp` behind: the next agent to take the lock removes those whose
// process is gone and that are over a minute old, and nothing else.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_FILE, takeLock } from '../../src/client/lock.js';

describe('lock files left by killed agents', () => {
  let root: string;
  let alive: ChildProcess;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-lock-leftovers-'));
    alive = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  });
  after(() => {
    alive.kill();
    rmSync(root, { recursive: true, force: true });
  });

  it('those of a process gone and over a minute old are removed when the lock is taken; fresh ones, live ones and other files stay', () => {
    const dead = Number(spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim());
    const old = new Date(Date.now() - 5 * 60_000);
    const put = (name: string, content: string, aged: boolean) => {
      writeFileSync(join(root, name), content);
      if (aged) utimesSync(join(root, name), old, old);
    };
    put(`${LOCK_FILE}.${dead}.0a1b2c3d.tmp`, `${dead} 12345\n`, true); // removed
    put(`${LOCK_FILE}.takeover.${dead}.0a1b2c3e.tmp`, '', true); // killed before writing: removed
    put(`${LOCK_FILE}.${dead}.0a1b2c3f.tmp`, `${dead} 12345\n`, false); // fresh: stays
    put(`${LOCK_FILE}.${alive.pid}.0a1b2c40.tmp`, `${alive.pid}\n`, true); // its process runs: stays
    put(`${LOCK_FILE}.notapid.tmp`, '', true); // not of that form: stays
    put('cert.pem.tmp', '', true); // not ours: stays
    const lock = takeLock(root);
    try {
      assert.deepEqual(readdirSync(root).sort(), [
        LOCK_FILE,
        `${LOCK_FILE}.${alive.pid}.0a1b2c40.tmp`,
        `${LOCK_FILE}.${dead}.0a1b2c3f.tmp`,
        `${LOCK_FILE}.notapid.tmp`,
        'cert.pem.tmp',
      ].sort());
    } finally {
      lock.release();
    }
  });
});
