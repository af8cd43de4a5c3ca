// Messages between SvidIssuer and its worker threads.
import type { CertificateAuthority, IssuedSvid } from './types.js';

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

export interface ToMain {
  type: 'issued';
  results: Array<{ id: number; svid?: IssuedSvid; error?: { name: string; message: string } }>;
}
