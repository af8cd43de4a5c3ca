import { Subject } from 'rxjs';
import { resourceKey, type Dataplane, type MeshIdentity } from '../api/types.js';
import { LEAF_CLOCK_CHECK_MS, quickLeafKey } from '../pki/leaf.js';
import type { IssuedSvid } from '../pki/types.js';
import type { AuthorityView, IdentityState } from './authorities.js';
import { claimLabels, claimMismatch, nodeKeyOf, proxyKeyOf, shortNameTokenProblem } from './claims.js';
import { precedenceOrder, selectIdentity } from './match.js';
import { PreparedSvids, RSA_PREPARATION_WEIGHT, type Preparation, type PreparedStats } from './prepared-svids.js';
import { nodeKeyOfDataplane, ProxyIndex } from './proxy-index.js';
import { computeSpiffeId } from './spiffe.js';
import { sameInputs, type SvidInputs } from './svid-inputs.js';

/** Who a stream's proxy is, established by authentication (never by what the proxy claims). */
export interface ProxyPrincipal {
  mesh: string;
  name: string;
  workload?: string;
  /** Labels from the proxy's signed token. */
  labels?: Readonly<Record<string, string>>;
  source: 'token' | 'none';
  /** The token behind this principal (its id and expiry, never the token itself), re-checked on open streams. */
  credential?: { jti: string; expiresAtMs: number };
}

export type ProxyIdentity =
  /**
   * `denied`: the proxy's token claims contradict its Dataplane, or its token reaches a namespaced
   * Dataplane only by the short node id (added or changed since it authenticated): its streams must end.
   */
  | { state: 'pending'; mesh: string; reason: string; identity?: IdentityState; denied?: true }
  | { state: 'rejected'; mesh: string; reason: string; identity: IdentityState }
  | { state: 'spire'; mesh: string; identity: IdentityState; spiffeId: string; trustDomain: string }
  | { state: 'issued'; mesh: string; identity: IdentityState; spiffeId: string; trustDomain: string; svid: IssuedSvid; rotateAt: Date };

export interface Issuer {
  issue(ca: NonNullable<IdentityState['ca']>, spiffeId: string, expiryMs: number, now?: Date): Promise<IssuedSvid>;
}

/** The longest wait between tries of an issuance that keeps failing. */
const MAX_RETRY_MS = 300_000;

export interface SvidManagerOptions {
  issuer: Issuer;
  now?: () => Date;
  /** Reissue at this fraction of a leaf's lifetime (0.8), spread uniformly by ± jitter (0.1): 70–90 %. */
  rotationFraction?: number;
  jitter?: number;
  /** Source of the rotation and retry jitter, in [0, 1) (tests pin it). */
  random?: () => number;
  /** How long an SVID is kept after its proxy's last stream closes, so reconnects reuse it. */
  detachGraceMs?: number;
  /** First wait before a failed issuance is tried again (5 s); each failure in a row doubles it, up to 5 minutes; each wait is spread by up to half again. */
  retryBaseMs?: number;
  /** Longest wait before a served leaf's rotation time is checked against the wall clock again (60 s; tests shorten it). */
  clockCheckMs?: number;
  onIssued?: (p: { mesh: string; identity: string; seconds: number; svid: IssuedSvid }) => void;
  /**
   * SVIDs held ready for Dataplanes no proxy is attached to (see PreparedSvids), at most this many;
   * 0 or unset: none, every SVID is issued when its proxy attaches.
   */
  prepareLimit?: number;
  /** Called the first time the prepare limit stops a preparation. */
  onPrepareFull?: (limit: number) => void;
  /** Called when a proxy is forgotten after its grace period, so its secrets can be freed. */
  onDropped?: (proxyKey: string) => void;
  log?: { warn: (o: object, m: string) => void; info: (o: object, m: string) => void };
}

