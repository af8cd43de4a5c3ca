// One agent per out-dir. Two agents writing one folder (a second `fetch --watch` started by
// mistake, an old one not stopped) switch the files under each other, may write different
// identities, and remove each other's version folders. The first takes `.mesh-sds-fetch.lock`
// (created O_EXCL, holding its pid and that process's start time); a second is refused naming that
// pid. A lock whose process no longer runs was left by an agent killed (SIGKILL, OOM) and is taken
// over, also when its pid now names another process (pids are reused: a restarted container's
// agent may be pid 1 again, or the pid of what now runs beside it).
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, linkSync, lstatSync, openSync, readdirSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { OWN_START_TIME, recorderRuns } from '../api/process-life.js';

export const LOCK_FILE = '.mesh-sds-fetch.lock';

export class OutDirLocked extends Error {}

/** The pid and start time a lock records (`<pid> <start>`; older agents wrote the pid alone). */
function holderOf(path: string): { pid: number; start: string | undefined } | 'absent' | undefined {
  try {
    const [pidText, start] = readLock(path).trim().split(' ');
    const pid = Number(pidText);
    return Number.isInteger(pid) && pid > 0 ? { pid, start } : undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : undefined;
  }
}

/** A lock is one short line; anything longer was not written by an agent. */
const MAX_LOCK_BYTES = 128;

/**
 * Reads a lock that is a regular file: a FIFO or a link to /dev/zero put at the path (a shared
 * out-dir) would block this synchronous read for good, or never end it. Otherwise throws.
 */
function readLock(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${path} is not a regular file`);
    const buf = Buffer.alloc(MAX_LOCK_BYTES);
    return buf.subarray(0, readSync(fd, buf, 0, MAX_LOCK_BYTES, 0)).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

const OWN_RECORD = `${process.pid} ${OWN_START_TIME}\n`;
/** A lock this process wrote: its pid and start time (one of our pid without it is a previous life's). */
const isOurs = (holder: ReturnType<typeof holderOf>): boolean => typeof holder === 'object' && holder.pid === process.pid && holder.start === OWN_START_TIME;

export interface Lock {
  release(): void;
}

/**
 * Makes the lock with our record already in it: written aside and linked into place (link(2) fails
 * if the lock exists), so another agent never reads it empty, takes it for one a killed agent left
 * half written and removes it, and runs beside us. A file system without hard links gets it made
 * in place.
 */
function createLock(path: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, OWN_RECORD);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    const direct = openSync(path, 'wx', 0o600);
    try {
      writeSync(direct, OWN_RECORD);
    } finally {
      closeSync(direct);
    }
  } finally {
    unlinkSync(tmp);
  }
}

/** Removes `path` if it can; one it cannot is found again by the next attempt. */
function quietUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already, or not ours to remove.
  }
}

/** A holder whose process runs (not this one: a lock of our pid not ours is a previous life's). */
const live = (holder: ReturnType<typeof holderOf>): holder is { pid: number; start: string | undefined } =>
  typeof holder === 'object' && holder.pid !== process.pid && recorderRuns(holder.pid, holder.start);

/**
 * Removes a lock found stale, holding `<lock>.takeover` meanwhile: two agents that both found it
 * stale would otherwise both remove "it", the second the lock the first had just made. Under the
 * takeover lock the lock can only be removed by us (its holder is gone) or made when absent, so
 * read again there it is still the stale one.
 */
function removeStale(path: string, dir: string): void {
  const takeover = `${path}.takeover`;
  try {
    createLock(takeover);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const other = holderOf(takeover);
    if (live(other)) {
      throw new OutDirLocked(`another agent (pid ${other.pid}) is taking over the lock of ${dir} (${LOCK_FILE}) left by an agent that no longer runs: refusing to run a second one on the same out-dir`);
    }
    // Left by an agent killed while it took over: removed, and the next attempt tries again.
    if (other !== 'absent') quietUnlink(takeover);
    return;
  }
  try {
    const holder = holderOf(path);
    if (holder !== 'absent' && !isOurs(holder) && !live(holder)) quietUnlink(path);
  } finally {
    quietUnlink(takeover);
  }
}

/** What createLock writes aside: `<lock>[.takeover].<pid>.<hex>.tmp`. */
const LEFTOVER = /^\.mesh-sds-fetch\.lock(?:\.takeover)?\.(\d+)\.[0-9a-f]+\.tmp$/;
/** Younger than this, a file written aside may be another agent's lock being made. */
const LEFTOVER_AGE_MS = 60_000;

/**
 * Removes the files written aside by agents killed inside createLock (they would pile up, one per
 * kill): those over a minute old whose process no longer runs. Ours are all gone by now (createLock
 * removes its own before it returns), so one of our pid is a previous life's.
 */
function removeLeftovers(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(LEFTOVER.exec(name)?.[1] ?? NaN);
    if (!Number.isSafeInteger(pid) || pid <= 0) continue;
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (!st.isFile() || Date.now() - st.mtimeMs < LEFTOVER_AGE_MS) continue;
      const holder = holderOf(path);
      const start = typeof holder === 'object' && holder.pid === pid ? holder.start : undefined;
      if (pid === process.pid || !recorderRuns(pid, start)) quietUnlink(path);
    } catch {
      // Gone meanwhile: nothing to remove.
    }
  }
}

/**
 * Takes the lock of `dir` (which exists, and is checked to be ours), or confirms that this process
 * holds it (made again if the folder was). Synchronous: the few calls are quick, and the exit
 * handler that releases it must be synchronous anyway.
 */
export function takeLock(dir: string): Lock {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      createLock(path);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw e;
    }
    const holder = holderOf(path);
    if (isOurs(holder)) break;
    // Released since: tried again, not removed (it may be another agent's new lock by now).
    if (holder === 'absent') continue;
    if (live(holder)) {
      throw new OutDirLocked(`another agent (pid ${holder.pid}) is keeping ${dir} current: refusing to run a second one on the same out-dir (${LOCK_FILE} there holds its pid)`);
    }
    // Left by an agent that no longer runs, by a previous life of our pid, or half written: taken over.
    removeStale(path, dir);
  }
  removeLeftovers(dir);
  let release = onExit.get(path);
  if (!release) {
    const own = () => {
      if (!isOurs(holderOf(path))) return;
      try {
        unlinkSync(path);
      } catch {
        // Gone already.
      }
    };
    release = own;
    onExit.set(path, own);
    process.once('exit', own);
  }
  const registered = release;
  return {
    release: () => {
      process.removeListener('exit', registered);
      onExit.delete(path);
      registered();
    },
  };
}

/** The exit handler of each lock this process holds (taken again on every write: the folder may have been removed and made again). */
const onExit = new Map<string, () => void>();
