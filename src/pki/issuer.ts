// SvidIssuer: issues leaves on a small worker_threads pool so issuance uses every core and never
// blocks the event loop that serves gRPC streams. Requests made in the same turn of the event loop
// are batched into one message per worker.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CaError } from './errors.js';
import { WORKER_MAX_CAS, type IssueRequest, type ToMain, type ToWorker } from './issue-protocol.js';
import { issueSvidSync } from './leaf.js';
import type { CertificateAuthority, IssuedSvid } from './types.js';

export interface SvidIssuerOptions {
  /** Worker threads; 0 issues on the calling thread. Default: min(2, available cores). */
  workers?: number;
}

interface Pending {
  resolve: (s: IssuedSvid) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** CA fingerprints already sent to this worker. */
  cas: Set<string>;
  inFlight: Map<number, Pending>;
  /** Resolves when the worker has loaded (or exited). */
  ready: Promise<void>;
}

const MAX_BATCH = 128;
const FLUSH_DELAY_MS = 4;

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
  private readonly queue: Array<{ req: IssueRequest; ca: CertificateAuthority; p: Pending }> = [];
  private flushScheduled = false;
  private nextId = 1;
  private closed = false;

  constructor(opts: SvidIssuerOptions = {}) {
    this.size = Math.max(0, Math.floor(opts.workers ?? Math.min(2, availableParallelism())));
  }

  /** Issue a leaf off the main thread (or on it when the pool has no workers). */
  issue(ca: CertificateAuthority, spiffeId: string, expiryMs: number, now: Date = new Date()): Promise<IssuedSvid> {
    if (this.closed) return Promise.reject(new Error('SvidIssuer is closed'));
    if (this.size === 0) {
      try {
        return Promise.resolve(issueSvidSync(ca, spiffeId, expiryMs, now));
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    return new Promise<IssuedSvid>((resolve, reject) => {
      const req: IssueRequest = { id: this.nextId++, fp: ca.fingerprint, spiffeId, expiryMs, nowMs: now.getTime() };
      this.queue.push({ req, ca, p: { resolve, reject } });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // A few milliseconds of gathering: in a connect storm every message to a worker (and its
        // answer) carries a batch instead of one or two leaves; each costs a thread wake-up.
        setTimeout(() => this.flush(), FLUSH_DELAY_MS);
      }
    });
  }

  /** Issue a leaf on the calling thread. */
  issueSync(ca: CertificateAuthority, spiffeId: string, expiryMs: number, now?: Date): IssuedSvid {
    return issueSvidSync(ca, spiffeId, expiryMs, now);
  }

  /** Stops the workers; requests still in flight are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    const err = new Error('SvidIssuer is closed');
    for (const q of this.queue.splice(0)) q.p.reject(err);
    const slots = this.slots.splice(0);
    for (const s of slots) for (const p of s.inFlight.values()) p.reject(err);
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

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    while (this.slots.length < this.size) this.slots.push(this.spawn());
    while (this.queue.length > 0) {
      // Even split across workers, least busy first, bounded so latency stays low under bursts.
      const slot = this.slots.reduce((a, b) => (b.inFlight.size < a.inFlight.size ? b : a));
      const n = Math.min(MAX_BATCH, Math.ceil(this.queue.length / this.size));
      const items = this.queue.splice(0, n);
      const batch: IssueRequest[] = [];
      for (const { req, ca, p } of items) {
        if (!slot.cas.has(ca.fingerprint)) {
          slot.worker.postMessage({ type: 'ca', ca } satisfies ToWorker);
          slot.cas.add(ca.fingerprint);
          if (slot.cas.size > WORKER_MAX_CAS) slot.cas.delete(slot.cas.values().next().value!); // as the worker does
        }
        slot.inFlight.set(req.id, p);
        batch.push(req);
      }
      slot.worker.ref();
      slot.worker.postMessage({ type: 'issue', batch } satisfies ToWorker);
    }
  }

  private spawn(): Slot {
    const { url, workerData } = workerSpec();
    const worker = new Worker(url, { workerData });
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    const slot: Slot = { worker, cas: new Set(), inFlight: new Map(), ready };
    worker.unref();
    worker.once('exit', () => markReady());
    worker.on('message', (msg: ToMain) => {
      // Loading the worker (tsx's loader in particular) can re-ref it: unref again once it is up.
      if (msg.type === 'ready') {
        if (slot.inFlight.size === 0) worker.unref();
        markReady();
        return;
      }
      for (const r of msg.results) {
        const p = slot.inFlight.get(r.id);
        if (!p) continue;
        slot.inFlight.delete(r.id);
        if (r.svid) p.resolve(r.svid);
        else p.reject(reviveError(r.error));
      }
      // An idle pool must not keep the process alive.
      if (slot.inFlight.size === 0) worker.unref();
    });
    const fail = (err: Error): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1); // replaced on the next flush
      for (const p of slot.inFlight.values()) p.reject(new Error(`issuance worker failed: ${err.message}`));
      slot.inFlight.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!this.closed) fail(new Error(`exited with code ${code}`));
    });
    return slot;
  }
}
