import type { IssuedSvid } from '../pki/types.js';
import { sameInputs, type SvidInputs } from './svid-inputs.js';

/** See PreparedSvids.stats(). */
export interface PreparedStats {
  held: number;
  issuing: number;
  queued: number;
  waiting: number;
}

/** What a Dataplane's SVID is made from now, and how to issue it. */
export interface Preparation {
  inputs: SvidInputs;
  issue: (issuedAt: Date) => Promise<IssuedSvid>;
  /** Its share of the concurrency (1: an EC leaf; an RSA key takes 50 ms to seconds to generate, see PreparedSvids). */
  weight: number;
}

/** A prepared SVID handed to the proxy that takes it: settled already, or still being issued. */
export interface TakenSvid {
  issuedAt: Date;
  svid: Promise<IssuedSvid>;
  /** The SVID when it is issued already: the proxy is then answered in the tick it attaches. */
  settled?: IssuedSvid;
}

export interface PreparedSvidsOptions {
  /** At most this many SVIDs are held (prepared or being prepared); Dataplanes past it wait for a place, in turn. */
  limit: number;
  /** What to prepare for a Dataplane (its node id) now; undefined when it needs none (a proxy is attached, no SVID to issue, gone). */
  plan: (dataplaneKey: string) => Preparation | undefined;
  /**
   * Whether a Dataplane may need one at all (it exists and no proxy is attached to it), without
   * planning it: what a full pool keeps waiting for a place. Everything, when not given.
   */
  wanted?: (dataplaneKey: string) => boolean;
  now?: () => Date;
  /** Weight of the preparations issued at once (64): a proxy's own issuance never queues behind more. */
  concurrency?: number;
  /** How often held SVIDs past half their life are prepared again. */
  sweepMs?: number;
  /** Called the first time the limit stops a preparation (only once: with more Dataplanes than the limit it would be every time a proxy leaves). */
  onFull?: (limit: number) => void;
}

interface Held {
  inputs: SvidInputs;
  issuedAt: Date;
  svid: Promise<IssuedSvid>;
  settled?: IssuedSvid;
}

/** Dataplanes planned in one turn of the event loop. */
const PLANS_PER_TURN = 500;

/** A prepared RSA leaf's weight: two at a time fill the default concurrency, as there are two issuance workers. */
export const RSA_PREPARATION_WEIGHT = 32;

/**
 * SVIDs issued ahead for Dataplanes no proxy is attached to, so that a proxy that connects (a new
 * pod's Envoy, or every Envoy reconnecting after a restart) is answered without waiting for key
 * generation, as the SPIRE agent holds SVIDs for the workloads it may serve. One per Dataplane; each
 * is handed out once (a key is never given to two proxies), only while its inputs are still the
 * Dataplane's and at least half of its life is left. Preparation runs beside the proxies' own
 * issuances, a few at a time in the order asked, so that theirs never queue long behind it (EC
 * leaves: at most 64 ahead, ~5 ms; RSA: about one per worker).
 */
export class PreparedSvids {
  private readonly held = new Map<string, Held>();
  /** Dataplanes to plan, in the order asked (a Set keeps insertion order and drops repeats). */
  private readonly queued = new Set<string>();
  /**
   * Dataplanes the limit left without one, in the order they were left out: planned first, in that
   * order, as places free. Only ones that may need one (see `wanted`): a removed Dataplane, or one a
   * proxy took, leaves it.
   */
  private readonly waitingForRoom = new Set<string>();
  /** Preparations being issued, and their weight. */
  private issuing = 0;
  private weightIssuing = 0;
  private full = false;
  private closed = false;
  private readonly sweepTimer: NodeJS.Timeout;
  private resume?: NodeJS.Immediate;

  constructor(private readonly opts: PreparedSvidsOptions) {
    this.sweepTimer = setInterval(() => this.sweep(), opts.sweepMs ?? 60_000);
    this.sweepTimer.unref();
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** Plans a Dataplane's SVID (again) when its turn comes: prepares, keeps or lets go of the one held. */
  request(dataplaneKey: string): void {
    if (this.closed) return;
    this.queued.add(dataplaneKey);
    // In a later turn: a view change asks for a whole mesh at once, and the pump plans it in slices.
    this.pumpLater();
  }

  /**
   * Hands out the SVID held for a Dataplane if it was made from `inputs` and is fresh enough; it is
   * no longer held either way (a proxy is attached now: its own SVID is kept by the proxy).
   */
  take(dataplaneKey: string, inputs: SvidInputs): TakenSvid | undefined {
    // A proxy is attached: its Dataplane needs nothing prepared any more.
    this.waitingForRoom.delete(dataplaneKey);
    const h = this.held.get(dataplaneKey);
    if (!h) return undefined;
    this.letGo(dataplaneKey);
    if (!sameInputs(h.inputs, inputs) || (h.settled && !this.fresh(h))) return undefined;
    return h;
  }

  /** Held SVIDs (settled or being issued), Dataplanes waiting to be planned, and those the limit left without one. */
  stats(): PreparedStats {
    return { held: this.held.size, issuing: this.issuing, queued: this.queued.size, waiting: this.waitingForRoom.size };
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweepTimer);
    if (this.resume) clearImmediate(this.resume);
    this.held.clear();
    this.queued.clear();
    this.waitingForRoom.clear();
  }

