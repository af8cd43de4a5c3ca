// SvidIssuer: issues leaves on a small worker_threads pool so issuance uses every core and never
// blocks the event loop that serves gRPC streams. Requests are gathered into batches, one message
// per batch; each worker has at most PIPELINE batches in flight and the rest wait here, so a
// worker that finishes first pulls the next batch (no worker idles while the other has a backlog).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CaError } from './errors.js';
import { WorkerCaSet, workerCaKey, type IssueRequest, type ToMain, type ToWorker } from './issue-protocol.js';
import { issueSvidSync, quickLeafKey, svidFromLeaf } from './leaf.js';
import type { CertificateAuthority, IssuedSvid } from './types.js';

export interface SvidIssuerOptions {
  /** Worker threads; 0 issues on the calling thread. Default: min(2, available cores). */
  workers?: number;
  /**
   * Leaves issued on the calling thread in each 100 ms before the rest go to the workers (4; 0:
   * always the workers). A lone leaf (a Dataplane change, one rotation) costs several times less
   * inline than waking a worker for it, while a burst (a connect storm) still uses every core.
   */
  inlinePerWindow?: number;
}

const INLINE_WINDOW_MS = 100;

interface Job {
  req: IssueRequest;
  /** performance.now() when it was queued for a worker. */
  queuedAt: number;
  ca: CertificateAuthority;
  resolve: (s: IssuedSvid) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** The CAs this worker holds (by workerCaKey), mirrored step by step. */
  cas: WorkerCaSet<true>;
  /** Batches sent and not yet answered, oldest first (a worker answers in order). */
  batches: Job[][];
  /** Leaves in those batches. */
  leaves: number;
  /** Resolves when the worker has loaded (or exited). */
  ready: Promise<void>;
}

const MAX_BATCH = 128;
const MIN_BATCH = 8;
/** Batches a worker holds at once: one being issued, one waiting, so it never waits for the main thread. */
const PIPELINE = 2;
/** A batch is sent once this many leaves wait, or when the first has waited GATHER_MS (see dispatch). */
const GATHER_LEAVES = 16;
const GATHER_MS = 20;

/** How to start the TypeScript worker file: under tsx the loader must be present in the worker too. */
function workerSpec(): { url: URL; workerData?: { entry: string } } {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return { url: new URL('./issue-worker.js', self) };
  return { url: new URL('./issue-worker-boot.mjs', self), workerData: { entry: new URL('./issue-worker.ts', self).href } };
}

/** Errors cross the thread boundary as name + message; rebuild the types callers check for. */
function reviveError(e: { name: string; message: string } | undefined): Error {
  const message = e?.message ?? 'issue failed';
  switch (e?.name) {
    case 'CaError':
      return new CaError(message);
    case 'TypeError':
      return new TypeError(message);
    case 'RangeError':
      return new RangeError(message);
    default:
      return new Error(message);
  }
}

export class SvidIssuer {
  private readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly inlinePerWindow: number;
  private windowStartMs = -Infinity;
  private inlineInWindow = 0;

  constructor(opts: SvidIssuerOptions = {}) {
    this.size = Math.max(0, Math.floor(opts.workers ?? Math.min(2, availableParallelism())));
    this.inlinePerWindow = Math.max(0, Math.floor(opts.inlinePerWindow ?? 4));
  }

