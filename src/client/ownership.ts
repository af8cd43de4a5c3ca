// Who could swap the out-dir from under the agent. refuseForeignFolder (agent.ts) checks the folder
// the path resolves to; these check what leads to it: a symlink given as --out-dir is followed on
// every write, so its owner can point it elsewhere between our write and the reload that reads it;
// and the owner of any folder on the way to the out-dir (the one holding it, or one further up)
// can rename what it holds away and put their own there, such as a symlink to /etc. Only this user
// and root are trusted.
import { lstat, realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

function foreign(uid: number): boolean {
  const me = process.getuid?.();
  return me !== undefined && uid !== me && uid !== 0;
}

/** The folders above `path`, nearest first, up to the root. */
function foldersAbove(path: string): string[] {
  const folders: string[] = [];
  for (let at = dirname(path); ; at = dirname(at)) {
    folders.push(at);
    if (at === dirname(at)) return folders;
  }
}

export async function refuseForeignPath(outDir: string): Promise<void> {
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
  for (const folder of foldersAbove(resolve(outDir))) {
    const st = await lstat(folder).catch(() => undefined);
    if (!st) continue;
    if (foreign(st.uid)) refuse(folder, st.uid, nearest === undefined);
    nearest ??= folder;
  }
  const named = own ? resolve(outDir) : nearest;
  const real = named === undefined ? undefined : await realpath(named).catch(() => undefined);
  if (real === undefined || real === named) return;
  // The out-dir itself is checked by refuseForeignFolder (agent.ts).
  for (const folder of own ? foldersAbove(real) : [real, ...foldersAbove(real)]) {
    const st = await lstat(folder).catch(() => undefined);
    if (st && foreign(st.uid)) refuse(folder, st.uid, false);
  }
}
