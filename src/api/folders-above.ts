import { dirname } from 'node:path';

/** The folders above an absolute `path`, nearest first, up to the root (`/a/b` → `/a`, `/`). */
export function foldersAbove(path: string): string[] {
  const folders: string[] = [];
  for (let at = path; dirname(at) !== at; ) {
    at = dirname(at);
    folders.push(at);
  }
  return folders;
}
