// Takes and releases the lock of an out-dir (argv[2]) over and over until argv[3] (ms since the
// epoch), checking each time it holds it that the lock file is its own; prints the counts as
// JSON. Given a pid that no longer runs (argv[4]), it leaves the lock as an agent killed while
// holding it would (recording that pid) instead of releasing it, so each next lock is a takeover.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOCK_FILE, OutDirLocked, takeLock } from '../../src/client/lock.js';

const [dir, until, deadPid] = [process.argv[2]!, Number(process.argv[3]), process.argv[4]];
let held = 0;
let notOurs = 0;
while (Date.now() < until) {
  let lock;
  try {
    lock = takeLock(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof OutDirLocked || code === 'EEXIST' || code === 'ENOENT') continue;
    throw e;
  }
  held++;
  const record = (() => {
    try {
      return readFileSync(join(dir, LOCK_FILE), 'utf8');
    } catch {
      return '';
    }
  })();
  const ours = record.startsWith(`${process.pid} `);
  if (!ours) notOurs++;
  if (deadPid !== undefined && ours) {
    const tmp = join(dir, `dead.${process.pid}`);
    writeFileSync(tmp, `${deadPid} 1\n`);
    renameSync(tmp, join(dir, LOCK_FILE));
  }
  lock.release();
}
process.stdout.write(JSON.stringify({ held, notOurs }));
