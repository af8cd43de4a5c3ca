// Prometheus metrics. One registry per server instance (never prom-client's global one), so
// tests and benchmarks can run several servers in one process without name clashes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type StreamApi = 'sotw' | 'delta' | 'ads';

export interface Metrics {
  readonly registry: Registry;
  /** Open SDS streams by API flavour. */
  readonly streams: Gauge<'api'>;
  readonly pushes: Counter;
  readonly acks: Counter;
  readonly nacks: Counter;
  readonly streamAuthFailures: Counter;
  readonly svidIssued: Counter<'mesh' | 'identity'>;
  /** Time to generate a leaf key and sign its certificate, in seconds. */
  readonly svidIssueSeconds: Histogram;
  /** NotAfter as a Unix timestamp; kind `svid` (name = SPIFFE ID) or `ca` (name = CA/identity). */
  readonly certificateExpiry: Gauge<'kind' | 'name'>;
  /** Number of current resource validation errors. */
  readonly resourceErrors: Gauge;
  /** Resources (files, rows) the store currently refuses, by store kind (`directory`, `postgres`). */
  readonly storeErrors: Gauge<'source'>;
  /** Prometheus text exposition of everything in the registry. */
  render(): Promise<string>;
  readonly contentType: string;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    streams: new Gauge({ name: 'mesh_sds_streams', help: 'Open SDS streams', labelNames: ['api'] as const, registers }),
    pushes: new Counter({ name: 'mesh_sds_pushes_total', help: 'Discovery responses sent to proxies', registers }),
    acks: new Counter({ name: 'mesh_sds_acks_total', help: 'Responses acknowledged by proxies', registers }),
    nacks: new Counter({ name: 'mesh_sds_nacks_total', help: 'Responses rejected by proxies (error_detail set)', registers }),
    streamAuthFailures: new Counter({
      name: 'mesh_sds_stream_auth_failures_total',
      help: 'Streams refused because authentication failed',
      registers,
    }),
    svidIssued: new Counter({
      name: 'mesh_sds_svid_issued_total',
      help: 'Leaf SVIDs issued',
      labelNames: ['mesh', 'identity'] as const,
      registers,
    }),
    svidIssueSeconds: new Histogram({
      name: 'mesh_sds_svid_issue_seconds',
      help: 'Time to issue one leaf SVID (key generation + signing)',
      // EC issuance is sub-millisecond; RSA key generation can take seconds.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    certificateExpiry: new Gauge({
      name: 'mesh_sds_certificate_expiry_timestamp_seconds',
      help: 'NotAfter of served certificates, Unix seconds',
      labelNames: ['kind', 'name'] as const,
      registers,
    }),
    resourceErrors: new Gauge({ name: 'mesh_sds_resource_errors', help: 'Current resource validation errors', registers }),
    storeErrors: new Gauge({
      name: 'mesh_sds_store_errors',
      help: 'Resources the store currently refuses (a file or row that does not validate; its last good version is served)',
      labelNames: ['source'] as const,
      registers,
    }),
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
  // Every flavour is present from the start, so dashboards see 0 rather than no series.
  for (const api of ['sotw', 'delta', 'ads'] as const) metrics.streams.set({ api }, 0);
  return metrics;
}
