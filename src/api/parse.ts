// Text (YAML stream or JSON) → validated resources plus every problem, per document.
import { CORE_SCHEMA, loadAll } from 'js-yaml';
import { detachStrings } from './detach-strings.js';
import { addExpandedSize } from './expanded-size.js';
import { LineCounter, parseAllDocuments } from 'yaml';
import { documentShapeProblem, MAYBE_NON_TEXT_KEY } from './yaml-shape.js';
import { isPlainObject } from './validate-common.js';
import { normaliseDocument } from './validate.js';
import { readResourceText, DEFAULT_MAX_FILE_SIZE } from './file-text.js';
import { resourceKey, type Resource, type ResourceError } from './types.js';
import { jsonStringEnd, jsonStringValue } from './json-ranges.js';

export interface ParseResult {
  resources: Resource[];
  errors: ResourceError[];
}

/** `{"items": [...]}` or a Kubernetes `kind: List` / `kind: FooList`: the documents a list holds (the Postgres store cuts its text by the same rule). */
export function listItems(v: unknown): unknown[] | undefined {
  if (Array.isArray(v)) return v;
  if (!isPlainObject(v) || !Array.isArray(v.items)) return undefined;
  const kind = v.kind;
  if (kind === undefined || (typeof kind === 'string' && kind.endsWith('List'))) return v.items;
  return undefined;
}

/** The engine's own words for a document nested deeper than the parser's stack, said plainly. */
export function tooDeep(message: string): string | undefined {
  return /Maximum call stack size exceeded/.test(message) ? 'nested too deeply (thousands of levels; no resource has more than a few)' : undefined;
}

function yamlErrorMessage(e: { message: string; linePos?: [{ line: number; col: number }, ...unknown[]] }): string {
  const first = e.message.split('\n')[0] ?? e.message;
  const reason = tooDeep(first) ?? first.replace(/ at line \d+, column \d+:?$/, '');
  const pos = e.linePos?.[0];
  return pos ? `invalid YAML at line ${pos.line}, column ${pos.col}: ${reason}` : `invalid YAML: ${reason}`;
}

/**
 * Parses every document of a file. A bad document yields errors and is dropped; the good ones
 * are returned alongside. `document` numbers YAML documents from 0; a list (JSON array,
 * `items`) counts each item as one document. A later duplicate of the same resource is an error.
 */
