// Metrics computed at scrape time from live state (one series per identity or mesh, never per proxy).
import { Gauge } from 'prom-client';
import type { SvidManager } from '../identity/svids.js';
import { heldNames } from './debug.js';
import type { Metrics } from './metrics.js';
import type { Readiness } from './readiness.js';
import type { StreamRegistry } from './xds-streams.js';

export function registerLiveMetrics(metrics: Metrics, src: { svids: SvidManager; registry: StreamRegistry }): void {
  const registers = [metrics.registry];
  new Gauge({
    name: 'mesh_sds_svid_earliest_expiry_timestamp_seconds',
    help: 'Earliest NotAfter among the SVIDs currently held for proxies of each MeshIdentity',
    labelNames: ['identity'],
    registers,
    collect() {
      this.reset();
      const earliest = new Map<string, number>();
      for (const [, e] of src.svids.entries()) {
        if (e.identity.state !== 'issued') continue;
        const t = e.identity.svid.notAfter.getTime() / 1000;
        const kri = e.identity.identity.kri;
        if (t < (earliest.get(kri) ?? Infinity)) earliest.set(kri, t);
      }
      for (const [identity, t] of earliest) this.set({ identity }, t);
    },
  });
  new Gauge({
    name: 'mesh_sds_held_names',
    help: 'Secret names requested by open streams that cannot be served yet (held), by mesh',
    labelNames: ['mesh'],
    registers,
    collect() {
      this.reset();
      const held = new Map<string, number>();
      for (const { info } of src.registry.streams.values()) {
        const n = heldNames(info).length;
        held.set(info.mesh, (held.get(info.mesh) ?? 0) + n);
      }
      for (const [mesh, n] of held) this.set({ mesh }, n);
    },
  });
  new Gauge({
    name: 'mesh_sds_proxies',
    help: 'Proxies known to the server by identity state (issued, pending, rejected)',
    labelNames: ['state'],
    registers,
    collect() {
      const counts: Record<string, number> = { issued: 0, pending: 0, rejected: 0 };
      for (const [, e] of src.svids.entries()) counts[e.identity.state] = (counts[e.identity.state] ?? 0) + 1;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
}

/**
 * Each /readyz check as 1 (passing) or 0: a replica kept unready for minutes (a database that
 * stopped answering, a stale revocation list) showed nothing in /metrics to alert on or to say why.
 */
export function registerReadinessMetric(metrics: Metrics, readiness: Readiness): void {
  new Gauge({
    name: 'mesh_sds_ready_check',
    help: 'Checks behind /readyz: 1 passing, 0 failing (the reason is in /readyz?verbose)',
    labelNames: ['check'],
    registers: [metrics.registry],
    collect() {
      this.reset();
      for (const c of readiness.evaluate().checks) this.set({ check: c.name }, c.ok ? 1 : 0);
    },
  });
}
