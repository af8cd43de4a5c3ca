// Resource → Universal form (what `mesh-sds get -o yaml|json` prints and `apply` accepts back).
import { stringify } from 'yaml';
import type { IdentityProvider, MeshIdentitySpec, Resource } from './types.js';
import { NAMESPACE_LABEL } from './validate.js';

function providerObject(p: IdentityProvider): Record<string, unknown> {
  if (p.type === 'Spire') return { type: 'Spire', spire: { agent: { timeout: p.spire.agent.timeout } } };
  const b = p.bundled;
  const bundled: Record<string, unknown> = {
    meshTrustCreation: b.meshTrustCreation,
    insecureAllowSelfSigned: b.insecureAllowSelfSigned,
    autogenerate: { enabled: b.autogenerate.enabled },
  };
  if (b.ca) bundled.ca = { certificate: { ...b.ca.certificate }, privateKey: { ...b.ca.privateKey } };
  bundled.certificateParameters = { expiry: b.certificateParameters.expiry };
  return { type: 'Bundled', bundled };
}

function meshIdentitySpecObject(s: MeshIdentitySpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (s.selector) {
    out.selector = s.selector.dataplane ? { dataplane: { matchLabels: { ...s.selector.dataplane.matchLabels } } } : {};
  }
  out.spiffeID = { trustDomain: s.spiffeID.trustDomain, path: s.spiffeID.path };
  out.provider = providerObject(s.provider);
  return out;
}

/**
 * The Universal form of a resource, with defaults made explicit. A Kubernetes namespace is kept
 * as the `k8s.kuma.io/namespace` label (as Kuma does), so parsing the result gives back the
 * same resource.
 */
export function toUniversalObject(r: Resource): Record<string, unknown> {
  const labels: Record<string, string> = { ...r.labels };
  if (r.namespace) labels[NAMESPACE_LABEL] = r.namespace;
  const out: Record<string, unknown> = r.kind === 'ClusterFederatedTrustDomain' ? { type: r.kind, name: r.name } : { type: r.kind, name: r.name, mesh: r.mesh };
  if (Object.keys(labels).length > 0) out.labels = labels;
  switch (r.kind) {
    case 'MeshTrust': {
      const spec: Record<string, unknown> = {
        trustDomain: r.spec.trustDomain,
        caBundles: r.spec.caBundles.map((b) => (b.spiffeBundle ? { type: b.type, spiffeBundle: { value: b.spiffeBundle.value } } : { type: b.type, pem: { value: b.pem.value } })),
      };
      if (r.spec.origin) spec.origin = { ...r.spec.origin };
      out.spec = spec;
      break;
    }
    case 'MeshIdentity':
      out.spec = meshIdentitySpecObject(r.spec);
      break;
    case 'Dataplane':
      break;
    case 'Secret':
      out.data = r.data.toString('base64');
      break;
    case 'ClusterFederatedTrustDomain': {
      const { trustDomain, bundleEndpointURL, bundleEndpointProfile, trustDomainBundle, className } = r.spec;
      out.spec = {
        trustDomain,
        bundleEndpointURL,
        bundleEndpointProfile: { ...bundleEndpointProfile },
        ...(trustDomainBundle !== undefined ? { trustDomainBundle } : {}),
        ...(className !== undefined ? { className } : {}),
      };
      break;
    }
  }
  return out;
}

export function serializeResource(r: Resource, format: 'yaml' | 'json'): string {
  const obj = toUniversalObject(r);
  return format === 'json' ? `${JSON.stringify(obj, null, 2)}\n` : stringify(obj, { lineWidth: 0 });
}
