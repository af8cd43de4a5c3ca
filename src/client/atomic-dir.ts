// Switches a whole set of files at once, as Kubernetes' AtomicWriter does for Secret volumes (and
// as Envoy's `watched_directory` expects): each version is written into a fresh hidden directory
// `..<UTC time>.<random>/`, and a `..data` symlink is pointed at it by renaming a new symlink over
// it, one rename(2). The names readers open (cert.pem, key.pem, …) are symlinks to `..data/<name>`,
// made once. A reader therefore never finds a key beside a certificate of another version (with
// plain files renamed one after the other, a reader saw the new key beside the old certificate for
// about 0.5 ms on most rotations). The previous version's directory is removed after the switch.
import { mkdtemp, chmod, lstat, open, readdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { commitAll, forgetPending, MAX_OWN_FILE_BYTES, previousOf, readRegularFile, trackPending, type Previous, type StagedFile } from './files.js';

export const DATA_LINK = '..data';

/** A version directory: `..` then the UTC time, then mkdtemp's random suffix. */
const VERSION_DIR = /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d{3}\.[A-Za-z0-9]{6}$/;
/** A version directory that is not the current one and is this old was left by a stopped writer. */
const STALE_VERSION_MS = 60_000;

export interface Payload {
  file: string;
  data: string;
  mode: number;
}

/** Reads the current version of `file` through `..data`; undefined when absent, not a regular file, or too large. */
async function currentOf(dir: string, p: Payload): Promise<{ data: string; mode: number } | undefined> {
  return readRegularFile(join(dir, DATA_LINK, p.file), Buffer.byteLength(p.data) + 1).then((r) => (r ? { data: r.data.toString('utf8'), mode: r.mode } : undefined));
}

/** True when `dir/<file>` is already the symlink `..data/<file>`. */
async function linked(dir: string, file: string): Promise<boolean> {
  const target = await readlink(join(dir, file)).catch(() => undefined);
  return target === `${DATA_LINK}/${file}`;
}

function versionName(now = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `..${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.${p(now.getUTCMilliseconds(), 3)}.`;
}

/** Points `dir/name` at `target` by renaming a new symlink over it (atomic for readers). */
async function swapLink(dir: string, name: string, target: string): Promise<void> {
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  await symlink(target, tmp);
  try {
    await rename(tmp, join(dir, name));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** A symlink staged beside `path`, renamed over it on commit (the same interface as a staged file). */
async function stageLink(path: string, target: string): Promise<StagedFile> {
  const tmp = `${path.replace(/[^/]+$/, (b) => `.${b}`)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await symlink(target, tmp);
  return {
    path,
    commit: () => rename(tmp, path),
    abort: () => rm(tmp, { force: true }),
  };
}

async function writeVersion(dir: string, files: Payload[]): Promise<string> {
  const path = await mkdtemp(join(dir, versionName()));
  trackPending(path); // removed if the process ends before the switch: it holds a key
  try {
    // Readable by the consumer running as this user and by others who may read cert.pem; key.pem
    // itself is 0600, as a plain file was.
    await chmod(path, 0o755);
    for (const f of files) {
      const fh = await open(join(path, f.file), 'wx', f.mode);
      try {
        await fh.writeFile(f.data);
        await fh.chmod(f.mode); // the umask may have narrowed it
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    const dh = await open(path, 'r');
    await dh.sync().catch(() => undefined);
    await dh.close();
  } catch (e) {
    await rm(path, { recursive: true, force: true });
    forgetPending(path);
    throw e;
  }
  return path.slice(dir.length + 1);
}

/** Removes version directories other than `keep`: the one just replaced, and any a stopped writer left (over a minute old). */
async function removeOldVersions(dir: string, keep: string, replaced: string | undefined, nowMs = Date.now()): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name === keep || !VERSION_DIR.test(name)) continue;
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    if (name !== replaced && nowMs - st.mtimeMs < STALE_VERSION_MS) continue;
    await rm(join(dir, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Makes `dir` hold `files` (in this order), switching all of them at once. Returns the names whose
 * content changed (empty: all were current). `beforeSwitch` runs once the new version is written,
 * before readers can see it (only when something changed).
 */
export function writeAtomically(dir: string, files: Payload[], beforeSwitch?: () => Promise<void>): Promise<string[]> {
  return switchFiles(dir, files, beforeSwitch, true);
}

/** `linkFirst`: plain files are first linked to a version of what they hold (see below). */
async function switchFiles(dir: string, files: Payload[], beforeSwitch: (() => Promise<void>) | undefined, linkFirst: boolean): Promise<string[]> {
  const changed: string[] = [];
  for (const f of files) {
    const cur = await currentOf(dir, f);
    if (!cur || cur.data !== f.data || cur.mode !== f.mode) changed.push(f.file);
  }
  const unlinked: string[] = [];
  for (const f of files) if (!(await linked(dir, f.file))) unlinked.push(f.file);
  if (changed.length === 0 && unlinked.length === 0) return [];
  if (linkFirst && changed.length > 0 && unlinked.length > 0) {
    // Plain files of an older layout become links one name at a time: done with the new version,
    // a reader could open the new key beside the old certificate. So the names are first linked
    // to a version holding what they hold now (no name changes content), then all switch at once.
    const seen = await whatReadersSee(dir, files, unlinked);
    if (seen !== undefined) {
      await switchFiles(dir, seen, undefined, false);
      return switchFiles(dir, files, beforeSwitch, false);
    }
  }

  const previousVersion = await readlink(join(dir, DATA_LINK)).catch(() => undefined);
  let version: string | undefined;
  if (changed.length > 0) {
    version = await writeVersion(dir, files);
    try {
      await beforeSwitch?.();
      await swapLink(dir, DATA_LINK, version);
    } catch (e) {
      await rm(join(dir, version), { recursive: true, force: true });
      throw e;
    } finally {
      forgetPending(join(dir, version));
    }
  }
  // The names readers open become links into ..data, once (an older version wrote plain files).
  if (unlinked.length > 0) {
    const staged: { file: StagedFile; previous: Previous }[] = [];
    try {
      for (const file of unlinked) {
        const path = join(dir, file);
        staged.push({ previous: await previousOf(path), file: await stageLink(path, `${DATA_LINK}/${file}`) });
      }
      await commitAll(staged);
    } catch (e) {
      await Promise.all(staged.map((s) => s.file.abort()));
      // The files read before are back; so must ..data be, for those that were links already.
      if (version !== undefined) {
        if (previousVersion !== undefined) await swapLink(dir, DATA_LINK, previousVersion).catch(() => undefined);
        else await rm(join(dir, DATA_LINK), { force: true });
        await rm(join(dir, version), { recursive: true, force: true });
      }
      throw e;
    }
  }
  await syncDirOf(dir);
  const current = version ?? previousVersion;
  if (current !== undefined) await removeOldVersions(dir, current, version !== undefined ? previousVersion : undefined);
  return changed;
}

/**
 * What a reader opening each name finds now, as a version to write (plain files, and files through
 * `..data` for names already linked); undefined when no plain file is there or one cannot be read
 * (not a regular file, over MAX_OWN_FILE_BYTES): the names are then linked as they come.
 */
async function whatReadersSee(dir: string, files: Payload[], unlinked: readonly string[]): Promise<Payload[] | undefined> {
  const seen: Payload[] = [];
  let plain = 0;
  for (const f of files) {
    const path = unlinked.includes(f.file) ? join(dir, f.file) : join(dir, DATA_LINK, f.file);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue; // absent now, and absent from the version (its link finds nothing until the switch)
    const r = await readRegularFile(path, MAX_OWN_FILE_BYTES);
    if (!r) return undefined;
    if (unlinked.includes(f.file)) plain++;
    // Never wider than the new version's mode: a key.pem an older run (or a user) left 0644 is not
    // copied at 0644, not even for the moment before the new version replaces it.
    seen.push({ file: f.file, data: r.data.toString('utf8'), mode: r.mode & f.mode });
  }
  return plain > 0 ? seen : undefined;
}

async function syncDirOf(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (!fh) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}
