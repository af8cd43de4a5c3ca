// `apply`, `delete` and `import`: writes through the ResourceStore interface, so they work the same
// with the directory store and with Postgres.
import { stat } from 'node:fs/promises';
import { firstValueFrom } from 'rxjs';
import { decodeResourceText, readResourceText } from '../api/file-text.js';
import { parseResources } from '../api/parse.js';
import { quoted } from '../api/quote.js';
import { pathForMessage } from '../api/secret-text.js';
import { serializeResource, toUniversalObject } from '../api/serialize.js';
import { formatResourceError, resourceKey, type Resource, type ResourceKind } from '../api/types.js';
import { describeResource } from '../store/conflict.js';
import { DirectoryStore } from '../store/directory.js';
import { inlineCaProblem } from './inline-ca.js';
import { StoreWriteError, type ResourceStore } from '../store/types.js';

export interface Output {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The text of `-f FILE` (or stdin for `-`), refused as `validate` refuses it when too large or not UTF-8. */
export async function readInput(file: string, maxBytes: number): Promise<string> {
  const read = file === '-' ? decodeResourceText(await readStdinBytes(maxBytes), 'stdin', maxBytes) : await readResourceText(file, pathForMessage(file), maxBytes);
  if ('error' in read) throw new Error(formatResourceError(read.error));
  return read.text;
}

async function readStdinBytes(maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    if (size > maxBytes) break; // enough to report it as too large, without holding the rest
  }
  return Buffer.concat(chunks);
}

/** Exit code 0 when everything was stored, 1 otherwise (every problem printed, conflicts named). */
/** `zone`: the server's, rendering a trust domain of .Zone that an inline CA must be the CA of. */
export async function runApply(store: ResourceStore, text: string, source: string, force: boolean, io: Output, zone?: string): Promise<number> {
  // As kubectl: an input with no objects is an error, not a silent success (a wrong file, an empty pipe).
  const parsed = parseResources(text, source);
  if (parsed.errors.length === 0 && parsed.resources.length === 0) {
    io.err(`error: no objects passed to apply: ${source} holds no resources; nothing applied`);
    return 1;
  }
  // As `validate`: an inline CA the server would refuse is not stored (it would replace the good
  // one on disk, and the identity would have no CA after the next restart).
  if (parsed.errors.length === 0) {
    const refused = parsed.resources.flatMap((r) => {
      const problem = inlineCaProblem(r, zone);
      return problem ? [formatResourceError({ file: source, document: r.source?.document ?? 0, path: problem.path, message: problem.message })] : [];
    });
    if (refused.length > 0) {
      io.err(`${refused.join('\n')}\nnothing applied`);
      return 1;
    }
  }
  const errors = await store.apply(text, source, { force });
  if (errors.length > 0) {
    io.err(errors.map(formatResourceError).join('\n'));
    return 1;
  }
  io.out(`applied ${source}`);
  return 0;
}

export async function runDelete(
  store: ResourceStore,
  ref: { kind: ResourceKind; mesh: string; namespace: string; name: string },
  opts: { force: boolean; resourceVersion?: string },
  io: Output,
): Promise<number> {
  // A name that is not a resource name is refused by the directory store itself, before any file is
  // read (it becomes a file name there); Postgres may hold a row another tool wrote under one, and
  // deleting it must stay possible.
  const what = describeResource(ref);
  try {
    const deleted = await store.delete(ref.kind, ref.mesh, ref.namespace, ref.name, opts);
    if (!deleted) {
      io.err(`${what} not found${await elsewhere(store, ref)}`);
      return 1;
    }
    io.out(`deleted ${what}`);
    return 0;
  } catch (e) {
    if (e instanceof StoreWriteError) {
      io.err(e.message);
      return 1;
    }
    throw e;
  }
}

/**
 * Where a resource of that kind and name is, when not where `delete` looked: a Universal resource
 * labelled `k8s.kuma.io/namespace` is in that namespace, and naming it needs `--namespace`.
 */
