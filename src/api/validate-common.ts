// Small readers that check a field's shape and record `path: reason` problems.
import { quoted } from './quote.js';

export interface Issue {
  path: string;
  message: string;
}

export class Issues {
  readonly list: Issue[] = [];
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }
  get count(): number {
    return this.list.length;
  }
}

export function field(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

export function index(base: string, i: number): string {
  return `${base}[${i}]`;
}

/** Map keys such as label keys contain dots and slashes, so they are quoted. */
export function mapKey(base: string, key: string): string {
  return `${base}[${JSON.stringify(key)}]`;
}

/**
 * Where an unknown field is: a name that is not a plain field name is the file's own text, quoted
 * like a map key, its control characters escaped and a long one clipped: `"\x1b]0;…": x` in a file
 * retitled the terminal of whoever ran validate, apply or get (which print these paths as they are).
 */
export function unknownField(base: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$-]{0,99}$/.test(key) ? field(base, key) : `${base}[${quoted(key, 100)}]`;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/** Absent (undefined/null, as Kubernetes treats null) → undefined without a problem. */
export function readObject(
  v: unknown,
  path: string,
  issues: Issues,
  allowed: readonly string[] | 'any',
): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isPlainObject(v)) {
    issues.add(path, 'must be an object');
    return undefined;
  }
  if (allowed !== 'any') {
    for (const k of Object.keys(v)) if (!allowed.includes(k)) issues.add(unknownField(path, k), 'unknown field');
  }
  return v;
}

export function readString(v: unknown, path: string, issues: Issues): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') {
    issues.add(path, 'must be a string');
    return undefined;
  }
  return v;
}

/** A required, non-empty string. */
export function readBoolean(v: unknown, path: string, issues: Issues): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') {
    issues.add(path, 'must be a boolean');
    return undefined;
  }
  return v;
}

export function readEnum<T extends string>(
  v: unknown,
  path: string,
  issues: Issues,
  values: readonly T[],
): T | undefined {
  if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
  issues.add(path, `must be one of ${values.join(', ')}`);
  return undefined;
}

/** A string→string map (labels, matchLabels, tags). */
export function readStringMap(v: unknown, path: string, issues: Issues): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isPlainObject(v)) {
    issues.add(path, 'must be a map of strings');
    return undefined;
  }
  const out: Record<string, string> = {};
  let ok = true;
  for (const [k, val] of Object.entries(v)) {
    if (k === '') {
      issues.add(path, 'keys must not be empty');
      ok = false;
    } else if (typeof val !== 'string') {
      issues.add(mapKey(path, k), 'must be a string');
      ok = false;
    } else out[k] = val;
  }
  return ok ? out : undefined;
}

// C0 and C1 control characters and DEL: in a label they rewrite terminals (ANSI escapes) and
// forge lines of every text output (`get`, `inspect`, /readyz?verbose) that prints it.
// eslint-disable-next-line no-control-regex -- finding them is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** Where a string holds a control character, as `U+000A at 5`; undefined when none. */
export function controlCharacterAt(s: string): string | undefined {
  const m = CONTROL_CHARACTER.exec(s);
  return m ? `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} at ${m.index}` : undefined;
}

/** Labels (and label selectors, tags): a map of strings whose keys and values hold no control character. */
export function readLabelMap(v: unknown, path: string, issues: Issues): Record<string, string> | undefined {
  const map = readStringMap(v, path, issues);
  if (!map) return undefined;
  let ok = true;
  for (const [k, val] of Object.entries(map)) {
    const inKey = controlCharacterAt(k);
    const inValue = inKey ? undefined : controlCharacterAt(val);
    if (inKey) issues.add(path, `key ${JSON.stringify(k.slice(0, 64))} must not hold control characters (${inKey})`);
    if (inValue) issues.add(mapKey(path, k), `must not hold control characters (${inValue})`);
    if (inKey || inValue) ok = false;
  }
  return ok ? map : undefined;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Resource names: DNS-1123 subdomain (lowercase, digits, `-`, `.`; ≤253). No `_`, since KRIs
 * use it as the separator.
 */
export function nameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.length > 253) return 'must not be longer than 253 characters';
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return "must be a valid DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)";
  }
  return undefined;
}

/** Mesh names and namespaces: DNS-1123 label (no dots, since node ids are `<mesh>.<name>`; ≤63). */
export function labelNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.length > 63) return 'must not be longer than 63 characters';
  if (!DNS1123_LABEL.test(name)) {
    return "must be a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)";
  }
  return undefined;
}

export function readName(v: unknown, path: string, issues: Issues, check = nameProblem): string | undefined {
  const s = readString(v, path, issues);
  if (s === undefined) {
    if (v === undefined || v === null) issues.add(path, 'must not be empty');
    return undefined;
  }
  const p = check(s);
  if (p) {
    issues.add(path, p);
    return undefined;
  }
  return s;
}
