// Metadata-only views for the admin API and the CLI: names, versions, SPIFFE IDs, dates.
// Nothing here ever touches key material.
import type { AuthorityView } from '../identity/authorities.js';
import type { SvidManager } from '../identity/svids.js';
import type { SecretPublisher } from './publisher.js';
import type { StreamRegistry } from './xds-streams.js';

export function debugProxies(svids: SvidManager, registry: StreamRegistry): unknown {
  const streams = new Map<string, unknown[]>();
  for (const { info } of registry.streams.values()) {
    const list = streams.get(info.proxy) ?? [];
    list.push({
      id: info.id,
      api: info.api,
      peer: info.peer,
      opened: new Date(info.openedMs).toISOString(),
      names: info.subscription ? (info.subscription.wildcard ? ['*', ...info.subscription.names] : info.subscription.names) : [],
      pushes: info.pushes,
      nacks: info.nacks,
      lastNack: info.lastNack,
    });
    streams.set(info.proxy, list);
  }
  return [...svids.entries()].map(([proxy, e]) => {
    const id = e.identity;
    return {
      proxy,
      // A node id has one entry per claim set of its tokens (labels and workload are not secret).
      node: e.node,
      claims: e.principal.labels || e.principal.workload !== undefined ? { labels: e.principal.labels, workload: e.principal.workload } : undefined,
      state: id.state,
      reason: 'reason' in id ? id.reason : undefined,
      identity: 'identity' in id && id.identity ? id.identity.kri : undefined,
      spiffeId: 'spiffeId' in id ? id.spiffeId : undefined,
      notAfter: id.state === 'issued' ? id.svid.notAfter.toISOString() : undefined,
      rotateAt: id.state === 'issued' ? id.rotateAt.toISOString() : undefined,
      serial: id.state === 'issued' ? id.svid.serialHex : undefined,
      streams: streams.get(proxy) ?? [],
    };
  });
}

export function debugSecrets(svids: SvidManager, publisher: SecretPublisher): unknown {
  const identities = [...svids.entries()].flatMap(([proxy, e]) =>
    e.identity.state === 'issued'
      ? [{ proxy, names: ['default', e.identity.spiffeId, e.identity.identity.kri], spiffeId: e.identity.spiffeId, serial: e.identity.svid.serialHex, notAfter: e.identity.svid.notAfter.toISOString(), ca: e.identity.svid.caFingerprint }]
      : [],
  );
  const meshes = new Set([...svids.entries()].map(([, e]) => e.identity.mesh));
  const trust = [...meshes].map((mesh) => ({
    mesh,
    domains: (publisher.bundle(mesh)?.domains ?? []).map((d) => ({
      trustDomain: d.trustDomain,
      cas: d.cas.map((c) => ({ subject: c.subject, fingerprint: c.fingerprint, notAfter: c.notAfter.toISOString(), sources: c.sources })),
    })),
  }));
  return { identities, trust };
}

export function debugIdentities(view: AuthorityView | undefined): unknown {
  if (!view) return [];
  return [...view.identities.values()].map((s) => ({
    name: s.identity.name,
    mesh: s.identity.mesh,
    namespace: s.identity.namespace,
    kri: s.kri,
    provider: s.identity.spec.provider.type,
    trustDomain: s.trustDomain,
    ca: s.ca ? { fingerprint: s.ca.fingerprint, notAfter: s.ca.notAfter.toISOString(), selfSigned: s.ca.selfSigned } : undefined,
    conditions: s.conditions,
  }));
}
