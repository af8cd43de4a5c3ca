import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { ReplaySubject, type Observable } from 'rxjs';
import { parseResources } from '../api/parse.js';
import { resourceKey, type Resource, type ResourceError, type ResourceSnapshot } from '../api/types.js';
import { FileStateStore } from './file-state.js';
import { StoreWriteError, type ResourceStore, type StateStore } from './types.js';

const RESOURCE_FILE = /\.(ya?ml|json)$/i;
const EMPTY_GRACE_MS = 1000;

interface FileEntry {
  mtimeMs: number;
  size: number;
  /** Last good resources of this file: what is served while the file is broken. */
  resources: Resource[];
  errors: ResourceError[];
}

export interface DirectoryStoreOptions {
  resourcesDir: string;
  stateDir: string;
  /** Periodic rescan, a safety net for file systems where fs.watch misses events. */
  rescanMs?: number;
  onErrors?: (errors: readonly ResourceError[]) => void;
}

/** Resources from a directory of YAML/JSON files, watched; edits apply without a restart. */
export class DirectoryStore implements ResourceStore {
  private readonly subject = new ReplaySubject<ResourceSnapshot>(1);
  readonly snapshots$: Observable<ResourceSnapshot> = this.subject.asObservable();
  private readonly files = new Map<string, FileEntry>();
  private revision = 0;
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private scanning: Promise<void> = Promise.resolve();
  private closed = false;
  private lastPublished = '';
  private dirError?: string;
  readonly dir: string;

  private constructor(
    private readonly opts: DirectoryStoreOptions,
    readonly state: StateStore,
  ) {
    this.dir = resolve(opts.resourcesDir);
  }

  static async open(opts: DirectoryStoreOptions): Promise<DirectoryStore> {
    return new DirectoryStore(opts, await FileStateStore.open(opts.stateDir));
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.rescan();
    this.watchDirectory();
    this.timer = setInterval(() => this.scheduleRescan(), this.opts.rescanMs ?? 2000);
    this.timer.unref();
  }

  private watchDirectory(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.closed) return;
    try {
      this.watcher = watch(this.dir, { recursive: true }, () => this.scheduleRescan());
      this.watcher.on('error', () => this.scheduleRescan());
    } catch {
      // Recursive watching is unavailable on some file systems: the periodic rescan covers it.
    }
  }

  private scheduleRescan(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.rescan(), 30);
  }

  /** Serialises scans so two overlapping events cannot publish out of order. */
  rescan(): Promise<void> {
    this.scanning = this.scanning.then(() => this.scanOnce()).catch(() => undefined);
    return this.scanning;
  }

  private async listFiles(dir: string): Promise<string[]> {
    // The root itself must be readable: a directory that went away (unmounted, deleted) is a store
    // outage, not "every resource was deleted", so the caller keeps serving the last state.
    const entries = await readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
      if (dir === this.dir) throw e;
      return [];
    });
    const out: string[] = [];
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) out.push(...(await this.listFiles(p)));
      else if (e.isFile() && RESOURCE_FILE.test(e.name)) out.push(p);
    }
    return out.sort();
  }

  private async scanOnce(): Promise<void> {
    if (this.closed) return;
    let paths: string[];
    try {
      paths = await this.listFiles(this.dir);
      if (this.dirError) this.watchDirectory(); // the old watch followed the directory that went away
      this.dirError = undefined;
    } catch (e) {
      this.dirError = `resource directory ${this.dir} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): serving the last state`;
      this.publish();
      return;
    }
    const present = new Set(paths);
    for (const p of [...this.files.keys()]) if (!present.has(p)) this.files.delete(p);
    for (const p of paths) {
      const st = await stat(p).catch(() => undefined);
      if (!st) continue;
      const prev = this.files.get(p);
      if (prev && prev.mtimeMs === st.mtimeMs && prev.size === st.size) continue;
      const text = await readFile(p, 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      // A file still being written (size or mtime moved while we read it) is read again on the
      // next scan: a half-written file must not briefly drop the resources it carries.
      const after = await stat(p).catch(() => undefined);
      if (!after || after.mtimeMs !== st.mtimeMs || after.size !== st.size || Buffer.byteLength(text) !== st.size) {
        this.scheduleRescan();
        continue;
      }
      // A file that just became empty is most often a writer between truncate and write: wait a
      // moment before believing that every resource in it is gone (deleting the file is immediate).
      if (prev && prev.resources.length > 0 && text.trim() === '' && Date.now() - st.mtimeMs < EMPTY_GRACE_MS) {
        setTimeout(() => this.scheduleRescan(), EMPTY_GRACE_MS / 2).unref();
        continue;
      }
      const display = relative(process.cwd(), p) || p;
      const { resources, errors } = parseResources(text, display);
      // Last-known-good per resource: a broken document never replaces what was served before.
      const kept = errors.length > 0 && prev ? mergeKeepingOld(prev.resources, resources) : resources;
      this.files.set(p, { mtimeMs: st.mtimeMs, size: st.size, resources: kept, errors });
    }
    this.publish();
  }

  private publish(): void {
    const resources = new Map<string, Resource>();
    const errors: ResourceError[] = this.dirError ? [{ file: this.dir, document: 0, path: '', message: this.dirError }] : [];
    const origin = new Map<string, string>();
    for (const [path, entry] of this.files) {
      errors.push(...entry.errors);
      for (const r of entry.resources) {
        const key = resourceKey(r);
        const first = origin.get(key);
        if (first !== undefined) {
          errors.push({
            file: r.source?.file ?? path,
            document: r.source?.document ?? 0,
            path: 'metadata.name',
            message: `duplicate ${r.kind} "${r.name}" of mesh "${r.mesh}": already defined in ${first}; this copy is ignored`,
          });
          continue;
        }
        origin.set(key, r.source?.file ?? path);
        resources.set(key, r);
      }
    }
    const fingerprint = JSON.stringify([[...this.files].map(([p, e]) => [p, e.mtimeMs, e.size]), errors.length, this.dirError ?? '']);
    if (fingerprint === this.lastPublished && this.revision > 0) return;
    this.lastPublished = fingerprint;
    if (errors.length > 0) this.opts.onErrors?.(errors);
    this.subject.next({ revision: ++this.revision, resources, errors });
  }

  /** Validates the text and writes it into the resource directory; nothing is written on error. */
  async apply(text: string, sourceName: string): Promise<ResourceError[]> {
    const { errors } = parseResources(text, sourceName);
    if (errors.length > 0) return errors;
    const name = basename(sourceName).replace(/[^A-Za-z0-9._-]/g, '_') || 'applied.yaml';
    const target = join(this.dir, RESOURCE_FILE.test(name) ? name : `${name}.yaml`);
    const tmp = join(this.dir, `.${name}.tmp`);
    await writeFile(tmp, text);
    await rename(tmp, target);
    await this.rescan();
    return [];
  }

  async delete(): Promise<boolean> {
    throw new StoreWriteError('delete is not supported by the directory store yet');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    await this.scanning;
    this.subject.complete();
  }
}

function mergeKeepingOld(old: Resource[], fresh: Resource[]): Resource[] {
  const merged = new Map<string, Resource>();
  for (const r of old) merged.set(resourceKey(r), r);
  for (const r of fresh) merged.set(resourceKey(r), r);
  return [...merged.values()];
}
