import type { FSWatcher } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { ReplaySubject, type Observable } from 'rxjs';
import { parseResources } from '../api/parse.js';
import { DEFAULT_MAX_FILE_SIZE, readResourceText } from '../api/file-text.js';
import { serializeResource } from '../api/serialize.js';
import { formatResourceError, holdsKeyMaterial, resourceKey, type Resource, type ResourceError, type ResourceKind, type ResourceSnapshot } from '../api/types.js';
import { FileStateStore } from './file-state.js';
import { gatherMs } from './gather.js';
import { MemoryStateStore } from './memory-state.js';
import {
  fileSignature,
  isGone,
  kubeletTarget,
  listTree,
  realTreeFs,
  RESOURCE_FILE,
  unreadableFolder,
  unreadablePath,
  type DirInfo,
  type ListedFile,
  type Listing,
  type TreeFs,
} from './directory-walk.js';
import {
  contentVersion,
  managedFileName,
  resourceRefProblem,
  MANAGED_HEADER,
  readManagedTarget,
  removeFileDurably,
  withResourceLocks,
  ownerForRootWrites,
  writeFilesAtomic,
} from './directory-writes.js';
import { ResourceIndex } from './resource-index.js';
import { StoreWriteError, type ResourceStore, type StateStore, type WriteOptions } from './types.js';
import { conflictError, describeResource } from './conflict.js';

/**
 * A file that lost resources and was written less than this long ago is read again after this
 * long before they are dropped: it is most often a writer between truncate and write, or between
 * two documents. A file that keeps changing is given at most SHRINK_GRACE_MAX_MS.
 */
const SHRINK_GRACE_MS = 1000;
const SHRINK_GRACE_MAX_MS = 10_000;
/**
 * Changes are gathered for this long from the first one not yet read, then read in one pass: a burst
 * (an editor's save, a kubelet volume swap, `apply` of many files) is one snapshot. Never longer:
 * a later change does not push the pass back, so a steady stream of writes cannot hold changes.
 */
const DEBOUNCE_MS = 30;
/** A file that changed while being read is looked at again after this long (not in a tight loop). */
const SETTLE_MS = 50;
/**
 * A file replaced while it was read (an atomic rename by `apply`, an editor, git) is read again at
 * once, this many times, before it is left to SETTLE_MS: the new file is usually complete already.
 */
const IMMEDIATE_REREADS = 3;
/**
 * How long a first read (`start`, `readOnce`) waits for files that kept changing while they were
 * read: a snapshot must not leave out a file only because it was being replaced.
 */
const FIRST_READ_SETTLE_MS = 2000;
const FAILED_PASS_RETRY_MS = 1000;
const READ_CONCURRENCY = 16;
/** Problems kept (logged, served in `get`) per file; `mesh-sds validate FILE` lists them all. */
export const MAX_ERRORS_PER_FILE = 50;

/** A file of thousands of broken documents is one problem, not thousands of log lines and metric rows. */
function capErrors(errors: ResourceError[]): ResourceError[] {
  if (errors.length <= MAX_ERRORS_PER_FILE) return errors;
  const rest = errors.length - MAX_ERRORS_PER_FILE;
  const first = errors[MAX_ERRORS_PER_FILE]!;
  return [
    ...errors.slice(0, MAX_ERRORS_PER_FILE),
    { file: first.file, document: first.document, path: '', message: `... and ${rest} more problems in this file (mesh-sds validate lists them all)` },
  ];
}

interface FileEntry {
  read: string;
  /** Stat signature when last read: the file is read again only when it changes. */
  sig: string;
  /** Written by `apply` (header, name and single resource match): apply and delete may replace it. */
  managed: boolean;
}

/** The safety scan's period by default (`rescanMs`). */
const DEFAULT_RESCAN_MS = 10_000;

export interface DirectoryStoreOptions {
  resourcesDir: string;
  stateDir: string;
  /** Period of the safety scan (stat calls only) for file systems where fs.watch misses events. */
  rescanMs?: number;
  /** Larger files are refused (`--max-file-size`, default 4 MiB). */
  maxFileSize?: number;
  /** Called with the problems that are new in a published snapshot. */
  onErrors?: (errors: readonly ResourceError[]) => void;
  /** Called when a pass over the changes failed unexpectedly; it is retried with a full pass. */
  onFailure?: (err: unknown) => void;
  /**
   * Called when a folder cannot be watched for a reason other than being gone (the inotify watch
   * limit reached, EMFILE), once per reason until every folder is watched again: its changes are
   * then seen by the safety scan only, late.
   */
  onWatchFailure?: (folder: string, reason: string) => void;
  /** Listing and stat calls (tests make them fail as permissions would for a user other than root). */
  treeFs?: Partial<TreeFs>;
}

interface Pending {
  full: boolean;
  dirs: Set<string>;
  paths: Set<string>;
}

const under = (path: string, prefix: string) => path === prefix || path.startsWith(prefix + sep);