interface ProxyEntry {
  /** The proxy key, one string shared by all of its streams. */
  readonly key: string;
  principal: ProxyPrincipal;
  /** The node id (`<mesh>.<name>`): what its Dataplane resource is found by. */
  node: string;
  refs: number;
  /**
   * The tokens this proxy was attached with (by id), with their expiry and how many attachments
   * each holds. When every one of them is revoked or expired the proxy is dropped at once.
   */
  credentials?: Map<string, { expiresAtMs: number; refs: number }>;
  /**
   * Tokens no stream uses any more that were attached while the SVID now served was: their holders
   * have its key, so revoking one reissues it (README "Revoked or expired means forgotten"). Emptied
   * when a new SVID is issued; an expired one is let go (by id, with its expiry).
   */
  formerHolders?: Map<string, number>;
  identity: ProxyIdentity;
  /** The Dataplane the proxy was last served from (a short node id may move to another one). */
  servedFrom?: Dataplane;
  /** Inputs that determine the SVID; a change means reissue. */
  desiredKey?: SvidInputs;
  generation: number;
  /** Issuances that failed in a row: the next retry waits retryBaseMs × 2^(n-1), at most 5 min (Kuma's backoff). */
  failures?: number;
  rotateTimer?: NodeJS.Timeout;
  dropTimer?: NodeJS.Timeout;
}

/** Reason of a just-attached proxy's placeholder state, kept until its first SVID is issued or it is found pending/rejected. */
export const UNDECIDED_REASON = 'not computed yet';

export function isUndecided(id: ProxyIdentity | undefined): boolean {
  return id === undefined || (id.state === 'pending' && id.identity === undefined && id.reason === UNDECIDED_REASON);
}

export { nodeKeyOf, proxyKeyOf } from './claims.js';
/** The shortest time a leaf is served before it is re-issued (see rotationTime). */
const MIN_ROTATION_DELAY_MS = 1000;

/**
 * Keeps one SVID per connected proxy: issues on attach, reissues at ~80 % of its lifetime and
 * whenever its identity, CA, SPIFFE ID or expiry changes, and announces each change on `changes$`.
 */
export class SvidManager {
  readonly changes$ = new Subject<string>();
  private readonly proxies = new Map<string, ProxyEntry>();
  private view?: AuthorityView;
  private closed = false;
  /** The proxy index: what a change concerns, so a change re-evaluates only those proxies. */
  private readonly index = new ProxyIndex();
  private readonly prepared?: PreparedSvids;

  constructor(private readonly opts: SvidManagerOptions) {
    if ((opts.prepareLimit ?? 0) > 0) {
      this.prepared = new PreparedSvids({
        limit: opts.prepareLimit!,
        plan: (dk) => this.preparation(dk),
        wanted: (dk) => this.unattachedDataplane(dk) !== undefined,
        now: () => this.now(),
        sweepMs: opts.clockCheckMs ?? LEAF_CLOCK_CHECK_MS,
        onFull: opts.onPrepareFull,
      });
    }
  }

