// `validate` and `apply` load a MeshIdentity's CA when both halves are inline (InsecureInline), as
// the server will: a CA the server refuses is then refused here too, with the same reason. Other
// sources (files, environment variables, Secrets) may differ between this machine and the server's.
import type { Resource } from '../api/types.js';
import { parseSpiffeTemplate, TRUST_DOMAIN_VARIABLES } from '../api/template.js';
import { identityTrustDomain } from '../identity/spiffe.js';
import { loadCertificateAuthority } from '../pki/ca.js';

/**
 * What the server would refuse in a MeshIdentity that only the server's own values reveal: a trust
 * domain that renders too long or invalid with its mesh (and zone), then an inline CA (below).
 */
export function identityProblem(r: Resource, zone?: string): { path: string; message: string } | undefined {
  return renderedTrustDomainProblem(r, zone) ?? inlineCaProblem(r, zone);
}

/**
 * A trust domain template whose text is valid but whose rendering is not (250 characters of text
 * and `.{{ .Mesh }}`): the server marks the identity CaInvalid and is not ready. Rendered with the
 * mesh, and the zone when it is known; a label in it (Spire) is the dataplane's, left to the server.
 */
function renderedTrustDomainProblem(r: Resource, zone?: string): { path: string; message: string } | undefined {
  if (r.kind !== 'MeshIdentity') return undefined;
  const parts = parseSpiffeTemplate(r.spec.spiffeID.trustDomain, TRUST_DOMAIN_VARIABLES).parts;
  const usesZone = parts.some((p) => p.kind === 'var' && p.name === 'Zone');
  if (parts.some((p) => p.kind === 'label') || (usesZone && zone === undefined)) return undefined;
  const td = identityTrustDomain(r, zone ?? '');
  if (td.ok) return undefined;
  const rendered = usesZone ? ` (rendered with --zone ${zone}: give the server's --zone if it differs)` : '';
  return { path: 'spec.spiffeID.trustDomain', message: `${td.reason} when rendered for mesh "${r.mesh}"${rendered}` };
}

/**
 * `zone`: the zone the server renders `.Zone` with (apply's --zone), undefined when unknown
 * (`validate` without --zone). The trust domain is checked against the CA (its URI SAN, its name
 * constraints) only when it can be rendered from what is known here.
 */
function inlineCaProblem(r: Resource, zone?: string): { path: string; message: string } | undefined {
  if (r.kind !== 'MeshIdentity' || r.spec.provider.type !== 'Bundled') return undefined;
  const bundled = r.spec.provider.bundled;
  const ca = bundled.ca;
  if (ca?.certificate.type !== 'InsecureInline' || ca.privateKey.type !== 'InsecureInline') return undefined;
  const usesZone = parseSpiffeTemplate(r.spec.spiffeID.trustDomain, TRUST_DOMAIN_VARIABLES).parts.some((p) => p.kind === 'var' && p.name === 'Zone');
  // A template of an unknown zone, or one the server cannot render either (reported as the
  // identity's own error, not the CA's), leaves the trust-domain checks to the server.
  const td = usesZone && zone === undefined ? undefined : identityTrustDomain(r, zone ?? '');
  const trustDomain = td?.ok ? td.trustDomain : undefined;
  const [certPem, keyPem] = [ca.certificate.insecureInline.value, ca.privateKey.insecureInline.value];
  const load = (trustDomain?: string) => loadCertificateAuthority(certPem, keyPem, { allowSelfSigned: bundled.insecureAllowSelfSigned, trustDomain });
  try {
    load();
  } catch (e) {
    return { path: 'spec.provider.bundled.ca', message: (e as Error).message };
  }
  if (trustDomain === undefined) return undefined;
  try {
    load(trustDomain);
    return undefined;
  } catch (e) {
    // The zone was this command's (or the default): a server of another --zone renders another domain.
    const rendered = usesZone ? ` (trust domain rendered with --zone ${zone}: give the server's --zone if it differs)` : '';
    return { path: 'spec.provider.bundled.ca', message: `${(e as Error).message}${rendered}` };
  }
}
