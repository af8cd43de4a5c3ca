// How a Resource is stored as JSON in the `doc` column, and read back through the same validation as `validate`.
import { isMap, isSeq, parseAllDocuments, type Node } from 'yaml';
import { RESOURCE_KINDS, resourceKey, type Resource, type ResourceError, type ResourceKind } from '../api/types.js';
import { normaliseDocument } from '../api/validate.js';
import { validateStoredResource } from '../api/validate-stored.js';
import { jsonArrayItemRanges, jsonMemberStart } from '../api/json-ranges.js';
import { listItems } from '../api/parse.js';
import { quoted } from '../api/quote.js';

/** The normalised resource as stable JSON (sorted keys) so equal resources always serialise to equal text. Secret bytes become base64. */
export function encodeResource(r: Resource): string {
  const plain = r.kind === 'Secret' ? { ...r, data: r.data.toString('base64') } : r;
  return JSON.stringify(sortKeys(plain));
}

/** JSON text (e.g. jsonb output, whose key order differs) in encodeResource's canonical form. */
export function canonicalJson(text: string): string {
  return JSON.stringify(sortKeys(JSON.parse(text)));
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
 * Turns a stored `doc` into a Resource with exactly the validation `validate` applies, since rows
 * may be written by another tool or by hand: the stored (normalised) shape this store writes, or a
 * Kubernetes-form document (`apiVersion`) as in a file. Every error names the row (`file`), the
 * field and the reason; the resource must be the one the row's key says it is.
 */
export function decodeResource(doc: unknown, row: RowKey, file: string): { resource: Resource } | { errors: ResourceError[] } {
  const source = { file, document: 0 };
  const expect = row as { kind: ResourceKind; mesh: string; namespace: string; name: string };
  // A doc of another kind mesh-sds serves is said to be one first (an unknown kind is validate's to name): validated as the kind it names, a Dataplane row
  // holding a MeshTrust read as a MeshTrust with empty fields.
  const docKind = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? (doc as { kind?: unknown }).kind : undefined;
  if (typeof docKind === 'string' && docKind !== row.kind && (RESOURCE_KINDS as readonly string[]).includes(docKind)) {
    return { errors: [{ file, document: 0, path: 'kind', message: `is ${quoted(docKind)}, but the row is stored as a ${row.kind}` }] };
  }
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc) && 'apiVersion' in doc) {
    let result: ReturnType<typeof normaliseDocument>;
    try {
      result = normaliseDocument(doc, source);
    } catch (err) {
      return { errors: [{ file, document: 0, path: '', message: `cannot be processed: ${(err as Error).message}` }] };
    }
    if (!result.resource || result.errors.length > 0) return { errors: result.errors };
    if (resourceKey(result.resource) !== resourceKey(expect)) {
      return { errors: [{ file, document: 0, path: '', message: `holds ${resourceKey(result.resource)} but is stored as ${resourceKey(expect)}` }] };
    }
    return { resource: result.resource };
  }
  // The row's kind column says what it is; a doc another tool wrote need not repeat it.
  const withKind = doc !== null && typeof doc === 'object' && !Array.isArray(doc) && !('kind' in doc) ? { ...doc, kind: row.kind } : doc;
  const v = validateStoredResource(withKind, source, expect);
  return v.resource ? { resource: v.resource } : { errors: v.errors };
}

/**
 * Splits YAML/JSON text into the original text of each document, numbered as parseResources
 * numbers them (one per YAML document; one per item of a JSON array or `items` list), so the
 * `source` column keeps what the user wrote. Falls back to the whole text when it cannot be split.
 */
export function splitDocuments(text: string): string[] {
  return splitJsonDocuments(text) ?? splitYamlDocuments(text);
}

/**
 * A JSON file split without the YAML parser (3.3 MB of 20,000 items: 2.3 s there, 0.14 s here):
 * the items of a top-level array or of `items` (parseResources' rule, listItems), each item's text as
 * splitYamlDocuments cuts it. Undefined when the text is not JSON.
 */
export function splitJsonDocuments(text: string): string[] | undefined {
  if (!/^\s*[[{]/.test(text)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const open = text.search(/[[{]/);
  let items: [number, number][] | undefined;
  if (Array.isArray(value)) items = jsonArrayItemRanges(text, open);
  else if (listItems(value)) {
    const at = jsonMemberStart(text, open, 'items');
    if (at !== undefined) items = jsonArrayItemRanges(text, at);
  }
  if (!items) return [text.trim()];
  return items.map(([start, end]) => nodeText(text, start, end));
}

/** The YAML parser's split (any YAML, and JSON the fast path did not take). */
export function splitYamlDocuments(text: string): string[] {
  try {
    const out: string[] = [];
    // Parsed by parseResources first (equal keys refused there): the package's own check is quadratic.
    for (const d of parseAllDocuments(text, { uniqueKeys: false })) {
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

/** The YAML nodes of the documents a list holds, by parseResources' rule (listItems): a top-level array, or `items` of an object without a kind or with a `…List` kind. */
function listNodes(contents: unknown, value: unknown): Node[] | undefined {
  if (Array.isArray(value) && isSeq(contents)) return contents.items as Node[];
  if (Array.isArray(value) || !listItems(value) || !isMap(contents)) return undefined;
  const seq = contents.get('items', true);
  return isSeq(seq) ? (seq.items as Node[]) : undefined;
}

/** Text of a nested node, dedented so a block-style list item reads as a document of its own. */
function nodeText(text: string, start: number, end: number): string {
  const body = text.slice(start, end);
  // A one-line item needs no dedent, nor its column: looked for back to the line's start, that was
  // quadratic on a one-line file (`jq -c`: 20,000 items, 1.9 MB, took 6.8 s; now 0.1 s).
  if (!body.includes('\n')) return body.trim();
  const col = start - (text.lastIndexOf('\n', start - 1) + 1);
  const lines = body.split('\n');
  const strip = new RegExp(`^ {0,${col}}`);
  return lines.map((l, i) => (i === 0 ? l : l.replace(strip, ''))).join('\n').trim();
}