export function parseResources(text: string, file: string, maxBytes = DEFAULT_MAX_FILE_SIZE): ParseResult {
  const resources: Resource[] = [];
  const errors: ResourceError[] = [];
  const seen = new Map<string, number>();
  let document = 0;

  // `<<` read as a plain key would make a label or field named "<<": say what it is instead.
  const mayMerge = text.includes('<<');
  // A NUL reaches a value only through an escape (`\u0000`, YAML's `\0`): a file's own NUL bytes are refused as binary.
  const mayHoldNul = text.includes('\\');
  const accept = (value: unknown): void => {
    const doc = document++;
    if (value === null || value === undefined) return; // empty document
    const merge = mayMerge ? mergeKeyPath(value) : undefined;
    if (merge !== undefined) {
      errors.push({ file, document: doc, path: merge, message: 'YAML merge keys (<<) are not supported: write the keys out' });
      return;
    }
    // Checked before validation, which lets one through where it reads only part of a string (text
    // around a PEM block, a file path): the Postgres store cannot keep it, and its apply failed
    // with the database's "unsupported Unicode escape sequence", naming no resource or field.
    const nul = mayHoldNul ? nulPath(value) : undefined;
    if (nul !== undefined) {
      errors.push({ file, document: doc, path: nul, message: 'must not hold a NUL character (U+0000): no resource needs one, and the Postgres store cannot keep it' });
      return;
    }
    // Likewise a lone surrogate (`"\ud800"`, no character of any encoding): jsonb refuses it, and
    // apply failed with "invalid input syntax for type json", naming no resource or field.
    const lone = mayHoldNul ? loneSurrogatePath(value) : undefined;
    if (lone !== undefined) {
      errors.push({ file, document: doc, path: lone, message: 'must not hold a lone UTF-16 surrogate (an escape such as \\ud800 without its pair): it is no Unicode character, and the Postgres store cannot keep it' });
      return;
    }
    let result: ReturnType<typeof normaliseDocument>;
    try {
      result = normaliseDocument(detachStrings(value), { file, document: doc });
    } catch (err) {
      errors.push({ file, document: doc, path: '', message: `cannot be processed: ${tooDeep((err as Error).message) ?? (err as Error).message}` });
      return;
    }
    for (const e of result.errors) errors.push(e);
    const r = result.resource;
    if (!r) return;
    const key = resourceKey(r);
    const first = seen.get(key);
    if (first !== undefined) {
      errors.push({ file, document: doc, path: '', message: `duplicate ${r.kind} "${r.name}" in mesh "${r.mesh}" (first defined in document ${first + 1})` });
      return;
    }
    seen.set(key, doc);
    resources.push(r);
  };

  const acceptDocument = (value: unknown): void => {
    const items = listItems(value);
    if (items) for (const item of items) accept(item);
    else accept(value);
  };

  // JSON fast path: JSON.parse is far faster than the YAML parser on large lists. Invalid JSON
  // falls through to the YAML parser, which reports the line and column (or reads YAML flow style).
  if (/^\s*[[{]/.test(text)) {
    let value: unknown;
    let isJson = true;
    try {
      value = JSON.parse(text);
    } catch {
      isJson = false;
    }
    // JSON.parse keeps the last of two equal keys silently; the YAML parser refuses them, naming
    // the line, as it does for the same document in a .yaml file.
    if (isJson && !hasDuplicateJsonKey(text)) {
      acceptDocument(value);
      return { resources, errors };
    }
  }

  // YAML fast path: js-yaml (core schema, as the `yaml` package's default) reads large plain
  // files several times faster. Anything it refuses, and any file using anchors, aliases or tags
  // (where the two could differ, or alias expansion needs the `yaml` package's limits), goes
  // through the `yaml` package, which also reports line and column; so does any file where a key
  // may be null or a collection (the two parsers name those differently; refused below).
  if (!/[&*!]/.test(text) && !MAYBE_NON_TEXT_KEY.test(text)) {
    let values: unknown[] | undefined;
    try {
      values = loadAll(text, undefined, { schema: CORE_SCHEMA });
    } catch {
      values = undefined;
    }
    if (values) {
      for (const v of values) acceptDocument(v);
      return { resources, errors };
    }
  }

  // Aliases count as often as they occur, against the same limit as the file's own bytes, summed
  // over its documents (anchors are per document, so a thousand small bombs would add up).
  let expanded = 0;
  // No merge keys (YAML 1.1's `<<: *common`): the yaml package copies the whole anchored map for
  // each one, outside maxAliasCount, so a 140 KB file cost seconds and 400 MB. They are refused by name.
  const lines = new LineCounter();
  // Equal keys are refused by documentShapeProblem, in one pass (the package's check is quadratic).
  for (const d of parseAllDocuments(text, { lineCounter: lines, uniqueKeys: false })) {
    // parseAllDocuments returns an EmptyStream (no documents) for empty text.
    if (d.errors.length > 0) {
      const doc = document++;
      for (const e of d.errors) errors.push({ file, document: doc, path: '', message: yamlErrorMessage(e) });
      continue;
    }
    const shapeProblem = documentShapeProblem(d, lines);
    if (shapeProblem !== undefined) {
      errors.push({ file, document: document++, path: '', message: shapeProblem });
      continue;
    }
    let value: unknown;
    try {
      value = d.toJS({ maxAliasCount: 1000 });
    } catch (err) {
      errors.push({ file, document: document++, path: '', message: `invalid YAML: ${(err as Error).message}` });
      continue;
    }
    expanded = addExpandedSize(value, expanded, maxBytes);
    if (expanded > maxBytes) {
      errors.push({
        file,
        document: document++,
        path: '',
        message: `YAML aliases expand this file to more than ${maxBytes} bytes, the limit of a file (--max-file-size), from ${Buffer.byteLength(text)} bytes of text: write the repeated values out fewer times; this and any later document are not read`,
      });
      break;
    }
    acceptDocument(value);
  }
  return { resources, errors };
}

/** What firstPath looks for: a key (and how its path is written) and, optionally, a string value. */
interface PathSearch {
  key: (k: string) => boolean;
  keyPath: (path: string, k: string) => string;
  value?: (s: string) => boolean;
}

/**
 * The path of the first key or string value (in document order, depth first) that `search` picks
 * in a parsed document (objects within objects and lists), or undefined. Iterative: JSON nests
 * deeper than the call stack, and a file with a backslash or `<<` anywhere threw RangeError out of parsing.
 */
function firstPath(value: unknown, path: string, search: PathSearch): string | undefined {
  // A key is looked at before its value's subtree and after the previous value's, as a walk would.
  const stack: ({ value: unknown; path: string } | { key: string; path: string })[] = [{ value, path }];
  while (stack.length > 0) {
    const task = stack.pop()!;
    if ('key' in task) {
      if (search.key(task.key)) return search.keyPath(task.path, task.key);
      continue;
    }
    const { value: v, path: p } = task;
    if (typeof v === 'string') {
      if (search.value?.(v)) return p;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: `${p}[${i}]` });
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, item] = entries[i]!;
        stack.push({ value: item, path: p === '' ? k : `${p}.${k}` }, { key: k, path: p });
      }
    }
  }
  return undefined;
}

