// Builders for normalised resources, so pure-function tests need no YAML.
import type { Dataplane, MeshIdentity, MeshTrust } from '../../src/api/types.js';

export function meshIdentity(
  name: string,
  opts: {
    mesh?: string;
    namespace?: string;
    matchLabels?: Record<string, string> | null;
    trustDomain?: string;
    path?: string;
    expiry?: string;
    expiryMs?: number;
  } = {},
): MeshIdentity {
  return {
    kind: 'MeshIdentity',
    name,
    mesh: opts.mesh ?? 'default',
    namespace: opts.namespace ?? 'kuma-system',
    labels: {},
    spec: {
      selector: opts.matchLabels === null ? undefined : { dataplane: { matchLabels: opts.matchLabels ?? {} } },
      spiffeID: {
        trustDomain: opts.trustDomain ?? '{{ .Mesh }}.{{ .Zone }}.mesh.local',
        path: opts.path ?? '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}',
      },
      provider: {
        type: 'Bundled',
        bundled: {
          meshTrustCreation: 'Enabled',
          insecureAllowSelfSigned: true,
          autogenerate: { enabled: true },
          certificateParameters: { expiry: opts.expiry ?? '24h', expiryMs: opts.expiryMs ?? 24 * 3600_000 },
        },
      },
    },
  };
}

export function dataplane(name: string, labels: Record<string, string>, mesh = 'default'): Dataplane {
  return { kind: 'Dataplane', name, mesh, namespace: '', labels };
}

export function meshTrust(name: string, trustDomain: string, pems: string[], mesh = 'default'): MeshTrust {
  return {
    kind: 'MeshTrust',
    name,
    mesh,
    namespace: 'kuma-system',
    labels: {},
    spec: { trustDomain, caBundles: pems.map((value) => ({ type: 'Pem' as const, pem: { value } })) },
  };
}