  /** SVIDs held ready for Dataplanes without a proxy, those being issued, Dataplanes waiting to be planned, and those the cap left out. */
  preparedStats(): PreparedStats {
    return this.prepared?.stats() ?? { held: 0, issuing: 0, queued: 0, waiting: 0 };
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /**
   * Takes a new view and re-evaluates only the proxies it concerns: those of a Dataplane that was
   * added, changed or removed, and every proxy of a mesh whose identities (or their CAs or
   * readiness) changed. A MeshTrust-only change re-evaluates none.
   */
  setView(view: AuthorityView): void {
    const first = this.view === undefined;
    const zoneChanged = !first && view.zone !== this.view!.zone;
    this.view = view;
    const { meshes, dataplanes, duplicated } = this.index.update(view);
    for (const d of duplicated) {
      this.opts.log?.warn(
        { dataplane: d.dataplane, stored: d.stored, served: d.served },
        'more than one Dataplane is stored for this node id (another namespace?): the first by resource key is served; delete the others',
      );
    }
    if (first || zoneChanged) {
      for (const key of this.proxies.keys()) this.refresh(key);
      if (this.prepared) {
        // The removed ones too: an SVID held, or a place in the waiting line, is let go.
        for (const dk of this.index.dataplaneKeys()) this.prepared.request(dk);
        for (const dk of dataplanes) this.prepared.request(dk);
      }
      return;
    }
    const done = new Set<string>();
    const refresh = (key: string) => {
      if (done.has(key)) return;
      done.add(key);
      this.refresh(key);
    };
    for (const mesh of meshes) for (const key of this.index.proxiesOfMesh(mesh)) refresh(key);
    for (const dp of dataplanes) for (const key of this.index.proxiesOfDataplane(dp)) refresh(key);
    if (!this.prepared) return;
    // Planned after the proxies: a Dataplane one is attached to needs nothing prepared.
    for (const dk of dataplanes) this.prepared.request(dk);
    if (meshes.length > 0) {
      const changed = new Set(meshes);
      for (const [dk, dp] of this.index.dataplaneEntries()) if (changed.has(dp.mesh)) this.prepared.request(dk);
    }
  }

  /** What to prepare for a Dataplane no proxy is attached to: the SVID a proxy of it would be issued now. */
  private preparation(dk: string): Preparation | undefined {
    const view = this.view;
    const dp = this.unattachedDataplane(dk);
    if (!view || this.closed || !dp) return undefined;
    const plan = planSvid(view, dp.mesh, { labels: dp.labels, dataplane: dp }, undefined);
    if (plan.state !== 'issue') return undefined;
    const weight = quickLeafKey(plan.identity.ca!) ? 1 : RSA_PREPARATION_WEIGHT;
    return { inputs: plan.inputs, issue: (issuedAt) => this.issue(dp.mesh, plan, issuedAt), weight };
  }

  /** The Dataplane of a node id when no proxy is attached to it: one an SVID may be prepared for. */
  private unattachedDataplane(dk: string): Dataplane | undefined {
    const dp = this.index.dataplaneByKey(dk);
    return dp && this.index.unattached(dp) ? dp : undefined;
  }

  /** Issues a leaf of `plan`, counted and timed as issued (prepared or for an attached proxy). */
  private issue(mesh: string, plan: IssuePlan, issuedAt: Date): Promise<IssuedSvid> {
    const started = process.hrtime.bigint();
    const ca = plan.identity.ca!;
    return this.opts.issuer.issue(ca, plan.spiffeId, plan.inputs.expiryMs, issuedAt).then((svid) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.opts.onIssued?.({ mesh, identity: plan.identity.identity.name, seconds, svid });
      // The worker's copy of strings the main thread already holds is dropped: one copy per
      // 10,000 proxies adds up.
      return { ...svid, spiffeId: plan.spiffeId, caFingerprint: ca.fingerprint };
    });
  }

  /** The Dataplane resource of a node id, if any (authentication checks token claims against it). */
  dataplane(mesh: string, name: string): Dataplane | undefined {
    return this.index.dataplane({ mesh, name });
  }

  /**
   * Attaches a stream to its proxy (node id + token claims, see proxyKeyOf) and returns the proxy
   * key. Pass the same credential id to detach().
   */
  attach(principal: ProxyPrincipal): string {
    const key = proxyKeyOf(principal);
    const existing = this.proxies.get(key);
    if (existing) {
      existing.refs++;
      holdCredential(existing, principal);
      clearTimeout(existing.dropTimer);
      existing.dropTimer = undefined;
      if (!sameFacts(existing.principal, principal)) {
        existing.principal = principal;
        this.refresh(existing.key);
      }
      return existing.key;
    }
    this.index.add(key, principal);
    const node = nodeKeyOf(principal);
    const entry: ProxyEntry = {
      key,
      principal,
      // Without claims the key is the node id: one string, not two.
      node: node === key ? key : node,
      refs: 1,
      identity: { state: 'pending', mesh: principal.mesh, reason: UNDECIDED_REASON },
      generation: 0,
    };
    holdCredential(entry, principal);
    this.proxies.set(key, entry);
    this.refresh(key);
    return key;
  }

