// Messages between SvidIssuer and its worker threads.
import type { IssuedLeaf } from './leaf.js';
import type { CertificateAuthority } from './types.js';

/** CAs a worker keeps; the pool mirrors them (see WorkerCaSet) to know what to send. */
export const WORKER_MAX_CAS = 64;

/**
 * What a worker holds a CA by: its fingerprint (the signing certificate's) and the end of its
 * chain. The same certificate reloaded with another chain (a root renewed under the same key)
 * caps leaves differently: by fingerprint alone the worker kept the first copy, capped leaves by
 * the old root's end, and once that passed refused every leaf as expired.
 */
export const workerCaKey = (ca: Pick<CertificateAuthority, 'fingerprint' | 'notAfter'>): string => `${ca.fingerprint}/${ca.notAfter.getTime()}`;

export interface IssueRequest {
  /** The CA's workerCaKey: sent with this batch or an earlier one. */
  fp: string;
  spiffeId: string;
  expiryMs: number;
  nowMs: number;
}

/** A batch of leaves, with the CAs of it the worker does not hold (by what the pool mirrors). */
export type ToWorker = { type: 'issue'; cas: CertificateAuthority[]; batch: IssueRequest[] };

/**
 * One answer per request of a batch, in the batch's order. A leaf carries only what the main
 * thread does not have already (it adds the SPIFFE ID, the CA chain and fingerprint).
 */
export type IssueResult = IssuedLeaf | { error: { name: string; message: string } };

/** `ready` is sent once the worker has loaded; every `issue` batch gets one `issued` answer, in order. */
export type ToMain = { type: 'ready' } | { type: 'issued'; results: IssueResult[] };

/**
 * The CAs a worker holds, least recently used first, kept by the worker and mirrored by the pool:
 * both apply the same steps in the same order (a batch's new CAs added, each request's CA used,
 * then the least recently used dropped past `max`), so the pool always knows what to send. Only
 * after a whole batch is anything dropped: a batch needing more than `max` CAs, which the pool once
 * sent one by one, evicting those the same batch still needed, is issued whole.
 */
export class WorkerCaSet<T> {
  private readonly held = new Map<string, T>();

  constructor(private readonly max = WORKER_MAX_CAS) {}

  has(fp: string): boolean {
    return this.held.has(fp);
  }

  add(fp: string, ca: T): void {
    this.held.set(fp, ca);
  }

  /** The CA, now the most recently used. */
  use(fp: string): T | undefined {
    const ca = this.held.get(fp);
    if (ca === undefined) return undefined;
    this.held.delete(fp);
    this.held.set(fp, ca);
    return ca;
  }

  /** Drops the least recently used past `max`: called once a batch is through. */
  trim(): void {
    for (const fp of this.held.keys()) {
      if (this.held.size <= this.max) return;
      this.held.delete(fp);
    }
  }

  get size(): number {
    return this.held.size;
  }
}
