// `validate` and `apply` load a MeshIdentity's CA when both halves are inline (InsecureInline), as
// the server will: a CA the server refuses is then refused here too, with the same reason. Other
// sources (files, environment variables, Secrets) may differ between this machine and the server's.
// The PKI code (and @peculiar's ~200 modules) is loaded only for an inline CA.
import type { MeshIdentity, Resource } from '../api/types.js';
import { parseSpiffeTemplate, TRUST_DOMAIN_VARIABLES } from '../api/template.js';
import { identityTrustDomain } from '../identity/spiffe.js';

/**
 * What the server would refuse in a MeshIdentity that only the server's own values reveal: a trust
 * domain that renders too long or invalid with its mesh (and zone), then an inline CA (below).
 */
export async function identityProblem(r: Resource, zone?: string): Promise<{ path: string; message: string } | undefined> {
  if (r.kind !== 'MeshIdentity') return undefined;
  const rendering = renderTrustDomain(r, zone);
  return renderedTrustDomainProblem(r, rendering) ?? (await inlineCaProblem(r, rendering));
}

/** `zoneNote`: how the zone was chosen, when the template has one (a server of another --zone renders another domain). */
interface Rendering {
  /** Undefined when it cannot be rendered from what is known here: a `.Zone` of an unknown zone, a label (the dataplane's). */
  result?: ReturnType<typeof identityTrustDomain>;
  zoneNote: string;
}

/**
 * The trust domain as the server renders it: with the mesh, and `zone` (apply's --zone;
 * undefined when unknown, as `validate` without --zone).
 */
function renderTrustDomain(mi: MeshIdentity, zone: string | undefined): Rendering {
  const parts = parseSpiffeTemplate(mi.spec.spiffeID.trustDomain, TRUST_DOMAIN_VARIABLES).parts;
  const usesZone = parts.some((p) => p.kind === 'var' && p.name === 'Zone');
  const zoneNote = usesZone ? `rendered with --zone ${zone}: give the server's --zone if it differs` : '';
  if (parts.some((p) => p.kind === 'label') || (usesZone && zone === undefined)) return { zoneNote };
  return { result: identityTrustDomain(mi, zone ?? ''), zoneNote };
}

/**
 * A trust domain template whose text is valid but whose rendering is not (250 characters of text
 * and `.{{ .Mesh }}`): the server marks the identity CaInvalid and is not ready.
 */
function renderedTrustDomainProblem(mi: MeshIdentity, rendering: Rendering): { path: string; message: string } | undefined {
  const td = rendering.result;
  if (!td || td.ok) return undefined;
  const note = rendering.zoneNote ? ` (${rendering.zoneNote})` : '';
  return { path: 'spec.spiffeID.trustDomain', message: `${td.reason} when rendered for mesh "${mi.mesh}"${note}` };
}

/**
 * The inline CA, loaded as the server loads it; checked against the trust domain (its URI SAN,
 * its name constraints) only when that can be rendered from what is known here.
 */
async function inlineCaProblem(mi: MeshIdentity, rendering: Rendering): Promise<{ path: string; message: string } | undefined> {
  if (mi.spec.provider.type !== 'Bundled') return undefined;
  const bundled = mi.spec.provider.bundled;
  const ca = bundled.ca;
  if (ca?.certificate.type !== 'InsecureInline' || ca.privateKey.type !== 'InsecureInline') return undefined;
  const trustDomain = rendering.result?.ok ? rendering.result.trustDomain : undefined;
  const [certPem, keyPem] = [ca.certificate.insecureInline.value, ca.privateKey.insecureInline.value];
  const { loadCertificateAuthority } = await import('../pki/ca.js');
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
    const note = rendering.zoneNote ? ` (trust domain ${rendering.zoneNote})` : '';
    return { path: 'spec.provider.bundled.ca', message: `${(e as Error).message}${note}` };
  }
}
