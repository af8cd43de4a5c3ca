// `mesh-sds validate FILE…`: one line per problem, or a per-file count of valid resources.
import { X509Certificate } from 'node:crypto';
import { formatResourceError, resourceKey, type Resource } from './types.js';
import { splitPemCertificates } from './pem.js';
import { loadResourceFile } from './parse.js';
import { DEFAULT_MAX_FILE_SIZE } from './file-text.js';

/**
 * An expired CA in a MeshTrust is not an error (the bundle's other CAs still count, and an expired
 * CA validates nothing), but it is almost always a mistake: say so, with where it is.
 */
function expiryWarnings(resources: readonly Resource[], now: Date): string[] {
  const out: string[] = [];
  for (const r of resources) {
    if (r.kind !== 'MeshTrust') continue;
    r.spec.caBundles.forEach((b, i) => {
      splitPemCertificates(b.pem.value).ders.forEach((der, j) => {
        const notAfter = new Date(new X509Certificate(der).validTo);
        if (notAfter.getTime() < now.getTime()) {
          const where = r.source ? `${r.source.file} (document ${r.source.document + 1})` : r.name;
          out.push(`warning: ${where}: spec.caBundles[${i}].${b.spiffeBundle ? 'spiffeBundle' : 'pem'}.value: certificate ${j + 1} expired at ${notAfter.toISOString()}`);
        }
      });
    });
  }
  return out;
}

/** A check of a parsed resource that this layer cannot make (a CA load, say): a field and why, or undefined. */
export type ResourceCheck = (r: Resource) => { path: string; message: string } | undefined;

export async function validateFiles(
  paths: readonly string[],
  now: Date = new Date(),
  maxBytes = DEFAULT_MAX_FILE_SIZE,
  check?: ResourceCheck,
): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  // The same resource in two files would make a directory store flip between them.
  const firstFile = new Map<string, string>();
  for (const path of paths) {
    const { resources, errors } = await loadResourceFile(path, maxBytes);
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
      const problem = check?.(r);
      if (problem) errors.push({ file: path, document: r.source?.document ?? 0, path: problem.path, message: problem.message });
    }
    if (errors.length > 0) {
      ok = false;
      for (const e of errors) lines.push(formatResourceError(e));
    } else {
      lines.push(`${path}: ${resources.length} resources valid`);
    }
    lines.push(...expiryWarnings(resources, now));
  }
  return { ok, lines };
}
