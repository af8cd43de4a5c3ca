// grpc-js writes its own log lines to stderr (plain text, outside our JSON logger and its
// redaction). One of them quotes a refused metadata value whole: an `authorization` value with a
// non-ASCII character put the bearer token on stderr. Route the library's logger through ours,
// with every message scrubbed of anything that looks like a credential (SPEC §5).
import * as grpc from '@grpc/grpc-js';
import { looksLikeBase64Secret, scrubSecretText } from '../api/secret-text.js';
import type { Logger } from './logger.js';

const SCRUBBED = '[REDACTED]';

/** `Failed to add metadata entry <key>: <value>. Metadata string value "<value>" contains…`. */
const REFUSED_METADATA = /^Failed to add metadata entry ([^:\s]+): /;

/**
 * Runs of base64/base64url characters long enough to be key bytes or a secret without its prefix;
 * one is scrubbed when it changes character class as often as random bytes do (looksLikeBase64Secret):
 * names in SPIFFE IDs, labels and paths (`/ns/payments/sa/CheckoutService-v2`) stay readable.
 */
const BASE64_RUN = /[A-Za-z0-9+/_-]{24,}={0,2}/g;


/**
 * A private key PEM block: its header, the base64 body (whitespace and escaped newlines included)
 * and its END line if there is one. A block cut short (a clipped name in quotes) ends where the
 * body's characters do, so the text after it stays readable.
 */
const PRIVATE_KEY_BLOCK = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[A-Za-z0-9+/=\s\\]*(-----END [A-Z0-9 ]*PRIVATE KEY-----)?/g;

/**
 * Removes credentials from text a library or a peer wrote: everything the log scrubber removes
 * (scrubSecretText: URL passwords, credential query parameters…) and, since a peer's text need not
 * look like ours, key blocks across escaped newlines, `Basic` and any-case bearer values, JWT-shaped
 * strings cut short, and long base64 runs that look like encoded bytes (tokens without their prefix,
 * key bytes; also the body of a key block whose header was cut off).
 */
export function scrubCredentials(text: string): string {
  return scrubSecretText(text)
    .replace(PRIVATE_KEY_BLOCK, SCRUBBED)
    .replace(/\b(Bearer|Basic)\s+[^\s"',;]+/gi, `$1 ${SCRUBBED}`)
    .replace(/eyJ[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*){0,2}/g, SCRUBBED)
    .replace(BASE64_RUN, (run) => (looksLikeBase64Secret(run) ? SCRUBBED : run));
}

/** What grpc-js said, made safe to log: a refused metadata value is never quoted at all. */
export function safeGrpcMessage(message: string): string {
  const refused = REFUSED_METADATA.exec(message);
  if (refused) {
    const why = /illegal characters/.test(message) ? 'it contains characters outside printable ASCII' : 'it could not be read';
    return `gRPC dropped metadata entry "${refused[1]}": ${why} (value not logged)`;
  }
  return scrubCredentials(message);
}

function format(args: unknown[]): string {
  return args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? a.message : JSON.stringify(a) ?? String(a))).join(' ');
}

/**
 * Sends grpc-js's log lines to `log` (JSON, redacted) instead of stderr. Process-wide: the library
 * has one logger. Its INFO/DEBUG lines only at our debug level.
 */
export function routeGrpcLogs(log: Logger): void {
  const child = log.child({ component: 'grpc-js' });
  grpc.setLogger({
    error: (...args: unknown[]) => child.warn(safeGrpcMessage(format(args))),
    info: (...args: unknown[]) => child.info(safeGrpcMessage(format(args))),
    debug: (...args: unknown[]) => child.debug(safeGrpcMessage(format(args))),
  });
  grpc.setLogVerbosity(log.isLevelEnabled('debug') ? grpc.logVerbosity.INFO : grpc.logVerbosity.ERROR);
}
