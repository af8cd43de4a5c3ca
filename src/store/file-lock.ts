// A lock file beside a state file, so read-modify-write of that file is atomic across processes.
import { constants } from 'node:fs';
import { open, rename, unlink, link, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { OWN_START_TIME, recorderRuns } from '../api/process-life.js';

export interface FileLockOptions {
  /** Give up waiting after this long. Default 30 s. */
  timeoutMs?: number;
  /** Another host's lock older than this is stale (a local one is stale only when its process is gone). Default 30 s. */
  staleMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A stamp is one short line; a lock file longer than this is not one. */
const MAX_LOCK_BYTES = 4096;

/**
 * A lock file's text, read without waiting on what is not a file: a FIFO put at the lock's path
 * (the state folder is the operator's) blocked readFile on a libuv thread for ever, and with it
 * every state update, past any deadline. Throws like readFile (ENOENT when gone, EISDIR for a
 * folder); a FIFO or a device is refused with the code ENOTLOCK, a link with ELOOP.
 */
async function readLock(path: string): Promise<string> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: st.isDirectory() ? 'EISDIR' : 'ENOTLOCK' });
    const buf = Buffer.alloc(MAX_LOCK_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAX_LOCK_BYTES, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** When this process started (wall clock): a lock with its pid taken before then is a previous life's. */
const STARTED_AT_MS = Date.now() - Math.ceil(process.uptime() * 1000);

/**
 * Runs `fn` while holding `lockPath`, created with O_EXCL (`wx`), which fails when it exists. The file
 * records host, pid and time: a lock whose process on this host is gone, or another host's lock
 * older than `staleMs`, is broken, so a crashed writer never blocks the state for good.
 */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, opts: FileLockOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const staleMs = opts.staleMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  const stamp = `${hostname()} ${process.pid} ${Date.now()} ${randomBytes(6).toString('hex')} ${OWN_START_TIME}\n`;
  await acquire(lockPath, stamp, staleMs, deadline, timeoutMs);
  try {
    return await fn();
  } finally {
    // Only remove our own lock (a stale-breaker may have replaced it if we stalled past staleMs).
    if ((await readLock(lockPath).catch(() => '')) === stamp) await unlink(lockPath).catch(() => undefined);
  }
}

async function acquire(lockPath: string, stamp: string, staleMs: number, deadline: number, timeoutMs: number): Promise<void> {
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    try {
      const fh = await open(lockPath, 'wx', 0o600);
      try {
        await fh.writeFile(stamp);
      } catch (e) {
        // A lock left empty (a full disk) would hold up every later writer until it is judged stale.
        await fh.close().catch(() => undefined);
        await unlink(lockPath).catch(() => undefined);
        throw e;
      }
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const broken = await breakIfStale(lockPath, staleMs);
    if (broken === true) continue;
    if (Date.now() > deadline) throw new Error(`state lock ${lockPath} still held after ${timeoutMs} ms${broken ? ` (it cannot be read: ${broken})` : ''}`);
    // Jitter keeps a crowd of waiters from retrying in lock-step.
    await sleep(delay / 2 + Math.random() * delay);
  }
}

/** true: gone or broken, try again at once; false: held; a string: there but unreadable (why), held. */
async function breakIfStale(lockPath: string, staleMs: number): Promise<boolean | string> {
  const seen = await readLock(lockPath).catch((e: NodeJS.ErrnoException) => e);
  if (seen instanceof Error) {
    if (seen.code === 'ENOENT') return true; // released meanwhile: try again at once
    // A folder, or a root-owned lock for a server run as another user: not released. Taken as
    // released, it was retried in a tight loop for ever, past every deadline.
    if (seen.code === 'ENOTLOCK') return 'not a regular file (a FIFO or a device put at its path?)';
    if (seen.code === 'ELOOP') return 'a symbolic link, not followed';
    return seen.code ?? seen.message;
  }
  if (!(await isStale(lockPath, seen, staleMs))) return false;
  // Move it aside atomically; if what we moved is not what we judged stale, another process broke
  // the stale lock and took a fresh one in between: put that one back.
  const aside = `${lockPath}.${randomBytes(6).toString('hex')}.stale`;
  try {
    await rename(lockPath, aside);
  } catch {
    return true;
  }
  const moved = await readLock(aside).catch(() => undefined);
  if (moved !== seen) await link(aside, lockPath).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
  return true;
}

async function isStale(lockPath: string, content: string, staleMs: number): Promise<boolean> {
  const [host, pidText, atText, , startText] = content.trim().split(' ');
  const at = Number(atText);
  // Not written yet (its owner is between open and write, or died there): judge by the file's age.
  if (!Number.isFinite(at)) {
    const mtime = await stat(lockPath).then((s) => s.mtimeMs, () => Date.now());
    return Date.now() - mtime > staleMs;
  }
  // Another host's lock is judged by its age alone: we cannot see whether its owner lives.
  if (host !== hostname()) return Date.now() - at > staleMs;
  // A live owner on this host is never broken, however long it holds the lock: breaking it lost
  // updates (2 of 20 concurrent token revocations, under a load average of 50, where a holder
  // stalled past 30 s). Waiters give up with an error instead, and nothing written is lost.
  const pid = Number(pidText);
  // Our own pid on a lock taken before this process started: a previous life of this pid (a
  // restarted container's server is pid 1 again), which would otherwise never be broken.
  if (pid === process.pid) return at < STARTED_AT_MS;
  // Gone, or alive but started after the lock was taken by the pid's previous owner.
  return !recorderRuns(pid, startText);
}
