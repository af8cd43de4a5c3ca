// The gRPC listener's own certificate is rotated on disk (cert-manager, a Kubernetes Secret volume,
// a cron job): a server that kept the one it started with would serve it past its expiry, and every
// Envoy would fail to connect. The files are polled; a new pair that is whole and valid now
// replaces the served one, anything else is refused by name and the served pair is kept.
import { X509Certificate, createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { readFlagFile } from '../api/flag-file.js';
import { hasUnreadableValidity, isoTime } from '../api/pem.js';
import type { TlsKeyPair } from './grpc-h2/server.js';

export interface TlsReloadOptions {
  certFile: string;
  keyFile: string;
  /** Replaces the pair the listener serves (new handshakes use it; open connections keep theirs). */
  apply: (pair: TlsKeyPair) => void;
  log: { info: (o: object, m: string) => void; error: (o: object, m: string) => void };
  /** How often the files' stat signatures are compared (5 s). */
  intervalMs?: number;
  now?: () => Date;
  /** The served certificate's end of validity (at start and after each reload), for a metric. */
  onServed?: (notAfter: Date) => void;
}

export interface TlsReloader {
  /** Compares the files now (the timer does this every intervalMs). */
  check(): Promise<void>;
  /** Whether the certificate served now is valid (for /readyz: TLS clients refuse an expired one). */
  health(): { ok: boolean; detail?: string };
  close(): void;
}

/** Why a certificate cannot be served at `now` by its validity, or undefined. `waiting`: it will be, later. */
function validityProblem(cert: X509Certificate, now: Date, noun = 'the certificate'): { problem: string; waiting: boolean } | undefined {
  const t = now.getTime();
  // OpenSSL reads such a certificate but not its times: no comparison with them holds.
  if (hasUnreadableValidity(cert)) return { problem: `${noun} has a validity that cannot be read (not before ${JSON.stringify(cert.validFrom)}, not after ${JSON.stringify(cert.validTo)})`, waiting: false };
  if (t < Date.parse(cert.validFrom)) return { problem: `${noun} is not valid before ${new Date(cert.validFrom).toISOString()}`, waiting: true };
  if (t > Date.parse(cert.validTo)) return { problem: `${noun} expired at ${new Date(cert.validTo).toISOString()}`, waiting: false };
  return undefined;
}

/**
 * Why a key pair cannot be served, or its certificate. `unusable`: never (a key of another
 * certificate, not a certificate); otherwise only not now (its validity).
 */
export function checkKeyPair(pair: TlsKeyPair, now: Date): { cert: X509Certificate } | { problem: string; unusable: boolean; waiting: boolean } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.cert);
  } catch (e) {
    return { problem: `the certificate does not parse (${(e as Error).message})`, unusable: true, waiting: false };
  }
  try {
    // Refuses a key that does not belong to the certificate, or one OpenSSL cannot read.
    createSecureContext({ cert: pair.cert, key: pair.key });
  } catch (e) {
    return { problem: `the key pair cannot be used (${(e as Error).message})`, unusable: true, waiting: false };
  }
  const invalid = validityProblem(cert, now);
  return invalid ? { ...invalid, unusable: false } : { cert };
}

export function watchTlsKeyPair(opts: TlsReloadOptions, served: TlsKeyPair): TlsReloader {
  const now = () => opts.now?.() ?? new Date();
  const digest = (p: TlsKeyPair) => createHash('sha256').update(p.cert).update('\0').update(p.key).digest('hex');
  let current = digest(served);
  // Parses: a pair that does not is refused at start-up (listenCredentials) before it gets here.
  let servedCert = new X509Certificate(served.cert);
  /** The files' signature at the previous poll: a pair is read only once it has stood still for a poll. */
  let previousSig = '';
  /** The last signature dealt with for good (served, or refused for what it is, not for the time). */
  let settled = '';
  /** What was last reported, so a refusal is logged once, not every poll. */
  let reported = '';
  let running: Promise<void> | undefined;
  let closed = false;

  const signature = async (): Promise<string> => {
    const [c, k] = await Promise.all([stat(opts.certFile), stat(opts.keyFile)]);
    return `${c.ino}:${c.size}:${c.mtimeMs}|${k.ino}:${k.size}:${k.mtimeMs}`;
  };
  const refuse = (key: string, reason: string): void => {
    if (reported !== key) opts.log.error({ certFile: opts.certFile, keyFile: opts.keyFile, reason }, 'listener TLS key pair refused; still serving the previous one');
    reported = key;
  };

  const compare = async (): Promise<void> => {
    let sig: string;
    let pair: TlsKeyPair;
    try {
      sig = await signature();
      // Written in place or one file before the other: wait until both stood still for a poll.
      const still = sig === previousSig;
      previousSig = sig;
      if (!still || sig === settled) return;
      // Bounded and regular files only: a pair swapped for a FIFO or /dev/zero is refused, not waited on or read without end.
      const [cert, key] = await Promise.all([readFlagFile('--tls-cert', opts.certFile), readFlagFile('--tls-key', opts.keyFile)]);
      if ((await signature()) !== sig) return; // changed while being read: next poll
      pair = { cert, key };
    } catch (e) {
      // A file swapped out from under us (a Secret volume's ..data link): looked at again next time.
      refuse(`read:${(e as Error).message}`, `cannot read the listener key pair (${(e as Error).message})`);
      return;
    }
    const d = digest(pair);
    if (d === current) {
      settled = sig;
      return;
    }
    const checked = checkKeyPair(pair, now());
    if ('problem' in checked) {
      // A certificate not valid yet (an issuer's clock ahead) becomes valid by waiting: checked
      // again every poll. Anything else is refused until the files change.
      if (!checked.waiting) settled = sig;
      refuse(`${sig}:${checked.problem}`, checked.problem);
      return;
    }
    opts.apply(pair);
    current = d;
    servedCert = checked.cert;
    settled = sig;
    reported = '';
    opts.onServed?.(new Date(checked.cert.validTo));
    opts.log.info({ certFile: opts.certFile, subject: checked.cert.subject, notAfter: isoTime(checked.cert.validTo), fingerprint: checked.cert.fingerprint256 }, 'listener TLS key pair reloaded');
  };

  const check = (): Promise<void> => {
    if (closed) return Promise.resolve();
    return (running ??= compare().finally(() => (running = undefined)));
  };
  const timer = setInterval(() => void check(), opts.intervalMs ?? 5000);
  timer.unref();
  const health = (): { ok: boolean; detail?: string } => {
    const invalid = validityProblem(servedCert, now(), 'the listener certificate');
    if (invalid) return { ok: false, detail: `${invalid.problem} (${opts.certFile})${invalid.waiting ? '' : '; TLS clients refuse it'}` };
    return { ok: true, detail: `valid until ${new Date(servedCert.validTo).toISOString()}` };
  };
  opts.onServed?.(new Date(servedCert.validTo));
  const atStart = validityProblem(servedCert, now());
  if (atStart) opts.log.error({ certFile: opts.certFile, keyFile: opts.keyFile, reason: atStart.problem }, 'listener TLS certificate is not valid now; waiting for a new one on disk');
  return {
    check,
    health,
    close: () => {
      closed = true;
      clearInterval(timer);
    },
  };
}
