import { mkdir, open, readdir, link, unlink, rename, chmod, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { StateStore, UpdateFn } from './types.js';
import { withFileLock } from './file-lock.js';
import { readFlagFile } from '../api/flag-file.js';
import type { FlagFileError } from '../api/secret-text.js';

/** A state value (a CA with its history, the revocation list) is far smaller; a bound for what is not one. */
const MAX_STATE_VALUE_BYTES = 64 * 1024 * 1024;

/**
 * State kept as files under `--state-dir` (directory 0700, files 0600). `getOrCreate` is
 * first-writer-wins through link(2), which fails when the target exists, so two processes
 * sharing the directory agree on one value. `update`, `put` and `delete` hold `<file>.lock` (see
 * file-lock.ts) around their write, so a read-modify-write never loses a concurrent writer's change.
 * The directory is created by the first write, not by opening: read-only commands leave no trace.
 *
 * A key segment is a file or directory name, but names are at most NAME_MAX bytes and a valid trust
 * domain (up to 253) plus a temp suffix is longer (ENAMETOOLONG: the CA never got stored). So a
 * segment too long for that is split in parts (see segmentNames) that `keys()` joins back.
 */
export class FileStateStore implements StateStore {
  private root: Promise<void> | undefined;

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<FileStateStore> {
    return new FileStateStore(resolve(dir));
  }

  private ensureRoot(): Promise<void> {
    this.root ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await chmod(this.dir, 0o700);
    })().catch((e: unknown) => {
      this.root = undefined;
      throw e;
    });
    return this.root;
  }

  private pathOf(key: string): string {
    // Names ending like our lock and temp files are refused so a key can never alias one of them.
    if (
      !/^[A-Za-z0-9._/-]+$/.test(key) ||
      /\.(lock|tmp|stale)$/.test(key) ||
      key.split('/').some((s) => s === '' || s === '.' || s === '..')
    ) {
      throw new Error(`invalid state key "${key}"`);
    }
    const segments = key.split('/');
    const p = join(this.dir, ...segments.flatMap((seg, i) => segmentNames(seg, i === segments.length - 1)));
    if (!p.startsWith(this.dir + sep)) throw new Error(`invalid state key "${key}"`);
    return p;
  }

  private async tempFile(value: string, target: string): Promise<string> {
    await this.ensureRoot();
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    // Synced before it is renamed into place: after a crash the key holds the old value or the
    // new one, never an empty file (an empty revocation list would let revoked tokens in).
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(value);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return tmp;
  }

  async get(key: string): Promise<string | undefined> {
    const path = this.pathOf(key);
    try {
      // Never a plain readFile: a FIFO put at a key's path blocked one of libuv's four threads for
      // ever (start-up hung without a word), a link to /dev/zero was read until memory ran out.
      return (await readFlagFile(`state key ${key}`, path, MAX_STATE_VALUE_BYTES)).toString('utf8');
    } catch (e) {
      if ((e as FlagFileError).code === 'ENOENT') return undefined;
      throw e; // names the key, its path and why (a directory, a FIFO, EACCES)
    }
  }

  async getOrCreate(key: string, create: () => Promise<string> | string): Promise<string> {
    const existing = await this.get(key);
    if (existing !== undefined) return existing;
    const target = this.pathOf(key);
    const tmp = await this.tempFile(await create(), target);
    try {
      await link(tmp, target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    const stored = await this.get(key);
    if (stored === undefined) throw new Error(`state key ${key}: ${target} exists but cannot be read (a dangling symlink?)`);
    return stored;
  }

  async update(key: string, fn: UpdateFn): Promise<string | undefined> {
    const target = this.pathOf(key);
    await this.ensureRoot();
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    return withFileLock(lockPath(target), async () => {
      const next = fn(await this.get(key));
      if (next === undefined) await this.remove(target);
      else await rename(await this.tempFile(next, target), target);
      return next;
    });
  }

  async put(key: string, value: string): Promise<void> {
    await this.update(key, () => value);
  }

  async delete(key: string): Promise<void> {
    await this.update(key, () => undefined);
  }

  /**
   * Every stored key: regular files below the directory (a symlink counts as what it points to),
   * without lock and temp files; split segments joined back. An entry no key could name (an
   * editor's `x~`, `lost+found` at the root of a volume) is not state and is skipped:
   * one stopped serve and every command that reads the state.
   */
  async keys(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return [];
        throw e;
      });
      for (const e of entries) {
        if (!KEY_ENTRY.test(e.name) || /\.(lock|tmp|stale)$/.test(e.name)) continue;
        const path = join(dir, e.name);
        // Followed like the files get() reads: a symlinked folder or record is state too (its
        // records must be checked against the state key and sealed like any other).
        const kind = e.isSymbolicLink() ? await stat(path).then((st) => (st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other'), () => 'other') : e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other';
        if (kind === 'dir') {
          if (depth >= MAX_KEY_DEPTH) throw new Error(`state folder ${path} is nested deeper than any state key (a symlink loop?)`);
          if (e.name.endsWith(CONTINUED)) await walk(path, `${prefix}${e.name.slice(0, -CONTINUED.length)}`, depth + 1);
          else await walk(path, `${prefix}${e.name}/`, depth + 1);
        } else if (kind === 'file') out.push(`${prefix}${e.name}`);
      }
    };
    await walk(this.dir, '', 0);
    return out.sort();
  }

  private async remove(target: string): Promise<void> {
    await unlink(target).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }
}

