// `validate DIR`: a directory is checked as the directory store reads it (its resource files, in
// folders below too, symlinks followed, loops named), not refused as "not a regular file".
import { stat } from 'node:fs/promises';
import { fsErrorReason } from '../api/secret-text.js';
import { listTree } from '../store/directory-walk.js';

/** The files to validate for `args`, and what is wrong with the directories among them. */
export async function validateTargets(args: readonly string[]): Promise<{ files: string[]; problems: string[] }> {
  const files: string[] = [];
  const problems: string[] = [];
  for (const arg of args) {
    const st = await stat(arg).catch(() => undefined);
    // A file, or a path validateFiles reports as it cannot read it.
    if (!st?.isDirectory()) {
      files.push(arg);
      continue;
    }
    try {
      const listing = await listTree(arg, arg);
      for (const [path, why] of listing.problems) problems.push(`${path}: ${why}`);
      if (listing.files.length === 0 && listing.problems.size === 0) problems.push(`${arg}: no resource files (.yaml, .yml, .json) in this directory`);
      files.push(...listing.files.map((f) => f.read));
    } catch (e) {
      problems.push(`${arg}: cannot list the directory: ${fsErrorReason(e)}`);
    }
  }
  return { files, problems };
}