/**
 * Resources from a directory of YAML/JSON files, watched; edits apply without a restart. A change
 * re-reads only the files it concerns (fs.watch names them; a stat signature confirms), the
 * periodic safety scan costs stat calls only, and passes never overlap.
 */
export class DirectoryStore implements ResourceStore {
  private readonly subject = new ReplaySubject<ResourceSnapshot>(1);
  readonly snapshots$: Observable<ResourceSnapshot> = this.subject.asObservable();
  private readonly index = new ResourceIndex();
  private readonly files = new Map<string, FileEntry>();
  private dirs = new Map<string, DirInfo>();
  private readonly kubelet = new Map<string, string>();
  private readonly problems = new Map<string, string>();
  private pending: Pending = { full: false, dirs: new Set(), paths: new Set() };
  private queue: Promise<void> = Promise.resolve();
  private revision = 0;
  private readonly watchers = new Map<string, { watcher: FSWatcher; read: string; id: string }>();
  /** Reasons a folder could not be watched that were reported and persist (see reportWatchFailure). */
  private readonly watchFailuresReported = new Set<string>();
  /** On the folder holding the resource folder: sees that folder replaced whole (see watchSwap). */
  private swapWatcher?: FSWatcher;
  /**
   * Folders its parent's watch named (created, removed, renamed): their watches (and those below)
   * are made again. A folder removed and made again before the pass often has the old inode
   * number (ext4, tmpfs), so the stat signature cannot tell the old watch is on a dead folder.
   */
  private readonly rewatch = new Set<string>();
  private timer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  /** When `debounce` fires (performance.now()). */
  private debounceDue = 0;
  /** When the last pass started (performance.now()). */
  private lastPassAt = -Infinity;
  private readonly rechecks = new Set<NodeJS.Timeout>();
  /** Files never read yet because they changed each time they were read (see FIRST_READ_SETTLE_MS). */
  private readonly unread = new Set<string>();
  /** Until the first read has settled (start, readOnce): a file changing while read holds the first publish. */
  private firstRead = true;
  /** Files whose missing resources are being kept for a grace period (see holdsMissing). */
  private readonly shrinking = new Map<string, Shrink>();
  private closed = false;
  private watching = false;
  /** The last pass failed before it published: the next one publishes whatever it finds. */
  private republish = false;
  private dirError?: string;
  private lastErrors = new Set<string>();
  readonly dir: string;
  private readonly maxFileSize: number;
  private readonly fs: TreeFs;
  /** Files read so far (a change must cost the files it concerns, observable by tests and metrics). */
  reads = 0;

  private constructor(
    private readonly opts: DirectoryStoreOptions,
    readonly state: StateStore,
  ) {
    this.dir = resolve(opts.resourcesDir);
    this.maxFileSize = opts.maxFileSize ?? DEFAULT_MAX_FILE_SIZE;
    this.fs = { ...realTreeFs, ...opts.treeFs };
  }

  static async open(opts: DirectoryStoreOptions): Promise<DirectoryStore> {
    return new DirectoryStore(opts, await FileStateStore.open(opts.stateDir));
  }

  /** One read of a directory, as the store would serve it (for `import`): no watch, no state. */
  static async readOnce(dir: string, maxFileSize?: number, treeFs?: Partial<TreeFs>): Promise<ResourceSnapshot> {
    const store = new DirectoryStore({ resourcesDir: dir, stateDir: '', maxFileSize, treeFs }, new MemoryStateStore());
    store.pending.full = true;
    await store.kick();
    await store.settleFirstRead();
    const unread = store.incompleteRead();
    let snap: ResourceSnapshot | undefined;
    store.snapshots$.subscribe((s) => (snap = s)).unsubscribe();
    await store.close();
    // An import must not copy the directory without a file only because it was being written.
    if (unread) throw new Error(unread);
    return snap!;
  }

  incompleteRead(): string | undefined {
    if (this.unread.size === 0) return undefined;
    const list = `${this.unreadList()} kept changing while ${this.unread.size === 1 ? 'it was' : 'they were'} read`;
    return `${list} (for ${FIRST_READ_SETTLE_MS / 1000} s): not read; try again once nothing writes to ${this.dir}`;
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.rescan();
    await this.settleFirstRead();
    this.watching = true;
    this.syncWatchers();
    this.scheduleSafetyScan();
  }

  /** Loaded and the directory readable (for /readyz). */
  health(): { ok: boolean; detail: string } {
    if (this.revision === 0) return { ok: false, detail: `resource directory ${this.dir} not loaded yet` };
    if (this.dirError) return { ok: false, detail: this.dirError };
    if (this.unread.size > 0) return { ok: false, detail: `${this.unreadList()} changing each time ${this.unread.size === 1 ? 'it is' : 'they are'} read: not read yet` };
    return { ok: true, detail: `${this.files.size} files read from ${this.dir}` };
  }