async function elsewhere(store: ResourceStore, ref: { kind: ResourceKind; mesh: string; namespace: string; name: string }): Promise<string> {
  if (ref.kind === 'ClusterFederatedTrustDomain') return '';
  const snap = await firstValueFrom(store.snapshots$);
  const others = [...snap.resources.values()].filter((r) => r.kind === ref.kind && r.name === ref.name && (r.mesh !== ref.mesh || r.namespace !== ref.namespace));
  if (others.length === 0) return '';
  const where = (r: Resource) => [r.mesh !== ref.mesh ? `mesh ${quoted(r.mesh)}` : '', r.namespace !== ref.namespace ? (r.namespace ? `namespace ${quoted(r.namespace)}` : 'no namespace') : ''].filter(Boolean).join(', ');
  const flags = (r: Resource) => [r.mesh !== ref.mesh ? `--mesh ${r.mesh}` : '', r.namespace !== ref.namespace ? (r.namespace ? `--namespace ${r.namespace}` : 'without --namespace') : ''].filter(Boolean).join(' ');
  const looked = !others.some((r) => r.namespace !== ref.namespace) ? '' : ref.namespace ? ` in namespace ${quoted(ref.namespace)}` : ' without a namespace (no --namespace given)';
  const sorted = others.sort((a, b) => `${a.mesh}/${a.namespace}`.localeCompare(`${b.mesh}/${b.namespace}`));
  const shown = sorted.slice(0, 5).map((r) => `${where(r)} (use ${flags(r)})`);
  const more = sorted.length > shown.length ? ` and ${sorted.length - shown.length} more` : '';
  return `${looked}; it exists in ${shown.join(', ')}${more}`;
}

const sameContent = (a: Resource, b: Resource) => JSON.stringify(toUniversalObject(a)) === JSON.stringify(toUniversalObject(b));

/**
 * Copies every valid resource of a directory into a store: creates what is missing, updates what
 * differs, leaves the rest (so a second run reports everything unchanged). Never deletes.
 */
export async function runImport(dir: string, target: ResourceStore, maxFileSize: number, io: Output): Promise<number> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new Error(`--resources ${pathForMessage(dir)}: not a directory`);
  const source = await DirectoryStore.readOnce(dir, maxFileSize);
  const current = await firstValueFrom(target.snapshots$);
  let failed = source.errors.length > 0;
  for (const e of source.errors) io.err(`not imported: ${formatResourceError(e)}`);
  const counts = { created: 0, updated: 0, unchanged: 0, failed: 0 };
  const sorted = [...source.resources.values()].sort((a, b) => resourceKey(a).localeCompare(resourceKey(b)));
  for (const r of sorted) {
    const key = resourceKey(r);
    const existing = current.resources.get(key);
    // A row with a version but no resource is stored and invalid: overwriting it is not a creation.
    const invalidRow = !existing && current.versions?.has(key) === true;
    const what = `${r.kind} ${r.mesh}/${r.namespace ? `${r.namespace}/` : ''}${r.name}`;
    if (existing && sameContent(existing, r)) {
      counts.unchanged++;
      io.out(`unchanged ${what}`);
      continue;
    }
    const errors = await target.apply(serializeResource(r, 'yaml'), r.source?.file ?? dir);
    if (errors.length > 0) {
      counts.failed++;
      failed = true;
      io.err(errors.map(formatResourceError).join('\n'));
      continue;
    }
    const outcome = existing || invalidRow ? 'updated' : 'created';
    counts[outcome]++;
    io.out(`${outcome} ${what}${invalidRow ? ' (replaced an invalid row)' : ''}`);
  }
  io.out(`imported ${dir}: ${counts.created} created, ${counts.updated} updated, ${counts.unchanged} unchanged${counts.failed ? `, ${counts.failed} failed` : ''}`);
  return failed ? 1 : 0;
}
