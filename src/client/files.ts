// Atomic file replacement: a temp file in the same directory (same filesystem, so rename is atomic),
// written and fsynced, then renamed over the target. Staging and committing are separate so a
// caller can stage several files and rename them back to back, keeping the window in which a
// reader sees a mix of old and new files as short as two rename(2) calls.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface StagedFile {
  path: string;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export async function stageFile(path: string, data: string, mode: number): Promise<StagedFile> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  // Created with the final mode, so a key is never readable by others, not even as a temp file.
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode); // the umask may have narrowed it; make it exact
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  return {
    path,
    commit: () => rename(tmp, path),
    abort: () => rm(tmp, { force: true }),
  };
}

/** Makes the renames durable. Best effort: some filesystems refuse fsync on a directory. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (!fh) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}

/** True when `path` already holds exactly `data` with exactly `mode`. */
export async function sameFile(path: string, data: string, mode: number): Promise<boolean> {
  try {
    const [st, current] = await Promise.all([stat(path), readFile(path, 'utf8')]);
    return current === data && (st.mode & 0o777) === mode;
  } catch {
    return false;
  }
}