  /**
   * Releases one attachment. `credentialId` is the token id it was attached with: when that token
   * has been forgotten meanwhile (revoked or expired, its proxy dropped), the release is ignored,
   * so it can never take a reference from a newer proxy of the same key.
   */
  detach(key: string, credentialId?: string): void {
    const e = this.proxies.get(key);
    if (!e) return;
    if (credentialId !== undefined) {
      const c = e.credentials?.get(credentialId);
      if (!c) return;
      c.refs = Math.max(0, c.refs - 1);
      // A token no stream uses while others do no longer keeps the proxy: each reconnect with a
      // fresh token otherwise left one entry until the token expired. Its holder has the served
      // SVID's key, though: kept as a former holder until a new SVID is issued.
      if (c.refs === 0 && e.credentials!.size > 1) {
        e.credentials!.delete(credentialId);
        formerHolder(e, credentialId, c.expiresAtMs);
      }
    }
    if (--e.refs > 0) return;
    this.detachLast(key, e);
  }

  /** The last stream of a proxy went: keep it for the grace period, so a reconnect reuses its SVID. */
  private detachLast(key: string, e: ProxyEntry): void {
    clearTimeout(e.dropTimer);
    e.dropTimer = setTimeout(() => this.drop(key), this.opts.detachGraceMs ?? 60_000);
    e.dropTimer.unref();
  }

  private drop(key: string, evenIfAttached = false): void {
    const e = this.proxies.get(key);
    if (!e || (e.refs > 0 && !evenIfAttached)) return;
    clearTimeout(e.rotateTimer);
    this.index.remove(key, e.principal);
    clearTimeout(e.dropTimer);
    e.generation++;
    this.proxies.delete(key);
    this.opts.onDropped?.(key);
    // Its Dataplane may have no proxy left: one that comes back is answered at once. (A new key:
    // the dropped SVID's holder, perhaps a revoked token's, never gets this one.)
    if (e.servedFrom) this.prepared?.request(nodeKeyOfDataplane(e.servedFrom));
  }

  /**
   * Forgets every token `isDead` says is revoked or expired, and drops at once (no grace period)
   * each token-authenticated proxy left with no live token: its SVID is never served again, and a
   * forced rotation cannot bring it back. Streams still using such a token must be closed first
   * (recheckCredentials). `isDead` says `true` for a revoked token, `'expired'` for one that ran
   * out: a proxy kept by another live token is reissued when one of its tokens was revoked (the
   * revoked holder has the SVID's key), not when one merely expired. Returns the dropped proxy keys.
   */
  forgetCredentials(isDead: (jti: string, expiresAtMs: number) => boolean | 'expired'): string[] {
    const dropped: string[] = [];
    const reissue: string[] = [];
    // Runs every few seconds over every proxy: no entry arrays or closures per proxy.
    for (const e of this.proxies.values()) {
      const creds = e.credentials;
      if (!creds) continue;
      let released = 0;
      let revoked = false;
      for (const jti of creds.keys()) {
        const c = creds.get(jti)!;
        const dead = isDead(jti, c.expiresAtMs);
        if (dead === false) continue;
        revoked ||= dead === true;
        creds.delete(jti);
        released += c.refs;
      }
      // A revoked token that no stream uses any more may hold the served SVID's key all the same.
      if (e.formerHolders) {
        for (const [jti, expiresAtMs] of e.formerHolders) {
          const dead = isDead(jti, expiresAtMs);
          if (dead === false) continue;
          revoked ||= dead === true;
          e.formerHolders.delete(jti);
        }
      }
      if (creds.size === 0) dropped.push(e.key);
      else {
        if (revoked) reissue.push(e.key);
        if (released > 0) {
          // Attachments of a dead token no longer count (their detach is ignored from now on).
          e.refs = Math.max(0, e.refs - released);
          if (e.refs === 0) this.detachLast(e.key, e);
        }
      }
    }
    for (const key of dropped) this.drop(key, true);
    for (const key of reissue) this.rotate(key);
    return dropped;
  }

  get(key: string): ProxyIdentity | undefined {
    return this.proxies.get(key)?.identity;
  }

  /** Whether the proxy still holds the token `jti` it was attached with (false once forgotten as revoked or expired). */
  holdsCredential(key: string, jti: string): boolean {
    return this.proxies.get(key)?.credentials?.has(jti) === true;
  }