  /** Waits (FIRST_READ_SETTLE_MS at most) until every file changing while it was read has been read. */
  private async settleFirstRead(): Promise<void> {
    const until = performance.now() + FIRST_READ_SETTLE_MS;
    while (this.unread.size > 0 && performance.now() < until && !this.closed) {
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      await this.queue;
    }
    await this.queue;
    this.firstRead = false;
    // Timed out with files still changing: what was read is published (health names the rest).
    if (this.revision === 0 || this.republish) {
      this.republish = false;
      this.publish();
    }
  }

  private unreadList(): string {
    const names = [...this.unread].slice(0, 5).map((f) => this.shown(f));
    return `${this.unread.size === 1 ? 'file' : 'files'} ${names.join(', ')}${this.unread.size > names.length ? ` and ${this.unread.size - names.length} more` : ''}`;
  }

  private scheduleSafetyScan(): void {
    if (this.closed) return;
    // The next scan is scheduled only when this one is done: scans never pile up.
    this.timer = setTimeout(() => {
      this.pending.full = true;
      void this.kick().then(() => this.scheduleSafetyScan());
    }, this.opts.rescanMs ?? DEFAULT_RESCAN_MS);
    this.timer.unref();
  }

  /**
   * One plain (non-recursive) watch per folder listed, on the folder it is read from. inotify
   * reports changes to a folder's entries to the folder's watch, so this sees every edit without
   * Node 20's recursive watcher, which on Linux adds a watch and a synchronous stat per file (10,000
   * files: 10,000 blocking stats at start) and errors (ELOOP) on every event near a symlink loop.
   */
  private syncWatchers(): void {
    // Only a started store watches: `readOnce` (import) must let its process exit.
    if (this.closed || !this.watching) return;
    const stale = [...this.rewatch];
    this.rewatch.clear();
    for (const [d, w] of this.watchers) {
      const info = this.dirs.get(d);
      if (stale.some((s) => under(d, s))) {
        w.watcher.close();
        this.watchers.delete(d);
        continue;
      }
      // A watch follows the folder it was made on: after a folder symlink is swapped to another
      // target (same path, another folder) it must be made again, or edits there go unseen.
      if (info?.read === w.read && info.id === w.id) continue;
      w.watcher.close();
      this.watchers.delete(d);
    }
    this.watchSwap();
    const unwatchable = new Set<string>();
    for (const [d, info] of this.dirs) {
      if (this.watchers.has(d)) continue;
      const rel = relative(this.dir, d);
      try {
        const watcher = this.fs.watch(info.read, (_event, name) =>
          this.onEvent(name == null ? undefined : rel ? join(rel, name.toString()) : name.toString()),
        );
        watcher.on('error', () => {
          // The folder went away or became unreadable: list it again (its parent decides).
          watcher.close();
          if (this.watchers.get(d)?.watcher === watcher) this.watchers.delete(d);
          this.pending.dirs.add(d);
          this.scheduleDrain(gatherMs(this.lastPassAt, DEBOUNCE_MS));
        });
        this.watchers.set(d, { watcher, read: info.read, id: info.id });
      } catch (e) {
        // Gone already: the next listing covers it. Anything else (a full inotify table) leaves the
        // folder to the safety scan: said once, or an operator sees edits arrive late for no reason.
        if (!isGone(e)) unwatchable.add(this.reportWatchFailure(d, e as NodeJS.ErrnoException));
      }
    }
    // Every folder watched again: a later failure is news again.
    for (const code of this.watchFailuresReported) if (!unwatchable.has(code)) this.watchFailuresReported.delete(code);
  }

  private reportWatchFailure(folder: string, e: NodeJS.ErrnoException): string {
    const code = e.code ?? 'unknown';
    if (!this.watchFailuresReported.has(code)) {
      this.watchFailuresReported.add(code);
      const why =
        code === 'ENOSPC'
          ? 'the inotify watch limit (sysctl fs.inotify.max_user_watches) is reached'
          : code === 'EMFILE'
            ? 'too many open files or inotify instances (ulimit -n, fs.inotify.max_user_instances)'
            : e.message;
      this.opts.onWatchFailure?.(folder, `cannot watch ${folder} (${code}): ${why}; changes in it are seen by the safety scan every ${Math.round((this.opts.rescanMs ?? DEFAULT_RESCAN_MS) / 1000)} s`);
    }
    return code;
  }

  /**
   * The resource folder replaced whole (`mv new resources`, or its link switched to another
   * release: `ln -sfn`) is an entry of its parent, not of any folder watched: without this, the
   * old content was served, and edits in the new folder unseen, until the safety scan.
   */
  private watchSwap(): void {
    const parent = dirname(this.dir);
    if (this.swapWatcher || parent === this.dir) return;
    const name = basename(this.dir);
    try {
      const watcher = this.fs.watch(parent, (_event, entry) => {
        if (entry != null && entry.toString() !== name) return;
        this.pending.full = true;
        this.scheduleDrain(gatherMs(this.lastPassAt, DEBOUNCE_MS));
      });
      watcher.on('error', () => {
        watcher.close();
        if (this.swapWatcher === watcher) this.swapWatcher = undefined; // made again after the next pass
      });
      this.swapWatcher = watcher;
    } catch {
      // The parent cannot be watched (not readable): the safety scan sees a swap.
    }
  }

