// Messages between SvidIssuer and its worker threads.
import type { CertificateAuthority, IssuedSvid } from './types.js';

/** CAs a worker keeps (oldest evicted first); the pool mirrors this to know what to resend. */
export const WORKER_MAX_CAS = 64;

export interface IssueRequest {
  id: number;
  /** Fingerprint of a CA previously sent with a `ca` message. */
  fp: string;
  spiffeId: string;
  expiryMs: number;
  nowMs: number;
}

export type ToWorker =
  | { type: 'ca'; ca: CertificateAuthority }
  | { type: 'issue'; batch: IssueRequest[] };

export type IssueResult = { id: number; svid?: IssuedSvid; error?: { name: string; message: string } };

/** `ready` is sent once the worker has loaded. */
export type ToMain = { type: 'ready' } | { type: 'issued'; results: IssueResult[] };