  entries(): IterableIterator<[string, ProxyEntry]> {
    return this.proxies.entries();
  }

  /** The proxy keys of a node id (one per claim set), or just `key` when it is a known proxy key. */
  keysFor(nodeOrKey: string): string[] {
    if (this.proxies.has(nodeOrKey)) return [nodeOrKey];
    return [...this.proxies].filter(([, e]) => e.node === nodeOrKey).map(([k]) => k);
  }

  /** Reissues now (operator request or tests), whatever the rotation schedule says; false for an unknown proxy. */
  rotate(key: string): boolean {
    const e = this.proxies.get(key);
    if (!e) return false;
    e.desiredKey = undefined;
    this.refresh(key);
    return true;
  }

  close(): void {
    this.closed = true;
    for (const e of this.proxies.values()) {
      clearTimeout(e.rotateTimer);
      clearTimeout(e.dropTimer);
    }
    this.proxies.clear();
    this.prepared?.close();
    this.changes$.complete();
  }

  /**
   * Labels and workload the identity is computed from (SPEC §5): the Dataplane's alone when it
   * exists (token claims were checked against it and must still match, and a token must name a
   * namespaced one in full); else the token's claims.
   */
  private factsOf(e: ProxyEntry): (ProxyFacts & { dataplane?: Dataplane }) | { mismatch: string } | undefined {
    const dp = this.index.dataplane(e.principal);
    if (dp) {
      // A token's short node id now reaches a namespaced Dataplane (one appeared, or took the name
      // over from another namespace): not followed, the proxy's streams end (see authenticateStream).
      const shortName = e.principal.source === 'token' ? shortNameTokenProblem(e.principal, dp) : undefined;
      if (shortName) return { mismatch: shortName };
      // Stores keep an unchanged Dataplane's object: its key is built only when the object differs.
      if (e.servedFrom !== undefined && e.servedFrom !== dp && resourceKey(e.servedFrom) !== resourceKey(dp)) {
        // A short Kubernetes node id (`<mesh>.<name>`, followed only under --auth none) whose only
        // Dataplane of that name was replaced by another namespace's, or another of several stored
        // for one node id: say so, since the proxy's identity now comes from another workload.
        this.opts.log?.warn({ proxy: e.key, from: resourceKey(e.servedFrom), to: resourceKey(dp) }, 'node id now names another Dataplane');
      }
      e.servedFrom = dp;
      const mismatch = claimMismatch(e.principal, dp);
      return mismatch ? { mismatch } : { labels: dp.labels, dataplane: dp };
    }
    // A node id that several namespaces' Dataplanes answer to is not a gateway without one.
    if (e.principal.source !== 'token' || this.index.ambiguity(e.principal)) return undefined;
    return { labels: claimLabels(e.principal), workload: e.principal.workload };
  }

  private set(key: string, e: ProxyEntry, identity: ProxyIdentity): void {
    const before = e.identity;
    e.identity = identity;
    if (!sameIdentity(before, identity)) this.changes$.next(key);
  }

  /** Re-evaluates one proxy; whatever goes wrong is contained to that proxy (never stops the others). */
  private refresh(key: string): void {
    try {
      this.evaluate(key);
    } catch (err) {
      const e = this.proxies.get(key);
      if (!e) return;
      const reason = `identity could not be computed: ${(err as Error).message}`;
      this.opts.log?.warn({ proxy: key, reason }, 'proxy identity failed');
      this.settle(key, e, { state: 'pending', mesh: e.principal.mesh, reason });
    }
  }

