// Messages between SvidIssuer and its worker threads.
import type { IssuedLeaf } from './leaf.js';
import type { CertificateAuthority } from './types.js';

/** CAs a worker keeps (oldest evicted first); the pool mirrors this to know what to resend. */
export const WORKER_MAX_CAS = 64;

export interface IssueRequest {
  /** Fingerprint of a CA previously sent with a `ca` message. */
  fp: string;
  spiffeId: string;
  expiryMs: number;
  nowMs: number;
}

export type ToWorker =
  | { type: 'ca'; ca: CertificateAuthority }
  | { type: 'issue'; batch: IssueRequest[] };

/**
 * One answer per request of a batch, in the batch's order. A leaf carries only what the main
 * thread does not have already (it adds the SPIFFE ID, the CA chain and fingerprint).
 */
export type IssueResult = IssuedLeaf | { error: { name: string; message: string } };

/** `ready` is sent once the worker has loaded; every `issue` batch gets one `issued` answer, in order. */
export type ToMain = { type: 'ready' } | { type: 'issued'; results: IssueResult[] };
