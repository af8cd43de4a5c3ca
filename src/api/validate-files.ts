// `mesh-sds validate FILE…`: one line per problem, or a per-file count of valid resources.
import { formatResourceError, resourceKey } from './types.js';
import { loadResourceFile } from './parse.js';

export async function validateFiles(paths: readonly string[]): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  // The same resource in two files would make a directory store flip between them.
  const firstFile = new Map<string, string>();
  for (const path of paths) {
    const { resources, errors } = await loadResourceFile(path);
    for (const r of resources) {
      const key = resourceKey(r);
      const other = firstFile.get(key);
      if (other !== undefined && other !== path) {
        errors.push({
          file: path,
          document: r.source?.document ?? 0,
          path: '',
          message: `duplicate ${r.kind} "${r.name}" in mesh "${r.mesh}" (also defined in ${other})`,
        });
      } else firstFile.set(key, path);
    }
    if (errors.length > 0) {
      ok = false;
      lines.push(...errors.map(formatResourceError));
    } else {
      lines.push(`${path}: ${resources.length} resources valid`);
    }
  }
  return { ok, lines };
}