  private evaluate(key: string): void {
    const e = this.proxies.get(key);
    const view = this.view;
    if (!e || !view || this.closed) return;
    const mesh = e.principal.mesh;
    const facts = this.factsOf(e);
    if (!facts) {
      return this.settle(key, e, { state: 'pending', mesh, reason: this.index.ambiguity(e.principal) ?? `no Dataplane "${e.principal.name}" in mesh "${mesh}"` });
    }
    // The Dataplane changed after this proxy authenticated: its claims no longer hold.
    if ('mismatch' in facts) return this.settle(key, e, { state: 'pending', mesh, reason: facts.mismatch, denied: true });
    const plan = planSvid(view, mesh, facts, e.identity);
    if (plan.state !== 'issue') return this.settle(key, e, plan);
    const { identity: st, spiffeId, trustDomain, inputs } = plan;
    if (sameInputs(e.desiredKey, inputs) && e.identity.state === 'issued') {
      // Same SVID inputs: keep the certificate, but reflect identity status changes.
      if (e.identity.identity !== st) e.identity = { ...e.identity, identity: st };
      return;
    }
    e.desiredKey = inputs;
    const generation = ++e.generation;
    // A proxy of a Dataplane that had none gets the SVID prepared for it, if it still fits.
    const ahead = facts.dataplane && this.prepared?.take(nodeKeyOfDataplane(facts.dataplane), inputs);
    const issuedAt = ahead ? ahead.issuedAt : this.now();
    const served = (svid: IssuedSvid) => {
      const cur = this.proxies.get(key);
      if (cur !== e || e.generation !== generation || this.closed) return;
      const rotateAt = this.rotationTime(svid, issuedAt);
      // A new key: tokens let go before it never had it.
      e.formerHolders = undefined;
      e.failures = undefined;
      this.set(key, e, { state: 'issued', mesh, identity: st, spiffeId, trustDomain, svid, rotateAt });
      this.scheduleRotation(key, e, rotateAt);
    };
    // Issued already: served in this tick, so the stream that attached answers at once (no wait,
    // and its answer leaves in the same write as its proxy's other streams').
    if (ahead?.settled) return served(ahead.settled);
    (ahead ? ahead.svid : this.issue(mesh, plan, issuedAt)).then(
      served,
      (err: Error) => {
        if (e.generation !== generation || this.closed) return;
        e.desiredKey = undefined;
        // Backed off as Kuma does (5 s to 5 min): an issuance that keeps failing (a CA key the
        // issuer refuses) must not cost every failing proxy a try every 5 s for ever.
        e.failures = (e.failures ?? 0) + 1;
        // Spread up to half as long again: proxies that failed together (a CA key gone, a worker
        // crash) must not all try again in the same instant, at every step and at the cap.
        const stepMs = Math.min((this.opts.retryBaseMs ?? 5000) * 2 ** (e.failures - 1), MAX_RETRY_MS);
        const retryMs = Math.round(stepMs * (1 + 0.5 * (this.opts.random ?? Math.random)()));
        this.opts.log?.warn({ proxy: key, reason: err.message, failures: e.failures, retryInMs: retryMs }, 'SVID issuance failed; retrying');
        // A proxy without an SVID says why (it read "not computed yet", and its streams waited for
        // one); a served proxy keeps its SVID while the rotation is retried.
        if (e.identity.state !== 'issued') this.set(key, e, { state: 'pending', mesh, identity: st, reason: `SVID could not be issued from MeshIdentity "${st.identity.name}" (retrying): ${err.message}` });
        clearTimeout(e.rotateTimer);
        e.rotateTimer = setTimeout(() => this.refresh(key), retryMs);
        e.rotateTimer.unref();
      },
    );
  }

  private settle(key: string, e: ProxyEntry, identity: ProxyIdentity): void {
    e.desiredKey = undefined;
    e.generation++;
    clearTimeout(e.rotateTimer);
    this.set(key, e, identity);
  }

  /**
   * Measured from issuance, not NotBefore: NotBefore is back-dated for clock skew, which would
   * make short-lived leaves look older than they are.
   */
  private rotationTime(svid: IssuedSvid, issuedAt: Date): Date {
    const fraction = this.opts.rotationFraction ?? 0.8;
    const jitter = this.opts.jitter ?? 0.1;
    const lifetime = svid.notAfter.getTime() - issuedAt.getTime();
    const point = fraction + ((this.opts.random ?? Math.random)() * 2 - 1) * jitter;
    // Never sooner than a second after issuance: a leaf whose lifetime rounds to nothing (its
    // NotAfter is whole seconds) would otherwise be re-issued in a loop.
    return new Date(issuedAt.getTime() + Math.max(lifetime * Math.min(point, 0.99), MIN_ROTATION_DELAY_MS));
  }

