// Renders MeshIdentity SPIFFE ID templates for one proxy. The template language itself (parsing,
// allowed variables) lives in src/api/template.ts, shared with validation; this file maps a
// proxy's facts onto the variables and turns every missing value into an error that names it.
import { parseSpiffeTemplate, renderSpiffeTemplate, type SpiffeVariable } from '../api/template.js';
import { MESH_LABEL } from '../api/validate.js';

export const NAMESPACE_LABEL = 'k8s.kuma.io/namespace';
export const SERVICE_ACCOUNT_LABEL = 'k8s.kuma.io/service-account';
export const WORKLOAD_LABEL = 'kuma.io/workload';

export class TemplateError extends Error {}

export interface TemplateContext {
  mesh: string;
  zone: string;
  trustDomain?: string;
  labels: Readonly<Record<string, string>>;
  /** Workload from the proxy's signed token; the `kuma.io/workload` label is the fallback. */
  workload?: string;
}

const MISSING: Record<SpiffeVariable, string> = {
  Mesh: 'mesh is not set',
  Zone: 'zone is not set',
  TrustDomain: '.TrustDomain is not available in the trust domain template',
  Namespace: `label "${NAMESPACE_LABEL}" not found (needed by .Namespace)`,
  ServiceAccount: `label "${SERVICE_ACCOUNT_LABEL}" not found (needed by .ServiceAccount)`,
  Workload: `workload not found: the proxy has no "${WORKLOAD_LABEL}" label and no workload claim in its token (needed by .Workload)`,
};

/** Templates are few and rendered for every proxy: parse each once. */
const parsed = new Map<string, ReturnType<typeof parseSpiffeTemplate>>();
function parse(template: string): ReturnType<typeof parseSpiffeTemplate> {
  let p = parsed.get(template);
  if (!p) {
    if (parsed.size >= 1000) parsed.clear();
    parsed.set(template, (p = parseSpiffeTemplate(template)));
  }
  return p;
}

export function renderTemplate(template: string, ctx: TemplateContext): string {
  const { parts, error } = parse(template);
  if (error) throw new TemplateError(error);
  const vars: Partial<Record<SpiffeVariable, string>> = {
    Mesh: ctx.mesh,
    Zone: ctx.zone,
    TrustDomain: ctx.trustDomain,
    Namespace: ctx.labels[NAMESPACE_LABEL],
    ServiceAccount: ctx.labels[SERVICE_ACCOUNT_LABEL],
    Workload: ctx.workload ?? ctx.labels[WORKLOAD_LABEL],
  };
  for (const p of parts) if (p.kind === 'var' && !vars[p.name]) throw new TemplateError(MISSING[p.name]);
  // `{{ label "kuma.io/mesh" }}` reads the mesh, as Kuma labels every mesh-scoped resource with it.
  const r = renderSpiffeTemplate(parts, { vars, labels: { ...ctx.labels, [MESH_LABEL]: ctx.mesh } });
  if (r.error !== undefined) throw new TemplateError(r.error);
  return r.value;
}
