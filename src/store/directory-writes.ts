// Files written by `mesh-sds apply` into a resource directory: one resource per file, a header
// that marks it as apply's, written atomically (temp file, fsync, rename, fsync of the folder).
import { createHash, randomBytes } from 'node:crypto';
import { lstat, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { MAX_FILE_SIZE_LIMIT, readResourceText } from '../api/file-text.js';
import { quoted } from '../api/quote.js';
import type { ResourceMeta } from '../api/types.js';
import { isPlainObject, labelNameProblem, nameProblem } from '../api/validate-common.js';
import { NAMESPACE_LABEL } from '../api/validate.js';
import { withFileLock } from './file-lock.js';

type Ref = Pick<ResourceMeta, 'kind' | 'mesh' | 'namespace' | 'name'>;

export const MANAGED_HEADER = '# Written by `mesh-sds apply` (one resource per file): change it with mesh-sds apply or delete.\n';

/**
 * Longest file name apply writes: its temp file (`.<name>.<12 hex>.tmp`) and lock (`.<name>.lock`)
 * must stay within the 255 bytes most file systems allow. Every name that fit before keeps its file.
 */
const MAX_MANAGED_NAME = 255 - '..123456789012.tmp'.length;

/**
 * One name per resource: names, meshes and namespaces never contain `_`, so the name is unambiguous.
 * A name too long for a file (names may have 253 characters) keeps its start and gets a digest of
 * the whole reference, which stays unambiguous.
 */
export function managedFileName(r: Ref): string {
  const full = `${r.kind.toLowerCase()}_${r.mesh}_${r.namespace}_${r.name}.yaml`;
  if (full.length <= MAX_MANAGED_NAME) return full;
  const digest = createHash('sha256').update(`${r.kind}\0${r.mesh}\0${r.namespace}\0${r.name}`).digest('hex').slice(0, 20);
  return `${full.slice(0, MAX_MANAGED_NAME - digest.length - 6)}~${digest}.yaml`;
}

/**
 * Why `ref` cannot name a file of apply's, if it cannot: a name, mesh or namespace that is not a
 * resource name (a `/` or `..` in it would reach outside the directory; a `_` would make two
 * resources share a file name). Cluster-scoped resources have an empty mesh.
 */
export function resourceRefProblem(ref: Ref): string | undefined {
  const bad = (what: string, value: string, problem: string | undefined) => problem && `${quoted(value)} is not a valid ${what}: ${problem}`;
  return (
    bad('name', ref.name, nameProblem(ref.name)) ??
    (ref.kind === 'ClusterFederatedTrustDomain' && ref.mesh === '' ? undefined : bad('mesh', ref.mesh, labelNameProblem(ref.mesh))) ??
    (ref.namespace === '' ? undefined : bad('namespace', ref.namespace, labelNameProblem(ref.namespace)))
  );
}

/** The version of a stored resource: a digest of its file's bytes ('' when absent). */
export function contentVersion(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 20);
}

/** What lies at apply's path for a resource: nothing, apply's file for it (with its version), or anything else. */
export type ManagedTarget = { state: 'absent' } | { state: 'managed'; version: string } | { state: 'foreign' };

/**
 * Decided by content, not by name or header alone: apply's file starts with its header and holds
 * exactly one document, that resource in the form apply writes it (read leniently, so a file of
 * apply's that no longer validates can still be replaced). Anything else (a user's file that
 * happens to bear the name, a link, a folder) is foreign: never replaced or removed, even with force.
 */
export async function readManagedTarget(path: string, ref: Ref): Promise<ManagedTarget> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (!st) return { state: 'absent' };
  if (!st.isFile()) return { state: 'foreign' };
  // Bounded: a huge file that bears the name was read whole (over 2 GiB, a RangeError naming no
  // file). Apply never writes more than the highest --max-file-size, so anything larger is not its.
  const read = await readResourceText(path, path, MAX_FILE_SIZE_LIMIT);
  if ('error' in read) {
    if (read.code === 'ENOENT') return { state: 'absent' };
    if (read.code !== undefined) throw new Error(`${path}: ${read.error.message}`);
    return { state: 'foreign' }; // too large, not UTF-8, swapped for a FIFO, being written
  }
  // The version as the directory store computes it (of the decoded text).
  const text = read.text;
  return text.startsWith(MANAGED_HEADER) && holdsOnly(text, ref) ? { state: 'managed', version: contentVersion(text) } : { state: 'foreign' };
}

function holdsOnly(text: string, ref: Ref): boolean {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs) || docs.length !== 1 || docs[0]!.errors.length > 0) return false;
  const v: unknown = docs[0]!.toJS();
  if (!isPlainObject(v)) return false;
  const labels = isPlainObject(v.labels) ? v.labels : {};
  // toUniversalObject's form: cluster-scoped kinds have no mesh, a namespace is a label.
  const mesh = ref.kind === 'ClusterFederatedTrustDomain' ? (v.mesh ?? '') : v.mesh;
  return v.type === ref.kind && v.name === ref.name && mesh === ref.mesh && (labels[NAMESPACE_LABEL] ?? '') === ref.namespace;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A file written in full beside its target, waiting to be renamed over it. */
interface StagedFile {
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** `mode` is set at creation (0600 for key material: never readable by others, not even briefly). */
async function stageFile(path: string, text: string, mode: number, owner?: { uid: number; gid: number }): Promise<StagedFile> {
  // A dot name: the directory store skips it while it exists.
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    if (owner) await fh.chown(owner.uid, owner.gid);
    await fh.writeFile(text);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  const abort = () => unlink(tmp).catch(() => undefined);
  return {
    abort,
    commit: async () => {
      try {
        await rename(tmp, path);
      } catch (e) {
        await abort();
        throw e;
      }
    },
  };
}

/**
 * Replaces files so that a reader sees each old file or its new one, never a part. Every one is
 * written in full (and fsynced) before the first is renamed into place, so a failed write (a full
 * disk) leaves all of them as they were.
 */
export async function writeFilesAtomic(files: readonly { path: string; text: string; mode: number }[], owner?: { uid: number; gid: number }): Promise<void> {
  const staged: StagedFile[] = [];
  try {
    for (const f of files) staged.push(await stageFile(f.path, f.text, f.mode, owner));
  } catch (e) {
    await Promise.all(staged.map((s) => s.abort()));
    throw e;
  }
  for (const [i, s] of staged.entries()) {
    try {
      await s.commit();
    } catch (e) {
      await Promise.all(staged.slice(i + 1).map((rest) => rest.abort()));
      throw e;
    }
  }
  for (const dir of new Set(files.map((f) => dirname(f.path)))) await fsyncDir(dir);
}

/**
 * Whom `apply` run as root gives its files: the resource folder's owner when that is another user
 * (the server's), so a key written owner-only stays readable by the server; undefined otherwise.
 */
export async function ownerForRootWrites(dir: string): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const st = await stat(dir);
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

export async function removeFileDurably(path: string): Promise<void> {
  await unlink(path);
  await fsyncDir(dirname(path));
}

/** Holds the per-resource lock of every path (in sorted order, so two writers never deadlock). */
export async function withResourceLocks<T>(paths: readonly string[], fn: () => Promise<T>): Promise<T> {
  const sorted = [...new Set(paths)].sort();
  const hold = (i: number): Promise<T> =>
    i === sorted.length ? fn() : withFileLock(join(dirname(sorted[i]!), `.${basename(sorted[i]!)}.lock`), () => hold(i + 1), { timeoutMs: 20_000 });
  return hold(0);
}