  private scheduleRotation(key: string, e: ProxyEntry, at: Date): void {
    clearTimeout(e.rotateTimer);
    const delay = at.getTime() - this.now().getTime();
    const step = Math.min(60_000, Math.max(10, Math.floor(delay / 500)));
    e.rotateTimer = setTimeout(
      () => {
        const nowMs = this.now().getTime();
        // The clock was stepped back past the leaf's (back-dated) NotBefore: peers refuse it as not valid yet.
        const notYetValid = e.identity.state === 'issued' && nowMs < e.identity.svid.notBefore.getTime();
        if (nowMs + 1000 < at.getTime() && !notYetValid) return this.scheduleRotation(key, e, at);
        e.desiredKey = undefined;
        this.refresh(key);
      },
      // Coarse steps: Node keeps one timer list per distinct duration, and jittered millisecond
      // delays would give every proxy a list of its own. A step is at most 1/500 of the remaining
      // time (and 60 s), so short-lived test certificates still rotate on time; longer waits are
      // cut to the clock check (one list), which also keeps them under setTimeout's 2^31-1 ms.
      Math.min(Math.max(Math.ceil(delay / step) * step, 0), this.opts.clockCheckMs ?? LEAF_CLOCK_CHECK_MS),
    );
    e.rotateTimer.unref();
  }
}

/** A proxy's labels and workload, as its SVID is computed from them (see factsOf). */
interface ProxyFacts {
  labels: Readonly<Record<string, string>>;
  workload?: string;
  /** The Dataplane the labels are from (then there is no workload claim): its plan is kept (see dataplanePlans). */
  dataplane?: Dataplane;
}

/**
 * SVID plans by the view's identities map, then by Dataplane object. A Dataplane's plan is made when
 * its SVID is prepared and again when its proxy attaches (matching, two template renders and a
 * SPIFFE ID check: ~10 µs per proxy of a connect storm's main thread). Stores keep an unchanged
 * Dataplane's object, and a view whose identities change has a new map, so a plan found here is the
 * one planSvid would make now. Keyed by the map first, a plan goes with the map it was made from: a
 * Dataplane that outlives many views does not keep them (each holds every CA and its key). Only
 * plans of a ready winner are kept: one that falls back to what the proxy is served depends on it.
 */
const dataplanePlans = new WeakMap<ReadonlyMap<string, IdentityState>, WeakMap<Dataplane, { zone: string; mesh: string; plan: IssuePlan }>>();

/** The SVID to issue: from which identity and CA, for which SPIFFE ID. */
interface IssuePlan {
  state: 'issue';
  identity: IdentityState;
  spiffeId: string;
  trustDomain: string;
  inputs: SvidInputs;
}

/**
 * What a proxy of `facts` in `mesh` is served from the view: an SVID to issue, or the state that
 * says why not. `current` is what the proxy is served now: a winning identity that is not ready
 * does not take a working proxy's SVID away (see below); a Dataplane without a proxy has none.
 */
