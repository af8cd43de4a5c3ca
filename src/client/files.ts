// Atomic file replacement: a temp file in the same directory (same filesystem, so rename is atomic),
// written and fsynced, then renamed over the target. Staging and committing are separate so a
// caller can stage several files and rename them back to back, keeping the window in which a
// reader sees a mix of old and new files as short as two rename(2) calls. A rename that fails part
// way (EBUSY on a bind-mounted file, a directory in the way) puts back what was already replaced, so
// a key never stays beside a certificate of another pair, and no staged file (one holds a key) stays.
import { randomBytes } from 'node:crypto';
import { constants, rmSync } from 'node:fs';
import { lstat, open, readdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { processRuns } from '../api/process-life.js';

export interface StagedFile {
  path: string;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Temp files written and not yet renamed or removed. A process that exits in the middle of a write
 * (a stop whose grace ran out) removes them on its way out: one may hold a private key.
 */
const pending = new Set<string>();
let removeOnExit = false;

/** Removes the staged files not yet renamed: on exit, or before a process ends itself by a signal. */
export function removeStagedFiles(): void {
  for (const f of pending) rmSync(f, { force: true, recursive: true });
  pending.clear();
}

/** Removes `path` (a file, or a version directory holding a key) on exit unless forgotten first. */
export function trackPending(path: string): void {
  if (!removeOnExit) {
    removeOnExit = true;
    process.once('exit', removeStagedFiles);
  }
  pending.add(path);
}

export function forgetPending(path: string): void {
  pending.delete(path);
}

/**
 * Reads `path` if it is a regular file of at most `maxBytes` (through symlinks in its folders, not
 * in its last part); undefined otherwise. Never opens a FIFO or a device, whose read could block
 * for ever or never end.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<{ data: Buffer; mode: number } | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isFile() || st.size > maxBytes) return undefined;
  // O_NONBLOCK: should a FIFO be put there after the lstat, opening it does not wait for a writer.
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const now = await fh.stat();
    if (!now.isFile() || now.size > maxBytes) return undefined;
    const buf = Buffer.alloc(now.size + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > now.size) return undefined; // grew while read
    return { data: buf.subarray(0, bytesRead), mode: now.mode & 0o777 };
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}

export async function stageFile(path: string, data: string | Buffer, mode: number): Promise<StagedFile> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  if (!removeOnExit) {
    removeOnExit = true;
    process.once('exit', removeStagedFiles);
  }
  // Created with the final mode, so a key is never readable by others, not even as a temp file.
  pending.add(tmp);
  const fh = await open(tmp, 'wx', mode).catch((e: unknown) => {
    pending.delete(tmp);
    throw e;
  });
  try {
    await fh.writeFile(data);
    await fh.chmod(mode); // the umask may have narrowed it; make it exact
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    pending.delete(tmp);
    throw e;
  }
  await fh.close();
  return {
    path,
    commit: async () => {
      await rename(tmp, path);
      pending.delete(tmp);
    },
    abort: async () => {
      await rm(tmp, { force: true });
      pending.delete(tmp);
    },
  };
}

/** A staged file's name: `.<target>.<pid>.<8 hex>.tmp` (stageFile). */
const STAGED_NAME = /^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;
/** A staged file lives for the milliseconds between its write and its rename; one this old was left behind. */
const STALE_STAGED_MS = 60_000;

/**
 * Removes temp files that an earlier process staged for `targets` in `dir` and never renamed or
 * removed: it was killed (SIGKILL, OOM, power loss) between the two, and one may hold a private key.
 * A file is stale when the process that wrote it no longer runs or when it is older than a write
 * can take; one of a live writer (another agent on the same folder) is left alone. Returns the
 * names removed.
 */
export async function removeStaleStagedFiles(dir: string, targets: readonly string[], nowMs = Date.now()): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const m = STAGED_NAME.exec(name);
    if (!m || !targets.includes(m[1]!)) continue;
    const pid = Number(m[2]);
    if (pid === process.pid) continue; // ours: removed by the write that staged it
    const path = join(dir, name);
    // Not followed: the links staged for `..data` and the names in it (atomic-dir.ts) are stale too,
    // and one to a version folder (or to nothing) is no file.
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile() && !st?.isSymbolicLink()) continue;
    if (processRuns(pid) && nowMs - st.mtimeMs < STALE_STAGED_MS) continue;
    await rm(path, { force: true }).then(() => removed.push(name), () => undefined);
  }
  return removed;
}

/** What a path held before a commit: its content and mode, a symlink's target, `absent`, or `unreadable` (it cannot be put back). */
export type Previous = { data: Buffer; mode: number } | { link: string } | 'absent' | 'unreadable';

/** A file we write is a few KiB of PEM; one larger than this at our path was not written by us. */
export const MAX_OWN_FILE_BYTES = 1 << 20;

/**
 * Only a regular file is read (a FIFO or a link to /dev/zero put at the path would block the read
 * for good, or never end it); anything else cannot be put back, and is replaced all the same.
 */
export async function previousOf(path: string): Promise<Previous> {
  try {
    const l = await lstat(path);
    if (l.isSymbolicLink()) return { link: await readlink(path) };
    const read = await readRegularFile(path, MAX_OWN_FILE_BYTES);
    return read ?? 'unreadable';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'unreadable';
  }
}

/**
 * Renames the staged files in order. If one fails, the files already renamed are put back as they
 * were (in reverse order) and the error says so, or names those it could not put back; staged files
 * not committed are always removed.
 */
export async function commitAll(staged: { file: StagedFile; previous: Previous }[]): Promise<void> {
  const done: { file: StagedFile; previous: Previous }[] = [];
  try {
    for (const s of staged) {
      await s.file.commit();
      done.push(s);
    }
  } catch (e) {
    const failed = basename(staged[done.length]!.file.path);
    const reason = (e as Error).message;
    const notRestored = await putBack(done.reverse());
    const restored = done.map((d) => basename(d.file.path)).filter((f) => !notRestored.includes(f));
    const what = [
      restored.length > 0 ? `put back ${restored.join(', ')} as they were` : '',
      notRestored.length > 0 ? `could not put back ${notRestored.join(', ')}: the files may be of different versions` : '',
    ].filter(Boolean);
    throw new Error(`cannot replace ${failed}: ${reason}${what.length > 0 ? `; ${what.join('; ')}` : ''}`, { cause: e });
  } finally {
    await Promise.all(staged.slice(done.length).map((s) => s.file.abort()));
  }
}

/** Restores each file's previous content; returns the names of those it could not restore. */
async function putBack(done: { file: StagedFile; previous: Previous }[]): Promise<string[]> {
  const failed: string[] = [];
  for (const { file, previous } of done) {
    try {
      if (previous === 'unreadable') throw new Error('its previous content could not be read');
      if (previous === 'absent') await rm(file.path, { force: true });
      else if ('link' in previous) {
        const tmp = `${file.path}.${process.pid}.${randomBytes(4).toString('hex')}.link`;
        await symlink(previous.link, tmp);
        await rename(tmp, file.path).catch(async (e: unknown) => {
          await rm(tmp, { force: true });
          throw e;
        });
      } else {
        const restore = await stageFile(file.path, previous.data, previous.mode);
        await restore.commit().catch(async (e: unknown) => {
          await restore.abort(); // its copy of the old key must not stay either
          throw e;
        });
      }
    } catch {
      failed.push(basename(file.path));
    }
  }
  return failed;
}

/** Makes the renames durable. Best effort: some filesystems refuse fsync on a directory. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (!fh) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}
