// Metadata-only views for the admin API and the CLI: names, versions, SPIFFE IDs, dates.
// Nothing here ever touches key material.
import type { AuthorityView } from '../identity/authorities.js';
import type { SvidManager } from '../identity/svids.js';
import type { SecretPublisher } from './publisher.js';
import type { EncodedResource } from '../xds/resource.js';
import type { SentResponse, StreamInfo, StreamRegistry } from './xds-streams.js';

const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : undefined);

function versionOf(r: SentResponse | undefined): string | undefined {
  return r ? (r.version_info ?? r.system_version_info) : undefined;
}

function sentView(r: SentResponse | undefined, resources: readonly EncodedResource[] | undefined, atMs: number) {
  if (!r) return undefined;
  return { version: versionOf(r), nonce: r.nonce, at: iso(atMs), secrets: (resources ?? []).map((x) => ({ name: x.name, version: x.version })) };
}

/** Names a stream asked for that its proxy cannot be given now (held until they resolve). */
export function heldNames(info: StreamInfo): string[] {
  const sub = info.subscription;
  if (!sub || !info.resolver || sub.names.length === 0) return [];
  const res = info.resolver.resolve(sub);
  return sub.names.filter((n) => !res.resources.has(n) && !res.invalid.includes(n));
}

/**
 * Per proxy (node): its identity, SPIFFE ID and SVID; per stream: names, what was last sent and
 * last ACKed (version, nonce, secrets with their versions), the last NACK with Envoy's detail, and
 * the names held because they are not available yet.
 */
export function debugProxies(svids: SvidManager, registry: StreamRegistry): unknown {
  const streams = new Map<string, unknown[]>();
  for (const { info } of registry.streams.values()) {
    const list = streams.get(info.proxy) ?? [];
    list.push({
      id: info.id,
      api: info.api,
      mesh: info.mesh,
      peer: info.peer,
      opened: new Date(info.openedMs).toISOString(),
      names: info.subscription ? (info.subscription.wildcard ? ['*', ...info.subscription.names] : info.subscription.names) : [],
      held: heldNames(info),
      pushes: info.pushes,
      nacks: info.nacks,
      lastSent: sentView(info.lastSent, info.lastSentResources, info.lastSentMs),
      lastAcked: sentView(info.lastAcked, info.lastAckedResources, info.lastAckedMs),
      lastNack: info.lastNack ? { version: info.lastNack.version, nonce: info.lastNack.nonce, detail: info.lastNack.detail, at: iso(info.lastNack.atMs) } : undefined,
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
      mesh: id.mesh,
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
