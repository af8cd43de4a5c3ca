// Prometheus metrics. One registry per server instance (never prom-client's global one), so
// tests and benchmarks can run several servers in one process without name clashes.
import type { PreparedStats } from '../identity/prepared-svids.js';
import { AuthError, type AuthFailureReason } from './auth.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type StreamApi = 'sotw' | 'delta' | 'ads';
const STREAM_APIS: readonly StreamApi[] = ['sotw', 'delta', 'ads'];

export interface Metrics {
  readonly registry: Registry;
  /** Open SDS streams by mesh and API flavour (protocol), read from `openStreams` at scrape time. */
  readonly streams: Gauge<'mesh' | 'api'>;
  /**
   * Open streams by mesh, then API: the stream code counts here, the gauge reads it when scraped
   * (a prom-client `set` per stream opened and ended hashed and sorted its labels each time:
   * ~17 MB of a 10,000-proxy storm's allocations). A mesh with none open has no entry.
   */
  readonly openStreams: Map<string, Record<StreamApi, number>>;
  readonly pushes: Counter;
  readonly acks: Counter;
  /** NACKs (rejected responses). */
  readonly nacks: Counter;
  /** Secrets in NACKed responses, by secret name (see nackNameLabel: workload SPIFFE IDs fold into one). */
  readonly nackedSecrets: Counter<'name'>;
  /** Streams and fetches refused because authentication failed, by reason (see authFailureReason). */
  readonly streamAuthFailures: Counter<'reason'>;
  readonly svidIssued: Counter<'mesh' | 'identity'>;
  /** Time to generate a leaf key and sign its certificate, in seconds. */
  readonly svidIssueSeconds: Histogram;
  /** NotAfter as a Unix timestamp; kind `svid` (name = SPIFFE ID) or `ca` (name = CA/identity). */
  readonly certificateExpiry: Gauge<'kind' | 'name'>;
  /** Number of current resource validation errors. */
  readonly resourceErrors: Gauge;
  /** Resources (files, rows) the store currently refuses, by store kind (`directory`, `postgres`). */
  readonly storeErrors: Gauge<'source'>;
  /** gRPC connections closed as they arrived because --max-connections were open. */
  readonly connectionsOverLimit: Counter;
  /** SVIDs prepared for Dataplanes without a proxy (`held`, `issuing` of them), Dataplanes `queued` to be planned and `waiting` for a place under the cap: read from `prepared.read` when scraped. */
  readonly preparedSvids: Gauge<'state'>;
  readonly prepared: { read: () => PreparedStats };
  /** Prometheus text exposition of everything in the registry. */
  render(): Promise<string>;
  readonly contentType: string;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const openStreams = new Map<string, Record<StreamApi, number>>();
  const prepared: Metrics['prepared'] = { read: () => ({ held: 0, issuing: 0, queued: 0, waiting: 0 }) };
  const metrics: Metrics = {
    registry,
    openStreams,
    streams: new Gauge({
      name: 'mesh_sds_streams',
      help: 'Open SDS streams by mesh and protocol (sotw, delta, ads)',
      labelNames: ['mesh', 'api'] as const,
      registers,
      collect() {
        this.reset();
        for (const [mesh, byApi] of openStreams) {
          for (const api of STREAM_APIS) if (byApi[api] > 0) this.set({ mesh, api }, byApi[api]);
        }
      },
    }),
    pushes: new Counter({ name: 'mesh_sds_pushes_total', help: 'Discovery responses sent to proxies', registers }),
    acks: new Counter({ name: 'mesh_sds_acks_total', help: 'Responses acknowledged by proxies', registers }),
    nacks: new Counter({ name: 'mesh_sds_nacks_total', help: 'Responses rejected by proxies (error_detail set)', registers }),
    nackedSecrets: new Counter({
      name: 'mesh_sds_nacked_secrets_total',
      help: 'Secrets in responses rejected by proxies, by secret name; a workload SPIFFE ID name counts as <spiffe-id>',
      labelNames: ['name'] as const,
      registers,
    }),
    streamAuthFailures: new Counter({
      name: 'mesh_sds_stream_auth_failures_total',
      help: 'Streams and fetches refused because authentication failed, by reason',
      labelNames: ['reason'] as const,
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
    connectionsOverLimit: new Counter({
      name: 'mesh_sds_connections_over_limit_total',
      help: 'gRPC connections closed as they arrived because --max-connections were open (default: open-file limit minus a reserve)',
      registers,
    }),
    preparedSvids: new Gauge({
      name: 'mesh_sds_prepared_svids',
      help: 'SVIDs issued ahead for Dataplanes no proxy is attached to (state held: ready or being issued; issuing: being issued), Dataplanes queued to be prepared, and Dataplanes waiting for a place under --prepare-svids',
      labelNames: ['state'] as const,
      registers,
      collect() {
        const { held, issuing, queued, waiting } = prepared.read();
        this.set({ state: 'held' }, held);
        this.set({ state: 'issuing' }, issuing);
        this.set({ state: 'queued' }, queued);
        this.set({ state: 'waiting' }, waiting);
      },
    }),
    prepared,
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
  return metrics;
}

/**
 * The `name` label of a NACK: the secret name, except a workload SPIFFE ID (`spiffe://td/path`,
 * one per workload) which would make one series per proxy; `spiffe://td` (a trust domain) stays.
 */
export function nackNameLabel(name: string): string {
  return /^spiffe:\/\/[^/]+\/./.test(name) ? '<spiffe-id>' : name;
}

/**
 * The auth-failures metric's reason of a refusal: the one its AuthError was thrown with, never read
 * from the message (it quotes the peer's node id: `default.revoked-x` would count as "revoked").
 */
export function authFailureReason(e: unknown): AuthFailureReason {
  return e instanceof AuthError ? e.reason : 'other';
}
