// Who could swap the out-dir from under the agent. refuseForeignFolder (agent.ts) checks the folder
// the path resolves to; these check what leads to it: a symlink given as --out-dir is followed on
// every write, so its owner can point it elsewhere between our write and the reload that reads it;
// and the owner of any folder on the way to the out-dir (the one holding it, or one further up)
// can rename what it holds away and put their own there, such as a symlink to /etc. Only this user
// and root are trusted.
import { lstat, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { foldersAbove } from '../api/folders-above.js';

function foreign(uid: number): boolean {
  const me = process.getuid?.();
  return me !== undefined && uid !== me && uid !== 0;
}

/** A folder on the way to the out-dir that others can write into without the sticky bit. */
export interface OpenFolder {
  folder: string;
  mode: number;
}

/** Writable by its group or every user, without the sticky bit: they can rename what it holds. */
export const openMode = (mode: number): number | undefined => ((mode & 0o022) !== 0 && (mode & 0o1000) === 0 ? mode & 0o7777 : undefined);

/**
 * Throws for a folder on the way that this user cannot trust; returns the nearest one others can
 * write into (not refused, as the out-dir itself is not: a Kubernetes emptyDir is made 0777).
 */
export async function refuseForeignPath(outDir: string): Promise<OpenFolder | undefined> {
  const me = process.getuid?.();
  const own = await lstat(outDir).catch(() => undefined);
  if (own?.isSymbolicLink() && foreign(own.uid)) {
    throw new Error(`refusing to write through ${outDir}: it is a symlink that uid ${own.uid} owns, not this user (uid ${me}), who could point it elsewhere between writes; give the folder itself as --out-dir`);
  }
  const refuse = (folder: string, uid: number, nearest: boolean): never => {
    const which = nearest ? `the folder holding it, ${folder},` : `${folder}, a folder above it,`;
    throw new Error(`refusing to write into ${outDir}: ${which} belongs to uid ${uid}, not to this user (uid ${me}), who could rename the out-dir (or a folder on the way to it) away and put their own files there; use a folder under one of your own`);
  };
  // The folders as named (those missing are made by mkdir -p, as ours), then, as a symlink on the
  // way (or the out-dir itself) is followed, the folders the out-dir, or the nearest existing
  // folder above it, really is in.
  let nearest: string | undefined;
  let open: OpenFolder | undefined;
  const note = (folder: string, st: { mode: number; isDirectory(): boolean }) => {
    const mode = st.isDirectory() ? openMode(st.mode) : undefined;
    if (mode !== undefined) open ??= { folder, mode };
  };
  for (const folder of foldersAbove(resolve(outDir))) {
    const st = await lstat(folder).catch(() => undefined);
    if (!st) continue;
    if (foreign(st.uid)) refuse(folder, st.uid, nearest === undefined);
    note(folder, st);
    nearest ??= folder;
  }
  const named = own ? resolve(outDir) : nearest;
  const real = named === undefined ? undefined : await realpath(named).catch(() => undefined);
  if (real === undefined || real === named) return open;
  // The out-dir itself is checked by refuseForeignFolder (agent.ts).
  for (const folder of own ? foldersAbove(real) : [real, ...foldersAbove(real)]) {
    const st = await lstat(folder).catch(() => undefined);
    if (!st) continue;
    if (foreign(st.uid)) refuse(folder, st.uid, false);
    note(folder, st);
  }
  return open;
}