  private closeWatchers(): void {
    for (const w of this.watchers.values()) w.watcher.close();
    this.watchers.clear();
  }

  /** Maps a watch event to the least work that covers it. */
  private onEvent(name: string | undefined): void {
    if (name === undefined) this.pending.full = true;
    else {
      const parts = name.split(sep);
      const dot = parts.findIndex((p) => p.startsWith('.'));
      if (dot < 0) this.pending.paths.add(join(this.dir, name));
      // `..data` and the kubelet's `..2026_…` folders: the volume above them changed.
      else if (parts[dot]!.startsWith('..')) this.pending.dirs.add(join(this.dir, ...parts.slice(0, dot)));
      // Other dot entries are temp and lock files of writers: their rename is an event of its own.
      else return;
    }
    this.scheduleDrain(gatherMs(this.lastPassAt, DEBOUNCE_MS));
  }


  /** A pass in `ms`, unless one is due sooner already (it reads whatever is pending then). */
  private scheduleDrain(ms: number): void {
    if (this.closed) return;
    const due = performance.now() + ms;
    if (this.debounce && this.debounceDue <= due) return;
    clearTimeout(this.debounce);
    this.debounceDue = due;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.kick();
    }, ms);
  }

  private recheckLater(path: string, ms: number): void {
    const t = setTimeout(() => {
      this.rechecks.delete(t);
      this.pending.paths.add(path);
      void this.kick();
    }, ms);
    t.unref();
    this.rechecks.add(t);
  }

  /** Runs whatever is pending, after any pass already running. */
  private kick(): Promise<void> {
    this.queue = this.queue
      .then(() => this.runPending())
      .catch((e: unknown) => {
        // Never silently: a pass that failed would otherwise leave every later change unseen.
        this.opts.onFailure?.(e);
        this.pending.full = true;
        this.republish = true;
        this.scheduleDrain(FAILED_PASS_RETRY_MS);
      });
    return this.queue;
  }

  /** Re-reads whatever changed in the whole tree (stat calls, then only changed files). */
  rescan(): Promise<void> {
    this.pending.full = true;
    return this.kick();
  }

  private async runPending(): Promise<void> {
    this.lastPassAt = performance.now();
    if (this.closed && this.revision > 0) return;
    const work = this.pending;
    if (!work.full && work.dirs.size === 0 && work.paths.size === 0) return;
    this.pending = { full: false, dirs: new Set(), paths: new Set() };
    let changed = this.revision === 0 || this.republish;
    this.republish = false;
    if (work.full) {
      let listing: Listing;
      try {
        listing = await listTree(this.dir, this.dir, undefined, this.fs);
      } catch (e) {
        // The directory went away (unmounted, deleted): a store outage, not "every resource was
        // deleted", so the last state keeps being served.
        const error = `resource directory ${this.dir} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): serving the last state`;
        if (error !== this.dirError || this.revision === 0) {
          this.dirError = error;
          this.publish();
        }
        return;
      }
      if (this.dirError) {
        this.dirError = undefined;
        changed = true;
        this.closeWatchers(); // they watched the folders that went away; syncWatchers makes new ones
      }
      changed = this.replaceUnder(this.dir, listing) || changed;
      changed = (await this.readFiles(listing.files)) || changed;
      changed = (await this.settleKubelet(listing)) || changed;
    } else {
      const dirs = [...work.dirs].sort();
      for (const p of work.paths) {
        if (dirs.some((d) => under(p, d))) continue;
        const parent = dirname(p);
        // Inside a kubelet volume the visible links are not the truth: `..data` is.
        if (this.kubelet.has(parent)) dirs.push(parent);
        else changed = (await this.checkPath(p)) || changed;
      }
      for (const d of dirs) changed = (await this.relist(d)) || changed;
    }
    this.syncWatchers();
    if (!changed) return;
    // The first snapshot waits for files replaced while read: a view built without them made a
    // server ready without a Dataplane (settleFirstRead publishes once that is over).
    if (this.firstRead && this.unread.size > 0) this.republish = true;
    else this.publish();
  }

  /** Re-lists one folder (and below): stat calls for all, reads only for changed files. */
  private async relist(display: string): Promise<boolean> {
    let d = display;
    let info: Pick<DirInfo, 'read' | 'ancestors'> | undefined = this.dirs.get(d);
    const parent = info ? undefined : this.dirs.get(dirname(d));
    // A new folder: read through its parent (a kubelet volume's `..data`), below the parent's ancestors.
    const newFolder = parent !== undefined && d !== this.dir;
    if (newFolder) info = { read: join(parent.read, basename(d)), ancestors: parent.ancestors };
    while (!info && under(d, this.dir) && d !== this.dir) info = this.dirs.get((d = dirname(d)));
    info ??= { read: d, ancestors: new Set<string>() };
    let listing: Listing;
    try {
      listing = await listTree(d, info.read, info.ancestors, this.fs, newFolder);
    } catch (e) {
      if (d === this.dir) {
        this.pending.full = true; // the outage path decides
        return false;
      }
      // Removed: so are its resources. Unreadable (a chmod, an fsGroup change): an outage of that
      // folder, as for the top one, so what was read under it keeps being served.
      return isGone(e) ? this.removeUnder(d) : this.keepUnreadable(d, unreadableFolder(e));
    }
    let changed = this.replaceUnder(d, listing);
    changed = (await this.readFiles(listing.files)) || changed;
    return (await this.settleKubelet(listing)) || changed;
  }

  /** A path named by a watch event: a file to re-stat, a folder to list, or gone. */
  private async checkPath(display: string): Promise<boolean> {
    const info = this.dirs.get(dirname(display));
    const read = info ? join(info.read, basename(display)) : display;
    const st = await this.fs.stat(read).catch((e: NodeJS.ErrnoException) => e);
    // Gone (or a dangling link): forget it. Any other failure (a symlink loop) is the folder
    // listing's to report, so list the folder it is in.
    // A name that is not UTF-8 (U+FFFD for its bad bytes) cannot be stat'ed either: the listing reports it.
    if (st instanceof Error) return st.code === 'ENOENT' && !display.includes('\uFFFD') ? this.removeUnder(display) : this.relist(dirname(display));
    if (st.isDirectory()) {
      this.rewatch.add(display);
      return this.relist(display);
    }
    if (!RESOURCE_FILE.test(display)) return false;
    // A FIFO or device named like a resource file: the listing reports it (and forgets a file it replaced).
    if (!st.isFile()) return this.relist(dirname(display));
    return this.readFiles([{ display, read }]);
  }

  /** A kubelet volume swapped again while it was being read: read it again before publishing. */
  private async settleKubelet(listing: Listing): Promise<boolean> {
    let changed = false;
    for (const [d, target] of listing.kubelet) {
      for (let tries = 0; tries < 5; tries++) {
        const info = listing.dirs.get(d)!;
        const now = await kubeletTarget(info.read);
        if (now === target || now === undefined) break;
        const again = await listTree(d, info.read, info.ancestors, this.fs).catch(() => undefined);
        if (!again) break;
        changed = this.replaceUnder(d, again) || changed;
        changed = (await this.readFiles(again.files)) || changed;
        if (again.kubelet.get(d) === now) break;
      }
    }
    return changed;
  }

  /**
   * Forgets everything under `prefix` that `listing` no longer has, and takes its tree facts.
   * What is under a folder the listing could not read is kept: it is unknown, not gone.
   */
  private replaceUnder(prefix: string, listing: Listing): boolean {
    let changed = false;
    const listed = new Set(listing.files.map((f) => f.display));
    const unreadable = [...listing.unreadable];
    const kept = (p: string) => unreadable.some((u) => under(p, u));
    for (const p of [...this.files.keys()]) {
      if (under(p, prefix) && !listed.has(p) && !kept(p)) changed = this.forgetFile(p) || changed;
    }
    for (const p of [...this.unread]) if (under(p, prefix) && !listed.has(p) && !kept(p)) this.unread.delete(p);
    const problemsBefore = this.problemsUnder(prefix);
    for (const m of [this.kubelet, this.problems, this.dirs]) for (const k of [...m.keys()]) if (under(k, prefix) && !kept(k)) m.delete(k);
    for (const [k, v] of listing.dirs) this.dirs.set(k, v);
    for (const [k, v] of listing.kubelet) this.kubelet.set(k, v);
    for (const [k, v] of listing.problems) this.problems.set(k, v);
    return changed || this.problemsUnder(prefix) !== problemsBefore;
  }

  private problemsUnder(prefix: string): string {
    return JSON.stringify([...this.problems].filter(([k]) => under(k, prefix)).sort());
  }

  private removeUnder(prefix: string): boolean {
    let changed = false;
    for (const p of [...this.files.keys()]) if (under(p, prefix)) changed = this.forgetFile(p) || changed;
    for (const p of [...this.unread]) if (under(p, prefix)) this.unread.delete(p);
    for (const k of [...this.problems.keys()]) if (under(k, prefix) && this.problems.delete(k)) changed = true;
    for (const m of [this.kubelet, this.dirs]) for (const k of [...m.keys()]) if (under(k, prefix)) m.delete(k);
    return changed;
  }

  /** A folder that cannot be listed: reported, and everything read under it is kept. */
  private keepUnreadable(display: string, message: string): boolean {
    if (this.problems.get(display) === message) return false;
    this.problems.set(display, message);
    return true;
  }

  private forgetFile(display: string): boolean {
    this.unread.delete(display);
    this.endShrink(display);
    if (!this.files.delete(display)) return false;
    this.index.set(display, undefined);
    return true;
  }

  private shown(display: string): string {
    return relative(process.cwd(), display) || display;
  }

  /** Reads the files whose stat signature changed; returns whether anything served changed. */
  private async readFiles(list: readonly ListedFile[]): Promise<boolean> {
    // A few files at a time: a cold start of 10,000 files is bound by I/O latency, not CPU. Each
    // file updates only its own entry, so the order they finish in does not matter.
    let changed = false;
    let next = 0;
    const worker = async () => {
      while (next < list.length) if (await this.readFile(list[next++]!)) changed = true;
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, list.length) }, worker));
    return changed;
  }

  /** Reads one file if its stat signature changed; returns whether anything served changed. */
  private async readFile(f: ListedFile): Promise<boolean> {
    const st = await this.fs.stat(f.read).catch((e: NodeJS.ErrnoException) => e);
    if (st instanceof Error) {
      this.unread.delete(f.display);
      return isGone(st) ? this.forgetFile(f.display) : this.keepUnreadableFile(f, st);
    }
    let sig = fileSignature(st);
    const prev = this.files.get(f.display);
    if (prev && prev.sig === sig && prev.read === f.read) return false;
    const shown = this.shown(f.display);
    let read: Awaited<ReturnType<typeof readResourceText>>;
    for (let rereads = 0; ; rereads++) {
      read = await readResourceText(f.read, shown, this.maxFileSize, undefined, this.fs.open);
      this.reads++;
      const after = await this.fs.stat(f.read).catch(() => undefined);
      if (!('changing' in read) && after && fileSignature(after) === sig) break;
      // Replaced while read (a rename puts a complete file in place): read what is there now. A
      // file still being written is looked at again shortly: a half-written file must not briefly
      // drop the resources it carries.
      if (!after || rereads >= IMMEDIATE_REREADS) {
        // Only a first read waits for it (a file written while the server runs is not news yet).
        if (!prev && this.firstRead) this.unread.add(f.display);
        this.recheckLater(f.display, SETTLE_MS);
        return false;
      }
      sig = fileSignature(after);
    }
    this.unread.delete(f.display);
    const old = this.index.get(f.display);
    if ('error' in read) {
      // Refused (too large, not UTF-8): reported, last good resources kept, and not read again
      // until its stat signature changes. A failed open or read (EMFILE, EIO) says nothing of
      // the content: the next pass (an event, the safety scan) tries again.
      const failedSig = read.code === undefined ? sig : `unreadable:${read.code}`;
      const same = prev?.sig === failedSig && old?.errors.length === 1 && old.errors[0]!.message === read.error.message;
      this.files.set(f.display, { read: f.read, sig: failedSig, managed: prev?.managed ?? false });
      if (same) return false;
      this.index.set(f.display, { resources: old?.resources ?? [], errors: [read.error], version: old?.version ?? '' });
      return true;
    }
    const text = read.text;
    const parsed = parseResources(text, shown, this.maxFileSize);
    const resources = parsed.resources;
    const errors = capErrors(parsed.errors);
    // Last-known-good per resource: a broken document never replaces what was served before.
    const kept = errors.length > 0 && old ? mergeKeepingOld(old.resources, resources) : resources;
    const held = old ? this.holdsMissing(f.display, sig, old.resources, kept) : undefined;
    if (held) {
      // What it adds or changes applies now; the entry keeps its old signature, so the file is
      // read again (by the recheck, or any event) and the missing resources are looked at again.
      const version = contentVersion(text);
      if (kept.length === 0 || old!.version === version) return false; // nothing new to publish
      this.index.set(f.display, { resources: [...kept, ...old!.resources.filter((r) => held.has(resourceKey(r)))], errors, version });
      this.releaseHeld(f.display, kept);
      return true;
    }
    const managed =
      text.startsWith(MANAGED_HEADER) && dirname(f.display) === this.dir && resources.length === 1 && basename(f.display) === managedFileName(resources[0]!);
    this.files.set(f.display, { read: f.read, sig, managed });
    this.index.set(f.display, { resources: kept, errors, version: contentVersion(text) });
    this.releaseHeld(f.display, kept);
    return true;
  }

  /**
   * A resource another file is only holding (it left that file a moment ago) and `display` now
   * defines has moved between files (a git pull, a generator): the holder lets it go at once, so
   * the new definition is served, not reported as a duplicate of the old one.
   */
  private releaseHeld(display: string, defined: readonly Resource[]): void {
    if (this.shrinking.size === 0 || defined.length === 0) return;
    for (const [holder, s] of this.shrinking) {
      if (holder === display) continue;
      const moved = defined.map(resourceKey).filter((k) => s.held.has(k) && !this.index.wasIgnored(k, display));
      if (moved.length === 0) continue;
      for (const k of moved) s.held.delete(k);
      const entry = this.index.get(holder);
      // A Set: a git pull can move thousands at once (10,000: 2.3 s as a list's includes).
      const gone = new Set(moved);
      if (entry) this.index.set(holder, { ...entry, resources: entry.resources.filter((r) => !gone.has(resourceKey(r))) });
      if (s.held.size === 0) this.endShrink(holder);
    }
  }

  private endShrink(display: string): void {
    const s = this.shrinking.get(display);
    if (!s) return;
    clearTimeout(s.timer);
    this.shrinking.delete(display);
  }

  /**
   * The resources `old` has and `fresh` lacks that are kept a while longer, or undefined: the file
   * changed less than SHRINK_GRACE_MS ago by this process's clock (a file's mtime may come from
   * another clock), the grace starting again with each change, up to SHRINK_GRACE_MAX_MS. A
   * resource another file defines now is not held (it moved); deleting the file drops them at once.
   */
  private holdsMissing(display: string, sig: string, old: readonly Resource[], fresh: readonly Resource[]): Set<string> | undefined {
    const freshKeys = new Set(fresh.map(resourceKey));
    const missing = new Set<string>();
    for (const r of old) {
      const k = resourceKey(r);
      // Moved: another file now defines it (not a copy already published as an ignored duplicate).
      if (!freshKeys.has(k) && !this.index.definersOf(k).some((d) => d !== display && !this.index.wasIgnored(k, d))) missing.add(k);
    }
    const now = performance.now(); // monotonic: a clock step must not stretch or skip the grace
    let s = this.shrinking.get(display);
    if (!s) s = { since: now, sig, changedAt: now, held: missing };
    else if (s.sig !== sig) Object.assign(s, { sig, changedAt: now });
    if (missing.size === 0 || now - s.changedAt >= SHRINK_GRACE_MS || now - s.since >= SHRINK_GRACE_MAX_MS) {
      this.endShrink(display);
      return undefined;
    }
    s.held = missing;
    this.shrinking.set(display, s);
    // One recheck per file, for when the grace of its latest change is over.
    clearTimeout(s.timer);
    const waitMs = Math.max(SETTLE_MS, Math.min(s.changedAt + SHRINK_GRACE_MS, s.since + SHRINK_GRACE_MAX_MS) - now);
    s.timer = setTimeout(() => {
      this.pending.paths.add(display);
      void this.kick();
    }, waitMs);
    s.timer.unref();
    return missing;
  }

  /** A file that cannot even be stat'ed (its folder lost search permission): reported, its resources kept. */
  private keepUnreadableFile(f: ListedFile, e: NodeJS.ErrnoException): boolean {
    const sig = `unreadable:${e.code ?? e.message}`;
    const prev = this.files.get(f.display);
    if (prev?.sig === sig) return false;
    const old = this.index.get(f.display);
    const error: ResourceError = { file: this.shown(f.display), document: 0, path: '', message: unreadablePath(e) };
    this.files.set(f.display, { read: f.read, sig, managed: prev?.managed ?? false });
    this.index.set(f.display, { resources: old?.resources ?? [], errors: [error], version: old?.version ?? '' });
    return true;
  }

  private publish(): void {
    const snap = this.index.snapshot();
    const errors: ResourceError[] = [];
    if (this.dirError) errors.push({ file: this.dir, document: 0, path: '', message: this.dirError });
    for (const [p, message] of [...this.problems].sort()) errors.push({ file: this.shown(p), document: 0, path: '', message });
    for (const e of snap.errors) errors.push(e);
    const seen = new Set(errors.map(formatResourceError));
    const fresh = errors.filter((e) => !this.lastErrors.has(formatResourceError(e)));
    this.lastErrors = seen;
    if (fresh.length > 0) this.opts.onErrors?.(fresh);
    this.subject.next({ revision: ++this.revision, resources: snap.resources, errors, versions: snap.versions });
  }

  /** Apply's file for `r`, always directly in the directory, whatever the caller passed. */
  private managedPath(r: Pick<Resource, 'kind' | 'mesh' | 'namespace' | 'name'>): string {
    const problem = resourceRefProblem(r);
    const path = join(this.dir, managedFileName(r));
    if (problem !== undefined || dirname(path) !== this.dir) throw new StoreWriteError(`${describeResource(r)}: ${problem ?? 'not a resource name'}`);
    return path;
  }

  private notOurs(path: string, r: Pick<Resource, 'kind' | 'mesh' | 'namespace' | 'name'>, verb: 'replace' | 'delete'): string {
    return `${this.shown(path)} is not apply's file for ${describeResource(r)} (it holds something else): refusing to ${verb} it, even with --force; move or rename that file`;
  }

  /** The user's file (not written by apply) that defines `key`, if any. */
  private userFileOf(key: string): string | undefined {
    return this.index.definersOf(key).find((p) => !this.files.get(p)?.managed);
  }

  /**
   * Validates the text and writes each resource to its own file (see WriteOptions for the
   * version check); a resource defined in a user's file is refused naming that file.
   */
  async apply(text: string, sourceName: string, opts: WriteOptions = {}): Promise<ResourceError[]> {
    const { resources, errors } = parseResources(text, sourceName, this.maxFileSize);
    if (errors.length > 0) return errors;
    const refused: ResourceError[] = [];
    for (const r of resources) {
      // Validation already refuses such names; this keeps every write inside the directory regardless.
      const problem = resourceRefProblem(r);
      if (problem !== undefined) {
        refused.push({ file: sourceName, document: r.source?.document ?? 0, path: '', message: `${describeResource(r)}: ${problem}` });
        continue;
      }
      const user = this.userFileOf(resourceKey(r));
      if (user !== undefined) {
        refused.push({
          file: sourceName,
          document: r.source?.document ?? 0,
          path: '',
          message: `${describeResource(r)} is defined in ${this.shown(user)}, a file not written by apply: change it there`,
        });
      }
    }
    if (refused.length > 0 || resources.length === 0) return refused;
    // What is written is each resource in full, aliases expanded: a file the watcher would refuse
    // to read (over --max-file-size) is not written, as Postgres refuses such a row.
    const texts = resources.map((r) => MANAGED_HEADER + serializeResource(r, 'yaml'));
    const oversized = resources.flatMap((r, i) => {
      const bytes = Buffer.byteLength(texts[i]!);
      if (bytes <= this.maxFileSize) return [];
      return [{
        file: sourceName,
        document: r.source?.document ?? 0,
        path: '',
        message: `${describeResource(r)} would be written as ${bytes} bytes of YAML (aliases expanded), over the limit of ${this.maxFileSize} bytes (--max-file-size) the server enforces when reading a file: nothing written`,
      }];
    });
    if (oversized.length > 0) return oversized;
    const targets = resources.map((r) => this.managedPath(r));
    // The condition of each write is the version this store knew when apply was called, not when
    // its lock is granted: by then the watcher may have seen a concurrent writer's file.
    const expectedVersions = resources.map((r) => r.source?.resourceVersion ?? this.index.versionOf(resourceKey(r)) ?? '');
    const conflicts = await withResourceLocks(targets, async () => {
      const found: ResourceError[] = [];
      const foreign: ResourceError[] = [];
      for (const [i, r] of resources.entries()) {
        const at = await readManagedTarget(targets[i]!, r);
        if (at.state === 'foreign') {
          foreign.push({ file: sourceName, document: r.source?.document ?? 0, path: '', message: this.notOurs(targets[i]!, r, 'replace') });
          continue;
        }
        const expected = expectedVersions[i]!;
        const current = at.state === 'managed' ? at.version : '';
        if (!opts.force && current !== expected) found.push(conflictAt(r, sourceName, expected, current));
      }
      // A user's file is never touched, whatever else the text holds and even with force.
      if (foreign.length > 0) return foreign;
      if (found.length > 0) return found;
      const owner = await ownerForRootWrites(this.dir);
      // All or nothing: a write that fails (a full disk) leaves every resource of the text as it was.
      await writeFilesAtomic(
        resources.map((r, i) => ({ path: targets[i]!, text: texts[i]!, mode: holdsKeyMaterial(r) ? 0o600 : 0o644 })),
        owner,
      );
      return [];
    });
    if (conflicts.length > 0) return conflicts;
    for (const t of targets) this.pending.paths.add(t);
    await this.kick();
    return [];
  }

  async delete(kind: ResourceKind, mesh: string, namespace: string, name: string, opts: WriteOptions = {}): Promise<boolean> {
    const ref = { kind, mesh, namespace, name };
    const target = this.managedPath(ref); // first: a name that is not a resource name goes no further
    const key = resourceKey(ref);
    const user = this.userFileOf(key);
    if (user !== undefined) throw new StoreWriteError(`${describeResource(ref)} is defined in ${this.shown(user)}, a file not written by apply: delete it there`);
    const expected = opts.resourceVersion ?? this.index.versionOf(key) ?? ''; // as known when called (see apply)
    const deleted = await withResourceLocks([target], async () => {
      const at = await readManagedTarget(target, ref);
      if (at.state === 'absent') return false;
      if (at.state === 'foreign') throw new StoreWriteError(this.notOurs(target, ref, 'delete'));
      const current = at.version;
      if (!opts.force && current !== expected) {
        throw new StoreWriteError(`conflict: ${describeResource(ref)} was changed since it was read (version ${expected || 'absent'}, now ${current}); read it again, or use --force`, true);
      }
      await removeFileDurably(target);
      return true;
    });
    this.pending.paths.add(target);
    await this.kick();
    return deleted;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closeWatchers();
    this.swapWatcher?.close();
    clearTimeout(this.timer);
    clearTimeout(this.debounce);
    for (const t of this.rechecks) clearTimeout(t);
    for (const d of [...this.shrinking.keys()]) this.endShrink(d);
    await this.queue;
    this.subject.complete();
  }
}

function conflictAt(r: Resource, file: string, expected: string, current: string): ResourceError {
  return conflictError(file, r, expected === '' ? 'absent when read' : `version ${expected} when read`, current === '' ? 'now absent' : `now version ${current}`);
}

/** A file that lost resources a moment ago: when that was first seen, its latest change, what is held. */
interface Shrink {
  since: number;
  sig: string;
  changedAt: number;
  held: Set<string>;
  timer?: NodeJS.Timeout;
}

function mergeKeepingOld(old: readonly Resource[], fresh: readonly Resource[]): Resource[] {
  const merged = new Map<string, Resource>();
  for (const r of old) merged.set(resourceKey(r), r);
  for (const r of fresh) merged.set(resourceKey(r), r);
  return [...merged.values()];
}
