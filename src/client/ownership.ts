// Who could swap the out-dir from under the agent. refuseForeignFolder (agent.ts) checks the folder
// the path resolves to; these check what leads to it: a symlink given as --out-dir is followed on
// every write, so its owner can point it elsewhere between our write and the reload that reads it;
// and the owner of the folder holding the out-dir can rename the out-dir away and put their own
// there. Only this user and root are trusted.
import { lstat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

function foreign(uid: number): boolean {
  const me = process.getuid?.();
  return me !== undefined && uid !== me && uid !== 0;
}

export async function refuseForeignPath(outDir: string): Promise<void> {
  const me = process.getuid?.();
  const own = await lstat(outDir).catch(() => undefined);
  if (own?.isSymbolicLink() && foreign(own.uid)) {
    throw new Error(`refusing to write through ${outDir}: it is a symlink that uid ${own.uid} owns, not this user (uid ${me}), who could point it elsewhere between writes; give the folder itself as --out-dir`);
  }
  // The nearest existing folder above (mkdir -p makes the rest, as ours).
  let parent = dirname(resolve(outDir));
  for (;;) {
    const st = await lstat(parent).catch(() => undefined);
    if (st) {
      if (foreign(st.uid)) {
        throw new Error(`refusing to write into ${outDir}: the folder holding it, ${parent}, belongs to uid ${st.uid}, not to this user (uid ${me}), who could rename the out-dir away and put their own files there; use a folder under one of your own`);
      }
      return;
    }
    if (parent === dirname(parent)) return;
    parent = dirname(parent);
  }
}