  /** Issue a leaf off the main thread (or on it when the pool has no workers). */
  issue(ca: CertificateAuthority, spiffeId: string, expiryMs: number, now: Date = new Date()): Promise<IssuedSvid> {
    if (this.closed) return Promise.reject(new Error('SvidIssuer is closed'));
    if (this.size === 0 || this.takeInlineSlot(ca)) {
      try {
        return Promise.resolve(issueSvidSync(ca, spiffeId, expiryMs, now));
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    return new Promise<IssuedSvid>((resolve, reject) => {
      this.queue.push({ req: { fp: workerCaKey(ca), spiffeId, expiryMs, nowMs: now.getTime() }, queuedAt: performance.now(), ca, resolve, reject });
      this.dispatch();
    });
  }

  /** Worker threads started so far (they start with the first leaf that is not issued inline). */
  get startedWorkers(): number {
    return this.slots.length;
  }

  /**
   * Whether this leaf is issued inline: an EC leaf (an RSA key takes 50–200 ms to generate, which
   * must never block the event loop), few in the current window, nothing waiting for the workers.
   */
  private takeInlineSlot(ca: CertificateAuthority): boolean {
    if (this.inlinePerWindow === 0 || this.queue.length > 0 || !quickLeafKey(ca)) return false;
    const now = performance.now();
    if (now - this.windowStartMs >= INLINE_WINDOW_MS) {
      this.windowStartMs = now;
      this.inlineInWindow = 0;
    }
    if (this.inlineInWindow >= this.inlinePerWindow) return false;
    this.inlineInWindow++;
    return true;
  }

  /** Issue a leaf on the calling thread. */
  issueSync(ca: CertificateAuthority, spiffeId: string, expiryMs: number, now?: Date): IssuedSvid {
    return issueSvidSync(ca, spiffeId, expiryMs, now);
  }

  /** Stops the workers; requests still in flight are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.flushTimer);
    const err = new Error('SvidIssuer is closed');
    for (const j of this.queue.splice(0)) j.reject(err);
    const slots = this.slots.splice(0);
    for (const s of slots) for (const b of s.batches) for (const j of b) j.reject(err);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /**
   * Starts the workers now, and resolves once each has loaded: the first issuance after start-up
   * (a reconnect storm) then does not wait for worker boot.
   */
  warmUp(): Promise<void> {
    if (this.closed) return Promise.resolve();
    while (this.slots.length < this.size) this.slots.push(this.spawn());
    return Promise.all(this.slots.map((s) => s.ready)).then(() => undefined);
  }

  /**
   * Sends what waits now if it is a batch's worth or has waited GATHER_MS (a backlog: the end of a
   * burst must not wait for the timer), else sets the timer for when the oldest will have.
   * Leaves are gathered because every message to a worker and back costs both threads a wake-up
   * and a structured clone, several times a leaf. In a connect storm leaves trickle in as fast as
   * the event loop authenticates proxies: a fixed 4 ms wait sent 3.1 leaves per message (2,996
   * messages for 9,340 leaves), this ~8. A lone leaf is issued inline (inlinePerWindow) and does
   * not wait here.
   */
  private dispatch(): void {
    const oldest = this.queue[0];
    if (!oldest) return;
    const waitedMs = performance.now() - oldest.queuedAt;
    if (this.queue.length >= GATHER_LEAVES || waitedMs >= GATHER_MS) return this.flush();
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, GATHER_MS - waitedMs);
  }

  /** Sends queued requests to workers with room (fewer than PIPELINE batches); the rest waits for an answer. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.closed) return;
    while (this.slots.length < this.size) this.slots.push(this.spawn());
    while (this.queue.length > 0) {
      let slot: Slot | undefined;
      for (const s of this.slots) {
        if (s.batches.length >= PIPELINE) continue;
        if (!slot || s.leaves < slot.leaves) slot = s; // least busy first
      }
      if (!slot) return; // every worker is full: flushed again when one answers
      // A share of what waits, as if spread over every batch the pool holds: batches shrink as the
      // queue drains, so at the end of a burst no worker is left with a large batch while the
      // other idles. Bounded so latency stays low under bursts.
      const n = Math.min(MAX_BATCH, Math.max(MIN_BATCH, Math.ceil(this.queue.length / (PIPELINE * this.slots.length))));
      const jobs = this.queue.splice(0, n);
      const batch: IssueRequest[] = [];
      const cas: CertificateAuthority[] = [];
      // The same steps the worker takes for this message (WorkerCaSet): add what it lacks, use each, trim.
      for (const j of jobs) {
        if (!slot.cas.has(j.req.fp)) {
          cas.push(j.ca);
          slot.cas.add(j.req.fp, true);
        }
        slot.cas.use(j.req.fp);
        batch.push(j.req);
      }
      slot.cas.trim();
      slot.batches.push(jobs);
      slot.leaves += jobs.length;
      if (slot.batches.length === 1) slot.worker.ref(); // busy: keeps the process alive until answered
      slot.worker.postMessage({ type: 'issue', cas, batch } satisfies ToWorker);
    }
  }

  private spawn(): Slot {
    const { url, workerData } = workerSpec();
    const worker = new Worker(url, { workerData });
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    const slot: Slot = { worker, cas: new WorkerCaSet<true>(), batches: [], leaves: 0, ready };
    worker.unref();
    worker.once('exit', () => markReady());
    worker.on('message', (msg: ToMain) => {
      // Loading the worker (tsx's loader in particular) can re-ref it: unref again once it is up.
      if (msg.type === 'ready') {
        if (slot.batches.length === 0) worker.unref();
        markReady();
        return;
      }
      const jobs = slot.batches.shift();
      if (!jobs) return; // answers of a closed pool
      slot.leaves -= jobs.length;
      // The worker has room again: hand it what waited before resolving (resolving runs callers' code).
      this.dispatch();
      if (slot.batches.length === 0) worker.unref(); // an idle pool must not keep the process alive
      for (let i = 0; i < jobs.length; i++) {
        const j = jobs[i]!;
        const r = msg.results[i];
        if (r && 'certPem' in r) j.resolve(svidFromLeaf(j.ca, j.req.spiffeId, r));
        else j.reject(reviveError(r?.error));
      }
    });
    const fail = (err: Error): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1); // replaced on the next flush
      for (const b of slot.batches) for (const j of b) j.reject(new Error(`issuance worker failed: ${err.message}`));
      slot.batches = [];
      slot.leaves = 0;
      if (!this.closed) this.dispatch(); // what waited for this worker
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!this.closed) fail(new Error(`exited with code ${code}`));
    });
    return slot;
  }
}
