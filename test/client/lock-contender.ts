// Takes and releases the lock of an out-dir (argv[2]) over and over until argv[3] (ms since the
// epoch), checking each time it holds it that the lock file is its own; prints the counts as JSON.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOCK_FILE, OutDirLocked, takeLock } from '../../src/client/lock.js';

const [dir, until] = [process.argv[2]!, Number(process.argv[3])];
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
  if (!record.startsWith(`${process.pid} `)) notOurs++;
  lock.release();
}
process.stdout.write(JSON.stringify({ held, notOurs }));
