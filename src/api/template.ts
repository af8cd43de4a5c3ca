// The small Go-template subset Kuma accepts in MeshIdentity `spiffeID` fields:
// `{{ .Var }}` and `{{ label "key" }}`, with optional `{{-`/`-}}` trim markers.
import { controlCharacterAt } from './validate-common.js';
import { printable } from './quote.js';

export const SPIFFE_VARIABLES = ['Mesh', 'Zone', 'TrustDomain', 'Namespace', 'ServiceAccount', 'Workload'] as const;
export type SpiffeVariable = (typeof SPIFFE_VARIABLES)[number];

/** Variables a trust domain template may use (the seed lists .Mesh, .Zone and label). */
export const TRUST_DOMAIN_VARIABLES: readonly SpiffeVariable[] = ['Mesh', 'Zone'];
/** Variables a path template may use. */
export const PATH_VARIABLES: readonly SpiffeVariable[] = SPIFFE_VARIABLES;

export type TemplatePart =
  | { kind: 'text'; text: string }
  | { kind: 'var'; name: SpiffeVariable }
  | { kind: 'label'; key: string };

export const DEFAULT_TRUST_DOMAIN_TEMPLATE = '{{ .Mesh }}.{{ .Zone }}.mesh.local';
export const DEFAULT_PATH_TEMPLATE = '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}';