const holdsNul = (s: string) => s.includes('\u0000');

/** The path of the first string (value or key) holding U+0000, or undefined. */
const nulPath = (value: unknown): string | undefined =>
  firstPath(value, '', { key: holdsNul, keyPath: (path, k) => (path === '' ? JSON.stringify(k) : `${path}[${JSON.stringify(k)}]`), value: holdsNul });

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const holdsLoneSurrogate = (s: string) => LONE_SURROGATE.test(s);

/** The path of the first string (value or key) holding a surrogate without its pair, or undefined. */
const loneSurrogatePath = (value: unknown): string | undefined =>
  firstPath(value, '', { key: holdsLoneSurrogate, keyPath: (path, k) => (path === '' ? JSON.stringify(k) : `${path}[${JSON.stringify(k)}]`), value: holdsLoneSurrogate });

/** The path of the first `<<` key in a parsed document, or undefined. */
const mergeKeyPath = (value: unknown): string | undefined => firstPath(value, '', { key: (k) => k === '<<', keyPath: (path, k) => (path === '' ? k : `${path}.${k}`) });

/**
 * Whether a text that JSON.parse accepted has an object with the same key twice (escapes
 * decoded: "a\u0062" and "ab" are one key). A single pass over the text, which is valid JSON.
 */
export function hasDuplicateJsonKey(text: string): boolean {
  const objects: (Set<string> | undefined)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const end = jsonStringEnd(text, i);
      if (expectKey) {
        const key = jsonStringValue(text, i, end);
        const keys = objects[objects.length - 1]!;
        if (keys.has(key)) return true;
        keys.add(key);
        expectKey = false;
      }
      i = end - 1;
    } else if (c === 0x7b) {
      objects.push(new Set());
      expectKey = true;
    } else if (c === 0x5b) {
      objects.push(undefined);
      expectKey = false;
    } else if (c === 0x7d || c === 0x5d) {
      objects.pop();
      expectKey = false;
    } else if (c === 0x2c) expectKey = objects[objects.length - 1] !== undefined;
    else if (c === 0x3a) expectKey = false;
  }
  return false;
}

/** Reads and parses one file; a read failure, a file over `maxBytes` or not UTF-8 is a document-level error. */
export async function loadResourceFile(path: string, maxBytes = DEFAULT_MAX_FILE_SIZE): Promise<ParseResult> {
  const read = await readResourceText(path, path, maxBytes);
  if ('error' in read) return { resources: [], errors: [read.error] };
  return parseResources(read.text, path, maxBytes);
}
