import type { MeshIdentity } from '../api/types.js';
import { MAX_TRUST_DOMAIN_LENGTH } from '../api/validate-meshtrust.js';
import { parseSpiffeId, type ParsedSpiffeId } from './spiffe-id.js';
import { renderTemplate, TemplateError } from './template.js';

export interface ProxyFacts {
  mesh: string;
  labels: Readonly<Record<string, string>>;
  /** Workload claim of the proxy's signed token, if any. */
  workload?: string;
}

export type SpiffeIdResult = { ok: true; spiffeId: string; trustDomain: string } | { ok: false; reason: string };

/** A rendered trust domain longer than a MeshTrust's may be (253) could never be trusted by one. */
function checkedTrustDomain(parsed: ParsedSpiffeId): ParsedSpiffeId {
  if ('error' in parsed || parsed.trustDomain.length <= MAX_TRUST_DOMAIN_LENGTH) return parsed;
  return { error: `trust domain must not be longer than ${MAX_TRUST_DOMAIN_LENGTH} characters` };
}

/** Renders a MeshIdentity's SPIFFE ID templates for one proxy and checks the result is a valid SPIFFE ID. */
export function computeSpiffeId(mi: MeshIdentity, proxy: ProxyFacts, zone: string): SpiffeIdResult {
  try {
    const base = { mesh: proxy.mesh, zone, labels: proxy.labels, workload: proxy.workload };
    const trustDomain = renderTemplate(mi.spec.spiffeID.trustDomain, base);
    const path = renderTemplate(mi.spec.spiffeID.path, { ...base, trustDomain });
    const spiffeId = `spiffe://${trustDomain}${path}`;
    const parsed = checkedTrustDomain(parseSpiffeId(spiffeId));
    if ('error' in parsed) return { ok: false, reason: `invalid SPIFFE ID "${spiffeId}": ${parsed.error}` };
    return { ok: true, spiffeId, trustDomain: parsed.trustDomain };
  } catch (e) {
    if (e instanceof TemplateError) return { ok: false, reason: e.message };
    throw e;
  }
}

/** The trust domain an identity issues in, when it does not depend on the proxy (no per-proxy labels). */
export function identityTrustDomain(mi: MeshIdentity, zone: string): SpiffeIdResult {
  try {
    const trustDomain = renderTemplate(mi.spec.spiffeID.trustDomain, { mesh: mi.mesh, zone, labels: {} });
    const parsed = checkedTrustDomain(parseSpiffeId(`spiffe://${trustDomain}`));
    if ('error' in parsed) return { ok: false, reason: `invalid trust domain "${trustDomain}": ${parsed.error}` };
    return { ok: true, spiffeId: `spiffe://${trustDomain}`, trustDomain };
  } catch (e) {
    if (e instanceof TemplateError) return { ok: false, reason: `trust domain template: ${e.message}` };
    throw e;
  }
}
