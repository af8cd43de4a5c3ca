// Follows every ClusterFederatedTrustDomain: fetches the remote bundle, authenticates it with
// the last accepted one, refreshes at the remote's hint, backs off on failure and always keeps
// the last good bundle. Publishes the result as FederationState for the mesh view (mesh-trusts.ts).
import { createHash } from 'node:crypto';
import { BehaviorSubject, type Observable } from 'rxjs';
import { Counter, Gauge, type Registry } from 'prom-client';
import { readBundleDocument } from './bundle.js';
import { splitPemCertificates } from '../api/pem.js';
import type { ClusterFederatedTrustDomain, FederationSpec } from '../api/types.js';
import type { StateStore } from '../store/types.js';
import { acceptBundle, type AcceptedBundle } from './accept.js';
import { FAILURE_REASONS, fetchBundleText, FederationFailure, type FailureReason, type FetchOptions } from './fetch.js';
import { descendsFrom, federationLineage, loadFederationRecord, saveFederationRecord, type FederationLineage, type FederationRecord, type OnDamagedRecord } from './record.js';
import { federationConditions, type FederationCondition } from './status.js';

export const MIN_REFRESH_MS = 30_000;
export const MAX_REFRESH_MS = 3_600_000;
/** Used when the remote gives no `spiffe_refresh_hint` (SPIRE's default hint). */
export const DEFAULT_REFRESH_MS = 300_000;

/** What is known of one federated trust domain now. */
export interface FederatedDomain {
  resource: string;
  trustDomain: string;
  endpointURL: string;
  profile: FederationSpec['bundleEndpointProfile']['type'];
  /** The bundle trusted now: the last one accepted from the endpoint, else the bootstrap bundle. */
  bundle?: AcceptedBundle;
  source: 'endpoint' | 'bootstrap' | 'none';
  fetchedAt?: Date;
  lastAttemptAt?: Date;
  lastError?: { reason: FailureReason; message: string; at: Date };
  nextRefreshAt?: Date;
  conditions: FederationCondition[];
}

