// How a normalised Resource is stored as JSON in the `doc` column, and read back.
import { isMap, isSeq, parseAllDocuments, type Node } from 'yaml';
import { RESOURCE_KINDS, type Resource, type ResourceKind } from '../api/types.js';

/** Stable JSON (sorted keys) so equal resources always serialise to equal text. Secret bytes become base64. */
export function encodeResource(r: Resource): string {
  const plain = r.kind === 'Secret' ? { ...r, data: r.data.toString('base64') } : r;
  return JSON.stringify(sortKeys(plain));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}

export interface RowKey {
  kind: string;
  mesh: string;
  namespace: string;
  name: string;
}

/**
 * Turns a stored `doc` back into a Resource. The doc was written by this store from an already
 * validated resource, so this only checks the shape that consumers rely on, to survive rows that were
 * edited by hand or written by a different version. Returns a reason string when the row is unusable.
 */
export function decodeResource(doc: unknown, row: RowKey): Resource | string {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return 'doc: must be an object';
  const d = doc as Record<string, unknown>;
  if (!RESOURCE_KINDS.includes(d.kind as ResourceKind)) return `kind: unknown kind ${JSON.stringify(d.kind)}`;
  for (const f of ['kind', 'mesh', 'namespace', 'name'] as const) {
    if (d[f] !== row[f]) return `${f}: ${JSON.stringify(d[f])} does not match the row key ${JSON.stringify(row[f])}`;
  }
  const labels = d.labels ?? {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return 'labels: must be an object';
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v !== 'string') return `labels.${k}: must be a string`;
  }
  const base = { ...d, labels };
  switch (d.kind as ResourceKind) {
    case 'MeshTrust': {
      const spec = d.spec as Record<string, unknown> | undefined;
      if (!spec || typeof spec.trustDomain !== 'string') return 'spec.trustDomain: must be a string';
      if (!Array.isArray(spec.caBundles)) return 'spec.caBundles: must be an array';
      return base as unknown as Resource;
    }
    case 'MeshIdentity': {
      const spec = d.spec as Record<string, unknown> | undefined;
      if (!spec || typeof spec.spiffeID !== 'object' || spec.spiffeID === null) return 'spec.spiffeID: must be an object';
      const provider = spec.provider as Record<string, unknown> | undefined;
      if (!provider || (provider.type !== 'Bundled' && provider.type !== 'Spire')) {
        return 'spec.provider.type: must be one of Bundled, Spire';
      }
      return base as unknown as Resource;
    }
    case 'Dataplane':
      return base as unknown as Resource;
    case 'ClusterFederatedTrustDomain': {
      const spec = d.spec as Record<string, unknown> | undefined;
      if (!spec || typeof spec.trustDomain !== 'string' || typeof spec.bundleEndpointURL !== 'string') return 'spec.trustDomain: must be a string';
      return base as unknown as Resource;
    }
    case 'Secret': {
      if (typeof d.data !== 'string') return 'data: must be a base64 string';
      return { ...base, data: Buffer.from(d.data, 'base64') } as unknown as Resource;
    }
  }
}

/**
 * Splits YAML/JSON text into the original text of each document, numbered as parseResources
 * numbers them (one per YAML document; one per item of a JSON array or `items` list), so the
 * `source` column keeps what the user wrote. Falls back to the whole text when it cannot be split.
 */
export function splitDocuments(text: string): string[] {
  try {
    const out: string[] = [];
    for (const d of parseAllDocuments(text)) {
      const [start, , end] = d.range;
      // A document's range starts at its `---` marker; keep only what the user wrote inside it.
      const whole = text.slice(start, end).replace(/^---[ \t]*(?:#[^\n]*)?\r?\n/, '').trim();
      const items = d.errors.length === 0 ? listNodes(d.contents, d.toJS({ maxAliasCount: 1000 })) : undefined;
      if (items) for (const n of items) out.push(n.range ? nodeText(text, n.range[0], n.range[2]) : whole);
      else out.push(whole);
    }
    return out;
  } catch {
    return [text];
  }
}

/** Same rule as parseResources: a top-level array, or `items` of an object without a kind or with a `…List` kind. */
function listNodes(contents: unknown, value: unknown): Node[] | undefined {
  if (Array.isArray(value) && isSeq(contents)) return contents.items as Node[];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (!Array.isArray(v.items) || !isMap(contents)) return undefined;
  if (v.kind !== undefined && !(typeof v.kind === 'string' && v.kind.endsWith('List'))) return undefined;
  const seq = contents.get('items', true);
  return isSeq(seq) ? (seq.items as Node[]) : undefined;
}

/** Text of a nested node, dedented so a block-style list item reads as a document of its own. */
function nodeText(text: string, start: number, end: number): string {
  const col = start - (text.lastIndexOf('\n', start - 1) + 1);
  const lines = text.slice(start, end).split('\n');
  const strip = new RegExp(`^ {0,${col}}`);
  return lines.map((l, i) => (i === 0 ? l : l.replace(strip, ''))).join('\n').trim();
}