/** A file or folder name some key maps to: the characters of keys (a split segment's folder ends with CONTINUED). */
const KEY_ENTRY = /^[A-Za-z0-9._-]+\+?$/;
/** Folders below the state directory deeper than any key goes (its segments, split ones included). */
const MAX_KEY_DEPTH = 32;

/** Longest file name (bytes) of the usual file systems; keys are ASCII, one byte a character. */
const NAME_MAX = 255;
/** `.<12 hex>.tmp`, beside the target while it is written. */
const TEMP_SUFFIX = 17;
/** `.lock` and, when a dead holder's lock is moved aside, `.lock.<12 hex>.stale` (file-lock.ts). */
const STALE_LOCK_SUFFIX = 24;
/**
 * File names up to this keep their own name (their temp file must fit beside them), directory
 * names up to NAME_MAX: every key that could be stored before keeps its path.
 */
const MAX_PLAIN_FILE = NAME_MAX - TEMP_SUFFIX;
/** Parts of a longer segment are at most this long, so their temp and lock files fit too. */
const MAX_PART = 200;
/** Ends every part of a split segment but the last; no key has it, so nothing else ends so. */
const CONTINUED = '+';

/**
 * The names a key segment is stored under: itself, or when longer than a file (the last segment,
 * MAX_PLAIN_FILE) or a directory (NAME_MAX) may be named, parts of near-equal length (100 to 200
 * characters, so never `.` or `..`), each but the last a directory named `<part>+`. Joining them
 * back gives the segment exactly (keys(), and sealed values, which authenticate the key name, need
 * that).
 */
function segmentNames(segment: string, last: boolean): string[] {
  if (segment.length <= (last ? MAX_PLAIN_FILE : NAME_MAX)) return [segment];
  const n = Math.ceil(segment.length / MAX_PART);
  const size = Math.floor(segment.length / n);
  const longer = segment.length % n;
  const parts: string[] = [];
  for (let i = 0, at = 0; i < n; i++) {
    const len = size + (i < longer ? 1 : 0);
    parts.push(i < n - 1 ? `${segment.slice(at, at + len)}${CONTINUED}` : segment.slice(at, at + len));
    at += len;
  }
  return parts;
}

/**
 * `<file>.lock`, unless its moved-aside name would not fit NAME_MAX (a file name of 232 to 238):
 * then a shorter one, still one per key (a hash of the name) and never another key's lock (`+`).
 */
function lockPath(target: string): string {
  const name = basename(target);
  if (name.length + STALE_LOCK_SUFFIX <= NAME_MAX) return `${target}.lock`;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 16);
  return join(dirname(target), `${name.slice(0, MAX_PART)}${CONTINUED}${hash}.lock`);
}

/** For tests: the lock file `update` holds for `key`. */
export function stateLockPath(store: FileStateStore, key: string): string {
  return lockPath((store as unknown as { pathOf(key: string): string }).pathOf(key));
}
