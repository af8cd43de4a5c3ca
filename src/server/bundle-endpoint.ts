// Wiring of the SPIFFE bundle endpoint into `serve`: publishes the trust domains of every
// resolved view, and issues the endpoint's SVIDs on the server's issuer pool.
import type { Subscription } from 'rxjs';
import { Gauge, type Registry } from 'prom-client';
import { startBundleEndpoint, type BundleEndpoint } from '../federation/endpoint.js';
import type { IdentityAuthorities } from '../identity/authorities.js';
import { issuingDomains } from '../identity/issuing-domains.js';
import type { SvidIssuer } from '../pki/issuer.js';
import type { StateStore } from '../store/types.js';
import type { Logger } from './logger.js';

export interface BundleEndpointConfig {
  bundleEndpoint?: string;
  bundleEndpointTlsCert?: string;
  bundleEndpointTlsKey?: string;
  /** Seconds; default 300. */
  bundleRefreshHint?: number;
}

/** Refuses half a https_web configuration before anything starts. */
export function checkBundleEndpointConfig(cfg: BundleEndpointConfig): void {
  if (!!cfg.bundleEndpointTlsCert !== !!cfg.bundleEndpointTlsKey) {
    throw new Error('--bundle-endpoint-tls-cert and --bundle-endpoint-tls-key must be given together');
  }
  if ((cfg.bundleEndpointTlsCert || cfg.bundleRefreshHint !== undefined) && !cfg.bundleEndpoint) {
    throw new Error('--bundle-endpoint-tls-cert/-key and --bundle-refresh-hint need --bundle-endpoint ADDR');
  }
}

export async function startServerBundleEndpoint(
  cfg: BundleEndpointConfig,
  deps: { authorities: IdentityAuthorities; state: StateStore; issuer: SvidIssuer; log: Logger; registry?: Registry },
): Promise<{ endpoint: BundleEndpoint; close: () => Promise<void> } | undefined> {
  if (!cfg.bundleEndpoint) return undefined;
  const log = deps.log.child({ component: 'bundle-endpoint' });
  const endpoint = await startBundleEndpoint({
    listen: cfg.bundleEndpoint,
    state: deps.state,
    refreshHintSeconds: cfg.bundleRefreshHint,
    webTls: cfg.bundleEndpointTlsCert && cfg.bundleEndpointTlsKey ? { certFile: cfg.bundleEndpointTlsCert, keyFile: cfg.bundleEndpointTlsKey } : undefined,
    issue: (ca, id, ms, now) => deps.issuer.issue(ca, id, ms, now),
    log,
  });
  if (deps.registry) registerUnpublishedGauge(deps.registry, endpoint);
  // The views$ subject replays the current view on subscribe: wait for its bundles (and SVIDs).
  let first: Promise<void> | undefined;
  const sub: Subscription = deps.authorities.views$.subscribe((view) => {
    const done = endpoint.setDomains(issuingDomains(view)).catch(() => undefined);
    first ??= done;
  });
  await first;
  return {
    endpoint,
    close: async () => {
      sub.unsubscribe();
      await endpoint.close();
    },
  };
}

/** What to alert on: trust domains the endpoint cannot publish a current bundle for (their peers keep the last one). */
export function registerUnpublishedGauge(registry: Registry, endpoint: Pick<BundleEndpoint, 'problems'>): void {
  new Gauge({
    name: 'mesh_sds_bundle_endpoint_unpublished',
    help: 'Trust domains the SPIFFE bundle endpoint cannot publish a current bundle for (1 each; the reason is logged)',
    labelNames: ['trust_domain'],
    registers: [registry],
    collect() {
      this.reset();
      for (const td of endpoint.problems().keys()) this.set({ trust_domain: td }, 1);
    },
  });
}
