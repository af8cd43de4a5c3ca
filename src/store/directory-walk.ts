// Which resource files a directory holds, by their displayed path: symlinks followed (loops
// detected), dot entries skipped, and a Kubernetes ConfigMap/Secret volume read through `..data`.
import { open, readdir, readlink, realpath, stat, statfs, type FileHandle } from 'node:fs/promises';
import { watch, type Dirent, type FSWatcher, type Stats, type WatchListener } from 'node:fs';
import { join, resolve } from 'node:path';
import { foldersAbove } from '../api/folders-above.js';
import { invalidUtf8Offset } from '../api/file-text.js';

export const RESOURCE_FILE = /\.(ya?ml|json)$/i;

/**
 * The kubelet's atomic writer: visible entries are symlinks into `..data/`, and `..data` is a
 * symlink to a timestamped folder that is swapped by one rename. Listing `..data` (not the
 * visible links, which are added and removed after the swap) makes one swap one change.
 */
export const KUBELET_DATA = '..data';

export interface ListedFile {
  /** Path under the resource directory as the user sees it (errors name it). */
  display: string;
  /** Path to read: through `..data` inside a kubelet volume. */
  read: string;
}

export interface Listing {
  files: ListedFile[];
  /** Problems with the tree itself (symlink loops, unreadable folders), keyed by displayed path. */
  problems: Map<string, string>;
  /**
   * Folders (or entries) that exist but cannot be listed or looked at (permissions): what was
   * read under them before still holds. Not knowing is not "deleted".
   */
  unreadable: Set<string>;
  /** Kubelet volumes seen, displayed path → current target of their `..data`. */
  kubelet: Map<string, string>;
  /** Every folder listed, displayed path → where it is read and the real folders above it. */
  dirs: Map<string, DirInfo>;
}

export interface DirInfo {
  read: string;
  ancestors: ReadonlySet<string>;
  /** The real folder listed (device and inode): a swapped folder symlink changes it, not `read`. */
  id: string;
}

/** The file system calls that list a tree (a seam: as root, tests cannot make a folder unreadable). */
export interface TreeFs {
  readdir(path: string): Promise<Dirent[]>;
  stat(path: string): Promise<Stats>;
  /** Opens a file to read (tests make it fail). */
  open(path: string, flags: number): Promise<FileHandle>;
  /** Watches a folder (tests make it fail as a full inotify watch table would). */
  watch(path: string, listener: WatchListener<Buffer | string>): FSWatcher;
}

export const realTreeFs: TreeFs = {
  readdir: (path) => readdir(path, { withFileTypes: true }),
  stat: (path) => stat(path),
  open: (path, flags) => open(path, flags),
  watch: (path, listener) => watch(path, listener),
};