const VAR_ACTION = /^\.([A-Za-z_][A-Za-z0-9_]*)$/;
const LABEL_ACTION = /^label\s+(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`)$/;

/**
 * Parses a template. `error` is a reason such as `unknown template variable .Foo`,
 * `template variable .Namespace is not allowed here` or `invalid template: …`.
 */
export function parseSpiffeTemplate(
  template: string,
  allowed: readonly SpiffeVariable[] = SPIFFE_VARIABLES,
): { parts: TemplatePart[]; error?: string } {
  const parts: TemplatePart[] = [];
  let text = '';
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{{', i);
    if (open < 0) {
      text += template.slice(i);
      break;
    }
    text += template.slice(i, open);
    const close = template.indexOf('}}', open + 2);
    if (close < 0) return { parts, error: 'invalid template: unclosed action' };
    let inner = template.slice(open + 2, close);
    // Go trim markers need a space: `{{- x -}}` trims the surrounding whitespace.
    if (/^-\s/.test(inner)) {
      inner = inner.slice(1);
      text = text.trimEnd();
    }
    let trimRight = false;
    if (/\s-$/.test(inner)) {
      inner = inner.slice(0, -1);
      trimRight = true;
    }
    const action = inner.trim();
    const v = VAR_ACTION.exec(action);
    const l = v ? null : LABEL_ACTION.exec(action);
    if (v) {
      const name = v[1] as string;
      if (!(SPIFFE_VARIABLES as readonly string[]).includes(name)) {
        return { parts, error: `unknown template variable .${name}` };
      }
      if (!allowed.includes(name as SpiffeVariable)) {
        return { parts, error: `template variable .${name} is not allowed here (allowed: ${allowed.map((a) => '.' + a).join(', ')}, label)` };
      }
      if (text) parts.push({ kind: 'text', text });
      parts.push({ kind: 'var', name: name as SpiffeVariable });
    } else if (l) {
      const key = l[1] !== undefined ? l[1].replace(/\\(.)/g, '$1') : (l[2] ?? '');
      if (key === '') return { parts, error: 'invalid template: label key must not be empty' };
      // No label holds one (labels refuse them): the identity could never issue, and its "label not
      // found" reason carried the escape sequence to every terminal that printed it.
      const control = controlCharacterAt(key);
      if (control !== undefined) return { parts, error: `invalid template: label key must not hold control characters (${control})` };
      if (text) parts.push({ kind: 'text', text });
      parts.push({ kind: 'label', key });
    } else {
      // The resource's own text: validate, apply and get print it, so no character of it may act.
      return { parts, error: `invalid template: unsupported action "${printable(`{{${inner}}}`)}"` };
    }
    text = '';
    i = close + 2;
    if (trimRight) while (i < template.length && /\s/.test(template[i] as string)) i++;
  }
  if (text) parts.push({ kind: 'text', text });
  return { parts };
}

export interface TemplateContext {
  vars: Partial<Record<SpiffeVariable, string>>;
  labels: Readonly<Record<string, string>>;
}

/**
 * A value stands for what the template author wrote in its place: a '/' in it would add path
 * segments of the value's choosing (`team: billing/admin` rendering `/team/billing/admin`).
 */
const oneSegment = (what: string, value: string) => `${what} value ${JSON.stringify(value)} contains "/": a value fills one place of the template, not several path segments`;

/** Renders parsed parts; a missing label or variable, or a value with '/', is an error naming it. */
export function renderSpiffeTemplate(
  parts: readonly TemplatePart[],
  ctx: TemplateContext,
): { value: string; error?: undefined } | { value?: undefined; error: string } {
  let out = '';
  for (const p of parts) {
    if (p.kind === 'text') out += p.text;
    else if (p.kind === 'label') {
      // Own labels only: `{{ label "constructor" }}` read Object.prototype's function, and
      // `.includes` on it threw a TypeError instead of saying the label is not there.
      const v = Object.hasOwn(ctx.labels, p.key) ? ctx.labels[p.key] : undefined;
      if (v === undefined) return { error: `label "${printable(p.key)}" not found` };
      if (v.includes('/')) return { error: oneSegment(`label "${printable(p.key)}"`, v) };
      out += v;
    } else {
      const v = ctx.vars[p.name];
      if (v === undefined || v === '') return { error: `template variable .${p.name} has no value for this dataplane` };
      if (v.includes('/')) return { error: oneSegment(`.${p.name}`, v) };
      out += v;
    }
  }
  return { value: out };
}

const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]*$/;
const PATH_CHARS = /^[A-Za-z0-9._/-]*$/;

/** SPIFFE trust domain rules; returns the reason it is invalid, or undefined. */
export function trustDomainProblem(td: string): string | undefined {
  if (td === '') return 'must not be empty';
  // 253 as a MeshTrust's (MAX_TRUST_DOMAIN_LENGTH, whose module imports this one): a longer one could never have a MeshTrust.
  if (td.length > 253) return 'must not be longer than 253 characters';
  if (!TRUST_DOMAIN_CHARS.test(td)) return "must contain only lowercase letters, digits, '.', '-' and '_'";
  return undefined;
}

/** SPIFFE path rules (RFC: leading `/`, no empty, `.` or `..` segments, no trailing `/`). */
export function spiffePathProblem(path: string): string | undefined {
  if (path === '') return undefined;
  if (!path.startsWith('/')) return 'must start with /';
  if (!PATH_CHARS.test(path)) return "must contain only letters, digits, '.', '-', '_' and '/'";
  for (const seg of path.slice(1).split('/')) {
    if (seg === '') return 'must not contain empty segments or end with /';
    if (seg === '.' || seg === '..') return 'must not contain . or .. segments';
  }
  return undefined;
}

/** Problems visible before rendering: characters of the literal text in a template. */
export function templateTextProblem(parts: readonly TemplatePart[], field: 'trustDomain' | 'path'): string | undefined {
  const allText = parts.every((p) => p.kind === 'text');
  const literal = parts.map((p) => (p.kind === 'text' ? p.text : '')).join('');
  if (field === 'path') {
    const first = parts[0];
    if (!first || first.kind !== 'text' || !first.text.startsWith('/')) return 'must start with /';
    if (allText) return spiffePathProblem(literal);
    if (!PATH_CHARS.test(literal)) return "must contain only letters, digits, '.', '-', '_' and '/'";
    // A value adds to one segment and never a '/' (else the proxy is refused), so one character
    // in its place finds what every rendering would get wrong (`/ns/{{ .Namespace }}/` always
    // ends with '/'): refused here, not later for every proxy.
    return spiffePathProblem(parts.map((p) => (p.kind === 'text' ? p.text : 'x')).join(''));
  }
  if (allText) return trustDomainProblem(literal);
  if (!TRUST_DOMAIN_CHARS.test(literal)) return "must contain only lowercase letters, digits, '.', '-' and '_'";
  // Whatever the variables render to, the text alone is in every trust domain it makes.
  if (literal.length > 253) return `must not be longer than 253 characters once rendered, and its text alone is ${literal.length}`;
  return undefined;
}