  /**
   * Handed out only with at least half its life left (rotation comes at 70–90 %), and not before
   * its NotBefore (a clock stepped back): a proxy must not get a leaf about to be rotated or one
   * its peers refuse.
   */
  private fresh(h: Held): boolean {
    const now = this.now().getTime();
    const s = h.settled!;
    return now >= s.notBefore.getTime() && now < h.issuedAt.getTime() + (s.notAfter.getTime() - h.issuedAt.getTime()) / 2;
  }

  private pump(): void {
    let planned = 0;
    // Those the limit left without one go first, in the order they were left out.
    for (const key of this.waitingForRoom) {
      if (this.held.size >= this.opts.limit) break;
      if (!this.mayPlan(++planned)) return;
      this.waitingForRoom.delete(key);
      this.queued.delete(key);
      this.planOne(key);
    }
    for (const key of this.queued) {
      if (!this.mayPlan(++planned)) return;
      this.queued.delete(key);
      // Not planned while there is no place: a mesh far above the limit is not planned in full
      // (tens of µs each) at start-up and on every change of its identities. Nor while others wait
      // for one (a place freed by this loop is theirs: letGo pumps again). One already waiting keeps
      // its place in the line.
      const full = this.held.size >= this.opts.limit;
      if (!this.held.has(key) && (full || this.waitingForRoom.size > 0)) {
        if (full && !this.full) this.opts.onFull?.(this.opts.limit);
        this.full ||= full;
        if (this.opts.wanted?.(key) ?? true) this.waitingForRoom.add(key);
        else this.waitingForRoom.delete(key);
        continue;
      }
      this.waitingForRoom.delete(key);
      this.planOne(key);
    }
  }

  /**
   * Whether the pump may plan another Dataplane in this turn: not while the issuances running fill
   * the concurrency, and at most PLANS_PER_TURN per turn of the event loop (plans that issue nothing,
   * a proxy attached or the SVID held still fitting, cost a few µs each: a mesh of 100,000
   * Dataplanes is planned in slices).
   */
  private mayPlan(planned: number): boolean {
    if (this.weightIssuing >= (this.opts.concurrency ?? 64) || this.closed) return false;
    if (planned <= PLANS_PER_TURN) return true;
    this.pumpLater();
    return false;
  }

  /** Prepares, keeps or lets go of a Dataplane's SVID, as its plan says. */
  private planOne(key: string): void {
    const cur = this.held.get(key);
    const plan = this.opts.plan(key);
    if (!plan) {
      if (cur) this.letGo(key);
      return;
    }
    if (cur && sameInputs(cur.inputs, plan.inputs) && (!cur.settled || this.fresh(cur))) return;
    const issuedAt = this.now();
    const h: Held = { inputs: plan.inputs, issuedAt, svid: plan.issue(issuedAt) };
    this.held.set(key, h);
    this.issuing++;
    this.weightIssuing += plan.weight;
    h.svid.then(
      (svid) => {
        h.settled = svid;
      },
      // A failed preparation is not retried here: the proxy's own issuance retries and reports.
      () => {
        if (this.held.get(key) === h) this.letGo(key);
      },
    ).finally(() => {
      this.issuing--;
      this.weightIssuing -= plan.weight;
      this.pump();
    });
  }

  /** A held place is free again: the first Dataplane waiting for one gets it (from the pump, never inside take(), which runs as a proxy attaches). */
  private letGo(key: string): void {
    this.held.delete(key);
    if (this.waitingForRoom.size > 0) this.pumpLater();
  }

  private pumpLater(): void {
    if (!this.resume && !this.closed) this.resume = setImmediate(() => ((this.resume = undefined), this.pump()));
  }

  /** Held SVIDs past half their life are prepared anew (their Dataplanes may still have no proxy). */
  private sweep(): void {
    for (const [key, h] of this.held) if (h.settled && !this.fresh(h)) this.queued.add(key);
    this.pump();
  }
}