/** The path is not there any more (removed, or a folder above it replaced by a file). */
export function isGone(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

const reasonOf = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

export function unreadableFolder(e: unknown): string {
  return `folder cannot be read (${reasonOf(e)}): serving what was last read under it`;
}

/** A file or folder whose listed entry cannot even be stat'ed. */
export function unreadablePath(e: unknown): string {
  return `cannot be read (${reasonOf(e)}): serving what was last read from it`;
}

const statSig = (st: Stats) => `${st.dev}:${st.ino}`;

const NOT_REGULAR = 'not a regular file (a FIFO, device or socket, or a link to one): not read';

const LOOP_ABOVE = 'symlink loop: links back to a folder above it, not followed';

/** The stat signature of a file: any write, replacement or swap changes it. */
export function fileSignature(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export async function kubeletTarget(dir: string): Promise<string | undefined> {
  return readlink(join(dir, KUBELET_DATA)).catch(() => undefined);
}

/**
 * Lists the resource files under `display` (read through `read`). Throws only when `read` itself
 * cannot be listed (the caller decides whether that is an outage); `ancestors` are the real
 * folders above it, so a symlink back to one of them is reported as a loop, not followed.
 * `newFolder`: `display` appeared since its parent was listed, and may itself be such a link.
 */
export async function listTree(display: string, read: string, ancestors: ReadonlySet<string> = new Set(), fs: TreeFs = realTreeFs, newFolder = false): Promise<Listing> {
  const out: Listing = { files: [], problems: new Map(), unreadable: new Set(), kubelet: new Map(), dirs: new Map() };
  const self = await fs.stat(read);
  if (!self.isDirectory()) throw Object.assign(new Error(`${display} is not a folder`), { code: 'ENOTDIR' });
  const id = statSig(self);
  // Listed from the top: the real folders holding it are above it too, so a link to `/` or `..`
  // is a loop, not a walk of the whole file system (every .json of every package read and served).
  if (ancestors.size === 0) ancestors = await signaturesAbove(read, fs);
  // A folder linked in while watching (`ln -s .. loop`) is listed from here, not by its parent's
  // walk; `ancestors` are then its parent's. (A folder listed again has itself among them.)
  if (newFolder && ancestors.has(id)) {
    out.problems.set(display, LOOP_ABOVE);
    return out;
  }
  await walk(fs, display, read, id, new Set([...ancestors, id]), out, true);
  return out;
}

async function walk(fs: TreeFs, display: string, read: string, id: string, ancestors: Set<string>, out: Listing, top: boolean): Promise<void> {
  out.dirs.set(display, { read, ancestors, id });
  const target = await kubeletTarget(read);
  let dirRead = read;
  if (target !== undefined) {
    out.kubelet.set(display, target);
    dirRead = join(read, KUBELET_DATA);
  }
  let entries;
  try {
    entries = await fs.readdir(dirRead);
  } catch (e) {
    if (top) throw e;
    if (isGone(e)) out.dirs.delete(display); // removed while the tree was listed: nothing under it
    else {
      out.problems.set(display, unreadableFolder(e));
      out.unreadable.add(display);
    }
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const badNames = entries.some((e) => e.name.includes('\uFFFD')) ? await nonUtf8Names(dirRead) : undefined;
  for (const e of entries) {
    // Dot entries: `..data`, the kubelet's timestamped folders, temp and lock files of writers.
    if (e.name.startsWith('.')) continue;
    const d = join(display, e.name);
    const bad = badNames?.get(e.name);
    if (bad !== undefined) {
      // Listed with U+FFFD for its bad bytes, a name no call can open: it was skipped as gone, unsaid.
      if (e.isDirectory() || e.isSymbolicLink() || RESOURCE_FILE.test(e.name)) out.problems.set(d, bad);
      continue;
    }
    const r = join(dirRead, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    let st: Stats | undefined;
    if (e.isSymbolicLink() || isDir) {
      try {
        st = await fs.stat(r);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ELOOP') out.problems.set(d, 'symlink loop: not followed');
        else if (!isGone(err)) {
          // Listed but not searchable (a folder with r but not x): whatever it is, it is still there.
          out.problems.set(d, unreadablePath(err));
          out.unreadable.add(d);
        }
        // A dangling link (ENOENT) is no file: the kubelet leaves them briefly during a swap.
        continue;
      }
      isDir = st.isDirectory();
      isFile = st.isFile();
    }
    if (isDir && st) {
      const sig = statSig(st);
      if (ancestors.has(sig)) {
        out.problems.set(d, LOOP_ABOVE);
        continue;
      }
      // Another file system (a link, a mount): a kernel one (a link to /proc, /sys) holds link
      // paths without end that are no loop (a link to /proc was walked for minutes, start-up hung).
      const pseudo = sig.split(':')[0] === id.split(':')[0] ? undefined : await pseudoFileSystem(r);
      if (pseudo !== undefined) {
        out.problems.set(d, `a folder on ${pseudo} (the kernel's, not resource files): not followed`);
        continue;
      }
      await walk(fs, d, r, sig, new Set([...ancestors, sig]), out, false);
    } else if (isFile && RESOURCE_FILE.test(e.name)) {
      out.files.push({ display: d, read: r });
    } else if (!isDir && RESOURCE_FILE.test(e.name)) {
      // Named (or linked) as a resource file: never opened (a FIFO would block), but said, not skipped unsaid.
      out.problems.set(d, NOT_REGULAR);
    }
  }
}

/**
 * The stat signatures of the folders that hold `path`, up to `/`: the real ones, and those of the
 * path as given (`--resources /etc/res`, a link to /srv/res: /etc too). Any that cannot be looked at is left out.
 */
async function signaturesAbove(path: string, fs: TreeFs): Promise<Set<string>> {
  const out = new Set<string>();
  const real = await realpath(path).catch(() => undefined);
  for (const folder of [...foldersAbove(resolve(path)), ...(real === undefined ? [] : foldersAbove(real))]) {
    const st = await fs.stat(folder).catch(() => undefined);
    if (st) out.add(statSig(st));
  }
  return out;
}

/** statfs magic numbers of the kernel's own file systems (linux/magic.h). */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'procfs'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x27e0eb, 'cgroupfs'],
  [0x63677270, 'cgroup2fs'],
  [0x73636673, 'securityfs'],
  [0xcafe4a11, 'bpffs'],
  [0x1cd1, 'devpts'],
  [0x62656570, 'configfs'],
  [0x6165676c, 'pstorefs'],
  [0xf97cff8c, 'selinuxfs'],
]);

/** The name of the kernel file system `path` is on, or undefined for any other (or when statfs fails). */
async function pseudoFileSystem(path: string): Promise<string | undefined> {
  const fs = await statfs(path).catch(() => undefined);
  return fs === undefined ? undefined : PSEUDO_FS.get(fs.type);
}

/**
 * The entries of `dir` whose name is not UTF-8, by the name readdir gives them (bad bytes as
 * U+FFFD): why each cannot be read, naming the first bad byte.
 */
async function nonUtf8Names(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const raw of await readdir(dir, { encoding: 'buffer' }).catch(() => [])) {
    const at = invalidUtf8Offset(raw);
    if (at === undefined) continue;
    out.set(raw.toString('utf8'), `name is not valid UTF-8 (invalid byte 0x${raw[at]!.toString(16).padStart(2, '0')} at byte offset ${at} of the name): it cannot be opened by its name, nothing in it is read; rename it`);
  }
  return out;
}