function planSvid(view: AuthorityView, mesh: string, facts: ProxyFacts, current: ProxyIdentity | undefined): IssuePlan | Exclude<ProxyIdentity, { state: 'issued' }> {
  // Only what a plan of a Dataplane is made from: its own labels, no workload claim.
  const dp = facts.dataplane && facts.workload === undefined && facts.labels === facts.dataplane.labels ? facts.dataplane : undefined;
  const kept = dp && dataplanePlans.get(view.identities)?.get(dp);
  if (kept && kept.zone === view.zone && kept.mesh === mesh) return kept.plan;
  const labels = facts.labels;
  const match = selectIdentity(identitiesOfMesh(view.identities, mesh), { mesh, labels }, true);
  if (!match.winner) return { state: 'pending', mesh, reason: 'no MeshIdentity matches this dataplane' };
  let st = view.identities.get(resourceKey(match.winner))!;
  if (!st.ready) {
    // A winner that is not ready does not fall back to a lower-precedence identity (Kuma), except
    // to the one the proxy is served from now: a new or broken identity that takes precedence must
    // not take a working proxy's SVID (and its rotation) away before it can issue one itself.
    const served = current?.state === 'issued' ? view.identities.get(current.identity.key) : undefined;
    const keep = served?.ready && match.candidates.some((c) => c.matches && c.identity === served.identity);
    if (!keep) return { state: 'pending', mesh, identity: st, reason: `MeshIdentity "${st.identity.name}" is not ready` };
    st = served;
  }
  const id = computeSpiffeId(st.identity, { mesh, labels, workload: facts.workload }, view.zone);
  if (!id.ok) return { state: 'rejected', mesh, identity: st, reason: id.reason };
  const provider = st.identity.spec.provider;
  if (provider.type === 'Spire') return { state: 'spire', mesh, identity: st, spiffeId: id.spiffeId, trustDomain: id.trustDomain };
  const ca = st.ca!;
  const expiryMs = provider.bundled.certificateParameters.expiryMs;
  const plan: IssuePlan = { state: 'issue', identity: st, spiffeId: id.spiffeId, trustDomain: id.trustDomain, inputs: { identity: st.key, ca: ca.fingerprint, chain: ca.chainPem, spiffeId: id.spiffeId, expiryMs } };
  if (dp && st.identity === match.winner) {
    let plans = dataplanePlans.get(view.identities);
    if (!plans) dataplanePlans.set(view.identities, (plans = new WeakMap()));
    plans.set(dp, { zone: view.zone, mesh, plan });
  }
  return plan;
}

function holdCredential(e: ProxyEntry, p: ProxyPrincipal): void {
  const c = p.credential;
  if (!c) return;
  e.credentials ??= new Map();
  const held = e.credentials.get(c.jti);
  if (held) {
    held.refs++;
    return;
  }
  // A new token: those no stream uses any more (kept through the grace period) no longer keep the proxy.
  for (const [jti, other] of e.credentials) {
    if (other.refs > 0) continue;
    e.credentials.delete(jti);
    formerHolder(e, jti, other.expiresAtMs);
  }
  e.credentials.set(c.jti, { expiresAtMs: c.expiresAtMs, refs: 1 });
}

/** A token let go while the proxy's SVID is served: its holder has that SVID's key (see formerHolders). */
function formerHolder(e: ProxyEntry, jti: string, expiresAtMs: number): void {
  if (e.identity.state === 'issued') (e.formerHolders ??= new Map()).set(jti, expiresAtMs);
}

function sameFacts(a: ProxyPrincipal, b: ProxyPrincipal): boolean {
  return a.workload === b.workload && a.source === b.source && JSON.stringify(a.labels ?? {}) === JSON.stringify(b.labels ?? {});
}

function sameIdentity(a: ProxyIdentity, b: ProxyIdentity): boolean {
  if (a.state !== b.state) return false;
  if (a.state === 'issued' && b.state === 'issued') return a.svid === b.svid;
  if (a.state === 'spire' && b.state === 'spire') return a.spiffeId === b.spiffeId;
  return a.state === b.state && 'reason' in a && 'reason' in b && a.reason === b.reason;
}

/** Each view's identities by mesh, in precedence order: grouped and sorted once, not for every proxy. */
const byMesh = new WeakMap<ReadonlyMap<string, IdentityState>, Map<string, MeshIdentity[]>>();
function identitiesOfMesh(identities: ReadonlyMap<string, IdentityState>, mesh: string): readonly MeshIdentity[] {
  let meshes = byMesh.get(identities);
  if (!meshes) {
    const grouped = new Map<string, MeshIdentity[]>();
    for (const st of identities.values()) {
      const list = grouped.get(st.identity.mesh);
      if (list) list.push(st.identity);
      else grouped.set(st.identity.mesh, [st.identity]);
    }
    meshes = new Map([...grouped].map(([m, list]) => [m, precedenceOrder(list)]));
    byMesh.set(identities, meshes);
  }
  return meshes.get(mesh) ?? [];
}
