// Go-template-style SPIFFE ID templates, limited to what MeshIdentity allows:
// `{{ .Mesh }}`, `{{ .Zone }}`, `{{ .TrustDomain }}`, `{{ .Namespace }}`, `{{ .ServiceAccount }}`,
// `{{ .Workload }}` and `{{ label "key" }}`. Anything else is an error, never an empty string.

export const NAMESPACE_LABEL = 'k8s.kuma.io/namespace';
export const SERVICE_ACCOUNT_LABEL = 'k8s.kuma.io/service-account';
export const WORKLOAD_LABEL = 'kuma.io/workload';

export type TemplateVariable = 'Mesh' | 'Zone' | 'TrustDomain' | 'Namespace' | 'ServiceAccount' | 'Workload';
export const TEMPLATE_VARIABLES: readonly TemplateVariable[] = ['Mesh', 'Zone', 'TrustDomain', 'Namespace', 'ServiceAccount', 'Workload'];

export type TemplatePart =
  | { kind: 'text'; text: string }
  | { kind: 'var'; name: string }
  | { kind: 'label'; key: string };

const ACTION = /\{\{-?\s*(.*?)\s*-?\}\}/g;
const VAR = /^\.([A-Za-z][A-Za-z0-9]*)$/;
const LABEL = /^label\s+"((?:[^"\\]|\\.)*)"$/;

export class TemplateError extends Error {}

/** Splits a template into literal text and actions; throws TemplateError on unknown syntax. */
export function parseTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const m of template.matchAll(ACTION)) {
    if (m.index > last) parts.push({ kind: 'text', text: template.slice(last, m.index) });
    const body = m[1] ?? '';
    const v = VAR.exec(body);
    const l = LABEL.exec(body);
    if (v) parts.push({ kind: 'var', name: v[1]! });
    else if (l) parts.push({ kind: 'label', key: l[1]!.replace(/\\(.)/g, '$1') });
    else throw new TemplateError(`unsupported template action {{ ${body} }}`);
    last = m.index + m[0].length;
  }
  const rest = template.slice(last);
  if (rest.includes('{{') || rest.includes('}}')) throw new TemplateError('unbalanced template braces');
  if (rest) parts.push({ kind: 'text', text: rest });
  return parts;
}

export interface TemplateContext {
  mesh: string;
  zone: string;
  trustDomain?: string;
  labels: Readonly<Record<string, string>>;
  /** Workload from the proxy's signed token; the `kuma.io/workload` label is the fallback. */
  workload?: string;
}

function variable(name: string, ctx: TemplateContext): string {
  switch (name) {
    case 'Mesh':
      return ctx.mesh;
    case 'Zone':
      return ctx.zone;
    case 'TrustDomain':
      if (ctx.trustDomain === undefined) throw new TemplateError('.TrustDomain is not available in the trust domain template');
      return ctx.trustDomain;
    case 'Namespace':
      return required(ctx.labels[NAMESPACE_LABEL], `label "${NAMESPACE_LABEL}" not found (needed by .Namespace)`);
    case 'ServiceAccount':
      return required(ctx.labels[SERVICE_ACCOUNT_LABEL], `label "${SERVICE_ACCOUNT_LABEL}" not found (needed by .ServiceAccount)`);
    case 'Workload':
      return required(
        ctx.workload ?? ctx.labels[WORKLOAD_LABEL],
        `workload not found: the proxy has no "${WORKLOAD_LABEL}" label and no workload claim in its token (needed by .Workload)`,
      );
    default:
      throw new TemplateError(`unknown template variable .${name}`);
  }
}

function required(value: string | undefined, message: string): string {
  if (value === undefined || value === '') throw new TemplateError(message);
  return value;
}

export function renderTemplate(template: string, ctx: TemplateContext): string {
  return parseTemplate(template)
    .map((p) => {
      if (p.kind === 'text') return p.text;
      if (p.kind === 'var') return variable(p.name, ctx);
      return required(ctx.labels[p.key], `label "${p.key}" not found`);
    })
    .join('');
}

/** Names of the variables a template uses, for validation and for knowing which labels matter. */
export function templateVariables(template: string): { vars: string[]; labels: string[] } {
  const parts = parseTemplate(template);
  return {
    vars: parts.flatMap((p) => (p.kind === 'var' ? [p.name] : [])),
    labels: parts.flatMap((p) => (p.kind === 'label' ? [p.key] : [])),
  };
}