export interface FederationState {
  revision: number;
  /** By ClusterFederatedTrustDomain name. */
  domains: ReadonlyMap<string, FederatedDomain>;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface FollowerOptions {
  state: StateStore;
  log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  /** Registers the federation metrics here (the server's registry). */
  registry?: Registry;
  now?: () => Date;
  timers?: Timers;
  random?: () => number;
  /** Lower bound of the refresh interval (30 s; tests lower it). */
  minRefreshMs?: number;
  maxRefreshMs?: number;
  /** First retry delay after a failure; doubles per consecutive failure (jittered), up to the refresh interval. */
  backoffBaseMs?: number;
  fetch?: FetchOptions;
  /** Replaces the HTTPS fetch (tests of scheduling). */
  fetcher?: typeof fetchBundleText;
}

interface Worker {
  cftd: ClusterFederatedTrustDomain;
  specKey: string;
  lineage: FederationLineage;
  domain: FederatedDomain;
  failures: number;
  timer?: unknown;
  running?: Promise<void>;
  stopped: boolean;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export class FederationFollower {
  private readonly subject = new BehaviorSubject<FederationState>({ revision: 0, domains: new Map() });
  private readonly workers = new Map<string, Worker>();
  private revision = 0;
  private readonly failuresTotal?: Counter<'trust_domain' | 'reason'>;
  /** Trust domains with failure series exported. */
  private readonly exportedFailures = new Set<string>();
  private readonly lastSuccess?: Gauge<'trust_domain'>;
  private readonly sequenceGauge?: Gauge<'trust_domain'>;
  private closed = false;
  private shadowReported = '';
  private queue: Promise<void> = Promise.resolve();
  /** Damage of stored records already reported (the record is read on every refresh until rewritten). */
  private readonly damageReported = new Set<string>();
  private readonly onDamaged: OnDamagedRecord = (stateKey, problems) => {
    const key = `${stateKey}\u0000${problems.join('\u0000')}`;
    if (this.damageReported.has(key)) return;
    this.damageReported.add(key);
    this.opts.log?.warn({ stateKey, problems }, 'federation: stored record damaged; using what is intact (a damaged bundle: the bootstrap bundle) and writing it again on the next refresh');
  };

  constructor(private readonly opts: FollowerOptions) {
    if (opts.registry) {
      const registers = [opts.registry];
      this.failuresTotal = new Counter({
        name: 'mesh_sds_federation_refresh_failures_total',
        help: 'Federated bundle refreshes that failed (the last good bundle is kept), by trust domain and reason',
        labelNames: ['trust_domain', 'reason'],
        registers,
      });
      this.lastSuccess = new Gauge({
        name: 'mesh_sds_federation_last_success_timestamp_seconds',
        help: 'Unix time of the last accepted bundle of each federated trust domain',
        labelNames: ['trust_domain'],
        registers,
      });
      this.sequenceGauge = new Gauge({
        name: 'mesh_sds_federation_bundle_sequence',
        help: 'spiffe_sequence of the bundle trusted now for each federated trust domain',
        labelNames: ['trust_domain'],
        registers,
      });
    }
  }

  /**
   * The federation state the mesh view is made from. It is emitted when what is trusted changes
   * (a domain followed or dropped, a bundle accepted that differs, its source), not on a refresh
   * that fetched the same bundle or failed and kept it: each emission rebuilds every federated
   * MeshTrust of every mesh.
   */
  get state$(): Observable<FederationState> {
    return this.subject.asObservable();
  }

  /** The last published state, with each domain's current status (last fetch, error, conditions). */
  get current(): FederationState {
    const published = this.subject.value;
    const domains = new Map<string, FederatedDomain>();
    for (const name of published.domains.keys()) {
      const w = this.workers.get(name);
      domains.set(name, w ? { ...w.domain } : published.domains.get(name)!);
    }
    return { revision: published.revision, domains };
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  private get timers(): Timers {
    return this.opts.timers ?? realTimers;
  }

  /**
   * Follows exactly these resources (call on every snapshot). Resolves once each new one has its
   * starting bundle (persisted or bootstrap) published; fetching goes on in the background.
   */
  setResources(list: readonly ClusterFederatedTrustDomain[]): Promise<void> {
    const run = this.queue.then(() => this.apply(list));
    this.queue = run.catch((e: Error) => this.opts.log?.warn({ err: e.message }, 'federation update failed'));
    return run;
  }

  private async apply(list: readonly ClusterFederatedTrustDomain[]): Promise<void> {
    if (this.closed) return;
    const { followed, shadowed } = followedResources(list);
    // Reported once per change, not on every snapshot.
    const shadowKey = shadowed.map((s) => `${s.resource.name}>${s.winner}`).join();
    if (shadowKey !== this.shadowReported) {
      this.shadowReported = shadowKey;
      for (const s of shadowed) {
        this.opts.log?.warn({ resource: s.resource.name, trustDomain: s.resource.spec.trustDomain, winner: s.winner }, 'two ClusterFederatedTrustDomains name the same trust domain; ignoring this one');
      }
    }
    const wanted = new Map(followed.map((c) => [c.name, c]));
    let changed = false;
    for (const [name, w] of [...this.workers]) {
      const next = wanted.get(name);
      if (next && specKey(next) === w.specKey) {
        w.cftd = next;
        continue;
      }
      this.stopWorker(w);
      this.workers.delete(name);
      // A trust domain no longer followed is no longer exported (a restarted one sets them again).
      this.lastSuccess?.remove({ trust_domain: w.domain.trustDomain });
      this.sequenceGauge?.remove({ trust_domain: w.domain.trustDomain });
      changed = true;
    }
    // A trust domain nobody follows any more is not exported as failing either (its counter series go).
    const followedDomains = new Set([...wanted.values()].map((c) => c.spec.trustDomain));
    for (const td of this.exportedFailures) {
      if (followedDomains.has(td)) continue;
      for (const reason of FAILURE_REASONS) this.failuresTotal?.remove({ trust_domain: td, reason });
      this.exportedFailures.delete(td);
    }
    for (const c of wanted.values()) {
      if (this.workers.has(c.name)) continue;
      // One trust domain that cannot start must not keep the others from being followed and published.
      let w: Worker;
      try {
        w = await this.startWorker(c);
      } catch (e) {
        this.opts.log?.warn({ trustDomain: c.spec.trustDomain, resource: c.name, err: (e as Error).message }, 'federation: cannot start from the stored record; starting from the bootstrap bundle');
        try {
          w = await this.startWorker(c, false);
        } catch (e2) {
          this.opts.log?.warn({ trustDomain: c.spec.trustDomain, resource: c.name, err: (e2 as Error).message }, 'federation: cannot follow this trust domain; retried on the next resource change');
          continue;
        }
      }
      this.workers.set(c.name, w);
      changed = true;
    }
    if (changed || this.subject.value.revision === 0) this.publish();
  }

  private async startWorker(cftd: ClusterFederatedTrustDomain, useRecord = true): Promise<Worker> {
    let record: FederationRecord | undefined;
    try {
      if (useRecord) record = await loadFederationRecord(this.opts.state, cftd.spec.trustDomain, this.onDamaged);
    } catch (e) {
      this.opts.log?.warn({ trustDomain: cftd.spec.trustDomain, err: (e as Error).message }, 'federation: cannot read the persisted bundle; starting from the bootstrap bundle');
    }
    const lineage = federationLineage(cftd.spec);
    if (record && !descendsFrom(record, lineage)) {
      this.opts.log?.info(
        { trustDomain: cftd.spec.trustDomain, resource: cftd.name, endpointURL: cftd.spec.bundleEndpointURL, was: record.endpointURL },
        'federation: the bootstrap bundle or endpoint URL changed; starting from the bootstrap bundle, not the stored one',
      );
    }
    const w: Worker = { cftd, specKey: specKey(cftd), lineage, domain: initialDomain(cftd, record, lineage), failures: 0, stopped: false };
    this.updateConditions(w);
    this.schedule(w, 0);
    return w;
  }

  private stopWorker(w: Worker): void {
    w.stopped = true;
    if (w.timer !== undefined) this.timers.clearTimeout(w.timer);
    w.timer = undefined;
  }

  private schedule(w: Worker, delayMs: number): void {
    if (w.stopped || this.closed) return;
    if (w.timer !== undefined) this.timers.clearTimeout(w.timer);
    w.domain.nextRefreshAt = new Date(this.now().getTime() + delayMs);
    w.timer = this.timers.setTimeout(() => {
      w.timer = undefined;
      w.running = this.refresh(w).catch((e: Error) => this.refreshBroke(w, e));
    }, delayMs);
  }

  /** Runs one refresh of a federated trust domain now (tests, and the first fetch). */
  async refreshNow(resource: string): Promise<void> {
    const w = this.workers.get(resource);
    if (!w) throw new Error(`no ClusterFederatedTrustDomain "${resource}" is followed`);
    if (w.timer !== undefined) this.timers.clearTimeout(w.timer);
    w.timer = undefined;
    await w.running;
    await this.refresh(w).catch((e: Error) => this.refreshBroke(w, e));
  }

  /**
   * A refresh that threw past its own handling (not a fetch failure): without this its trust
   * domain was never refreshed again (no timer was set) and the rejection went unhandled. Logged
   * naming the trust domain, retried at the refresh interval; the other domains are not affected.
   */
  private refreshBroke(w: Worker, e: Error): void {
    this.opts.log?.warn({ trustDomain: w.domain.trustDomain, resource: w.domain.resource, err: e.message }, 'federation: refresh failed unexpectedly; retrying at the refresh interval');
    if (w.timer === undefined) this.schedule(w, this.refreshInterval(w.domain.bundle));
  }

  private refreshInterval(b: AcceptedBundle | undefined): number {
    const min = this.opts.minRefreshMs ?? MIN_REFRESH_MS;
    const max = Math.max(min, this.opts.maxRefreshMs ?? MAX_REFRESH_MS);
    const hintMs = b?.refreshHintSeconds !== undefined ? b.refreshHintSeconds * 1000 : DEFAULT_REFRESH_MS;
    return Math.min(Math.max(hintMs, min), max);
  }

  private async refresh(w: Worker): Promise<void> {
    if (w.stopped || this.closed) return;
    const d = w.domain;
    const spec = w.cftd.spec;
    const trustedBefore = trustKey(d);
    const at = this.now();
    d.lastAttemptAt = at;
    // Another replica may have accepted a newer bundle: start from it (it authenticates the endpoint now).
    const loaded = await loadFederationRecord(this.opts.state, d.trustDomain, this.onDamaged).catch(() => undefined);
    const shared = loaded && descendsFrom(loaded, w.lineage) ? loaded : undefined;
    if (shared?.bundle && (d.source !== 'endpoint' || (shared.bundle.sequence ?? -1) > (d.bundle?.sequence ?? -1))) {
      d.bundle = shared.bundle;
      d.source = 'endpoint';
      if (shared.fetchedAt) d.fetchedAt = new Date(shared.fetchedAt);
    }
    try {
      const fetcher = this.opts.fetcher ?? fetchBundleText;
      const text = await fetcher(spec.bundleEndpointURL, spec.bundleEndpointProfile, d.bundle?.caPems ?? [], {
        ...this.opts.fetch,
        serverNameForIp: d.trustDomain,
        authorityFrom: d.source === 'endpoint' ? `the last accepted bundle${d.bundle?.sequence !== undefined ? ` (sequence ${d.bundle.sequence})` : ''}` : 'the bootstrap bundle',
      });
      const accepted = acceptBundle(text, d.trustDomain, d.bundle, this.now());
      if (w.stopped || this.closed) return;
      // The CA set, not its order: a peer listing the same CAs in another order changes nothing.
      const changed = d.source !== 'endpoint' || JSON.stringify(canonicalBundle(accepted)) !== JSON.stringify(canonicalBundle(d.bundle));
      if (changed) this.opts.log?.info({ trustDomain: d.trustDomain, resource: d.resource, sequence: accepted.sequence, cas: accepted.caPems.length }, 'federated bundle accepted');
      d.bundle = accepted;
      d.source = 'endpoint';
      d.fetchedAt = this.now();
      delete d.lastError;
      w.failures = 0;
      this.schedule(w, this.refreshInterval(accepted));
    } catch (e) {
      if (w.stopped || this.closed) return;
      const f = e instanceof FederationFailure ? e : new FederationFailure('unreachable', (e as Error).message);
      d.lastError = { reason: f.reason, message: f.message, at: this.now() };
      w.failures++;
      this.failuresTotal?.inc({ trust_domain: d.trustDomain, reason: f.reason });
      this.exportedFailures.add(d.trustDomain);
      const base = this.opts.backoffBaseMs ?? 1000;
      const cap = this.refreshInterval(d.bundle);
      const backoff = Math.min(base * 2 ** Math.min(w.failures - 1, 30), cap);
      // Jitter in [50 %, 100 %] so replicas and zones do not retry in lockstep.
      const delay = Math.round(backoff * (0.5 + 0.5 * (this.opts.random ?? Math.random)()));
      this.schedule(w, delay);
      this.opts.log?.warn(
        { trustDomain: d.trustDomain, resource: d.resource, reason: f.reason, err: f.message, keeping: d.source, sequence: d.bundle?.sequence, retryInMs: delay },
        'federated bundle refresh failed; keeping the last good bundle',
      );
    }
    this.updateConditions(w);
    await this.persist(d, w.lineage).catch((e: Error) => this.opts.log?.warn({ trustDomain: d.trustDomain, err: e.message }, 'federation: cannot persist the bundle'));
    // Status, metrics and the record are up to date; the view is rebuilt only for a change in trust.
    if (!w.stopped && !this.closed && trustKey(d) !== trustedBefore) this.publish();
  }

  private async persist(d: FederatedDomain, lineage: FederationLineage): Promise<void> {
    const r: FederationRecord = { trustDomain: d.trustDomain, resource: d.resource, endpointURL: d.endpointURL, bootstrapDigest: lineage.bootstrapDigest };
    if (d.source === 'endpoint' && d.bundle) r.bundle = d.bundle;
    if (d.fetchedAt) r.fetchedAt = d.fetchedAt.toISOString();
    if (d.lastAttemptAt) r.lastAttemptAt = d.lastAttemptAt.toISOString();
    if (d.lastError) r.lastError = { ...d.lastError, at: d.lastError.at.toISOString() };
    // Never overwrite a newer bundle another replica accepted meanwhile.
    const stored = await loadFederationRecord(this.opts.state, d.trustDomain, this.onDamaged);
    if (stored?.bundle && descendsFrom(stored, lineage) && (stored.bundle.sequence ?? -1) > (r.bundle?.sequence ?? -1)) r.bundle = stored.bundle;
    await saveFederationRecord(this.opts.state, r);
  }

  private updateConditions(w: Worker): void {
    w.domain.conditions = federationConditions(w.domain);
    if (w.domain.bundle?.sequence !== undefined) this.sequenceGauge?.set({ trust_domain: w.domain.trustDomain }, w.domain.bundle.sequence);
    // Also from a persisted bundle, so a restart (or restarted worker) exports when it was last fetched.
    if (w.domain.source === 'endpoint' && w.domain.fetchedAt) this.lastSuccess?.set({ trust_domain: w.domain.trustDomain }, w.domain.fetchedAt.getTime() / 1000);
  }

  private publish(): void {
    const domains = new Map<string, FederatedDomain>();
    for (const [name, w] of this.workers) domains.set(name, { ...w.domain });
    this.subject.next({ revision: ++this.revision, domains });
  }

  /** Waits for in-flight refreshes (tests). */
  async idle(): Promise<void> {
    await this.queue;
    await Promise.all([...this.workers.values()].map((w) => w.running));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.workers.values()) this.stopWorker(w);
    // An in-flight fetch (≤ its timeout) changes nothing once closed; wait for it only briefly.
    const inflight = Promise.all([...this.workers.values()].map((w) => w.running?.catch(() => undefined)));
    let t: NodeJS.Timeout | undefined;
    await Promise.race([inflight, new Promise<void>((resolve) => (t = setTimeout(resolve, 1000)))]);
    clearTimeout(t);
    this.subject.complete();
  }
}

/** Where a federated trust domain starts: its persisted bundle (of this bootstrap and endpoint), else the bootstrap one. */
export function initialDomain(
  cftd: ClusterFederatedTrustDomain,
  stored: FederationRecord | undefined,
  lineage: FederationLineage = federationLineage(cftd.spec),
): FederatedDomain {
  const spec = cftd.spec;
  const record = stored && descendsFrom(stored, lineage) ? stored : undefined;
  const domain: FederatedDomain = {
    resource: cftd.name,
    trustDomain: spec.trustDomain,
    endpointURL: spec.bundleEndpointURL,
    profile: spec.bundleEndpointProfile.type,
    source: 'none',
    conditions: [],
  };
  if (record?.bundle) {
    domain.bundle = record.bundle;
    domain.source = 'endpoint';
    if (record.fetchedAt) domain.fetchedAt = new Date(record.fetchedAt);
  } else if (spec.trustDomainBundle) {
    const doc = readBundleDocument(spec.trustDomainBundle); // validated when the resource was parsed
    domain.bundle = { trustDomain: spec.trustDomain, caPems: doc.caPems, ...(doc.sequence !== undefined ? { sequence: doc.sequence } : {}) };
    domain.source = 'bootstrap';
  }
  if (record?.lastAttemptAt) domain.lastAttemptAt = new Date(record.lastAttemptAt);
  if (record?.lastError) domain.lastError = { ...record.lastError, at: new Date(record.lastError.at) };
  domain.conditions = federationConditions(domain);
  return domain;
}

/** One follower per trust domain: of several resources naming it, the first by name wins. */
export function followedResources(list: readonly ClusterFederatedTrustDomain[]): { followed: ClusterFederatedTrustDomain[]; shadowed: { resource: ClusterFederatedTrustDomain; winner: string }[] } {
  const byTd = new Map<string, ClusterFederatedTrustDomain>();
  const shadowed: { resource: ClusterFederatedTrustDomain; winner: string }[] = [];
  for (const c of [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const other = byTd.get(c.spec.trustDomain);
    if (other) shadowed.push({ resource: c, winner: other.name });
    else byTd.set(c.spec.trustDomain, c);
  }
  return { followed: [...byTd.values()], shadowed };
}

/** The state `get` and `inspect` show without a running server: persisted bundles and last outcomes. */
export async function loadFederationState(state: StateStore, list: readonly ClusterFederatedTrustDomain[], onDamaged?: OnDamagedRecord): Promise<FederationState> {
  const domains = new Map<string, FederatedDomain>();
  for (const c of followedResources(list).followed) {
    const record = await loadFederationRecord(state, c.spec.trustDomain, onDamaged).catch(() => undefined);
    let d: FederatedDomain;
    try {
      d = initialDomain(c, record);
    } catch {
      d = initialDomain(c, undefined); // a record read commands cannot use does not stop them
    }
    domains.set(c.name, d);
  }
  return { revision: 1, domains };
}

/** What the mesh view takes from a domain's trust: the bundle trusted (CAs, sequence, hint) and where it came from. */
function trustKey(d: FederatedDomain): string {
  return JSON.stringify([d.source, d.bundle ? canonicalBundle(d.bundle) : null]);
}

/** The bundle with its CAs in canonical order (see canonicalCaPems). */
function canonicalBundle(b: AcceptedBundle | undefined): AcceptedBundle | undefined {
  return b && { ...b, caPems: canonicalCaPems(b.caPems) };
}

/**
 * CAs sorted by SHA-256 fingerprint: the order a remote lists them in means nothing, and taking it
 * as a change pushed new trust to every proxy on every refresh of a peer that reorders them.
 */
export function canonicalCaPems(pems: readonly string[]): string[] {
  const keyed = pems.map((pem) => {
    const der = splitPemCertificates(pem).ders[0];
    return { pem, fp: createHash('sha256').update(der ?? pem).digest('hex') };
  });
  return keyed.sort((a, b) => (a.fp < b.fp ? -1 : a.fp > b.fp ? 1 : 0)).map((k) => k.pem);
}

function specKey(c: ClusterFederatedTrustDomain): string {
  return JSON.stringify(c.spec);
}
