// One GET of a remote bundle endpoint, authenticated per SPIFFE profile (Trust Domain and
// Bundle standard §5): https_spiffe trusts only the last accepted bundle of the remote trust
// domain and requires the exact endpoint SPIFFE ID; https_web is ordinary Web PKI.
import { request } from 'node:https';
import { isIP } from 'node:net';
import tls, { rootCertificates, type PeerCertificate, type SecureContext } from 'node:tls';
import type { BundleEndpointProfile } from '../api/types.js';
import { noneValidNow } from '../api/pem.js';
import { printableLine } from '../api/quote.js';

/** Every reason a refresh can fail for (metric label values). */
export const FAILURE_REASONS = [
  'unreachable',
  'timeout',
  'tls',
  'wrong_spiffe_id',
  'http_status',
  'malformed',
  'no_ca',
  'no_valid_ca',
  'too_many_cas',
  'unacceptable_ca_key',
  'wrong_trust_domain',
  'sequence_regressed',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

/** The longest failure message kept; the rest is cut with a note of how much. */
export const MAX_FAILURE_MESSAGE_CHARS = 2000;

/**
 * A failure message as one safe line. It can quote the peer's own bytes (V8's JSON.parse error
 * shows the document's first characters raw, an ignored key's `use` is shown whole), and it goes
 * to the log, the stored record and the status that `get` and `inspect` print: an escape sequence
 * there acted on the operator's terminal, and a half-megabyte `use` made a message of that size.
 */
function failureText(message: string): string {
  const cut = message.length <= MAX_FAILURE_MESSAGE_CHARS ? message : `${message.slice(0, MAX_FAILURE_MESSAGE_CHARS)}... (${message.length - MAX_FAILURE_MESSAGE_CHARS} more characters)`;
  return printableLine(cut).replace(/\t/g, '\\t');
}

/** A refused refresh, with a reason usable as a metric label. */
export class FederationFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
  ) {
    super(failureText(message));
    this.name = 'FederationFailure';
  }
}

export interface FetchOptions {
  /** PEM CAs added to the system roots for https_web (`--federation-ca-file`). */
  webCaPem?: string;
  timeoutMs?: number;
  /** Responses larger than this are refused (a bundle is a few KiB). */
  maxBytes?: number;
  /**
   * https_spiffe only: the remote trust domain, as the server name a mesh-sds endpoint serving
   * several trust domains picks the SVID by. It is the SNI when the URL's host is an IP literal,
   * and the SNI of one retry when the host name sent as SNI got an SVID that fails the checks.
   */
  serverNameForIp?: string;
  /**
   * https_spiffe: where the trusted CAs come from, for a failure's hint (e.g. `the bootstrap
   * bundle`, `the last accepted bundle (sequence 3)`).
   */
  authorityFrom?: string;
}

/** OpenSSL verify results meaning the endpoint's chain reaches none of the CAs trusted for it. */
const UNCHAINED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** Why an https_spiffe endpoint whose chain reaches none of the trusted CAs fails, and the way out. */
function unchainedHint(count: number, from: string | undefined): string {
  return `the endpoint's certificate does not chain to the ${count} CA${count === 1 ? '' : 's'} trusted for it${from ? `, from ${from}` : ''}: if the peer changed its CA without publishing the new one first, put its current bundle in spec.trustDomainBundle`;
}

/**
 * Why none of the CAs trusted for an endpoint can authenticate it now (all expired or not yet
 * valid), or undefined. An operator then has to supply a current bundle: say so, not only "expired".
 */
export function noCurrentCa(pems: readonly string[], now: Date): string | undefined {
  const spans = noneValidNow(pems, now);
  return spans && `no CA of the bundle trusted for this endpoint is valid now (valid ${spans.join('; ')}): put a current bundle of the trust domain in spec.trustDomainBundle`;
}

/** https_web trust by --federation-ca-file content ('' for the system roots alone); a few at most. */
const webContexts = new Map<string, SecureContext>();
const MAX_WEB_CONTEXTS = 4;

/**
 * The TLS context of the https_web profile: the system roots plus the `--federation-ca-file` CAs,
 * built once per CA-file content and shared by every fetch. Building it per request (a new store
 * of ~145 roots each time) cost ~25 ms of CPU per refresh, and RSS grew with every fetch.
 */
export function webSecureContext(webCaPem: string | undefined): SecureContext {
  const key = webCaPem ?? '';
  let context = webContexts.get(key);
  if (!context) {
    context = tls.createSecureContext(webCaPem ? { ca: [...rootCertificates, webCaPem] } : {});
    // A changed CA file is a new key; the oldest goes so a few CA-file versions stay bounded.
    if (webContexts.size >= MAX_WEB_CONTEXTS) webContexts.delete(webContexts.keys().next().value!);
    webContexts.set(key, context);
  }
  return context;
}

/** URI SANs of a peer certificate, from Node's `subjectaltname` string. */
function uriSans(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/**
 * Fetches the document at `url`. For https_spiffe, `authorityPems` are the CAs of the last
 * accepted bundle: OpenSSL builds and checks the chain against them alone (each an anchor, as
 * Envoy and SPIFFE verifiers treat bundle CAs, self-signed or not), and the leaf must
 * carry exactly `endpointSPIFFEID` as its only URI SAN (hostnames are not checked, as the
 * standard says).
 */
export async function fetchBundleText(url: string, profile: BundleEndpointProfile, authorityPems: readonly string[], opts: FetchOptions = {}): Promise<string> {
  if (profile.type === 'https_spiffe' && authorityPems.length === 0) {
    throw new FederationFailure('tls', 'no bundle to authenticate the endpoint with');
  }
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  // https_web checks the host name against the certificate, so an IP literal must stay the name
  // checked (no SNI, per RFC 6066); only https_spiffe sends the trust domain instead.
  if (isIP(host)) return fetchOnce(url, profile, authorityPems, opts, profile.type === 'https_spiffe' ? opts.serverNameForIp : undefined);
  const td = profile.type === 'https_spiffe' ? opts.serverNameForIp : undefined;
  if (td === undefined || td.toLowerCase() === host.toLowerCase()) return fetchOnce(url, profile, authorityPems, opts, host);
  // The host name goes first (an SNI-routing proxy in front may need it), but a mesh-sds endpoint
  // serving several trust domains picks the SVID by SNI and answers an unknown name with its
  // first trust domain's: a fetch of any other would fail for ever. So a handshake whose SVID
  // fails the checks is tried once more, at once, with the trust domain as the server name.
  try {
    return await fetchOnce(url, profile, authorityPems, opts, host);
  } catch (e) {
    if (!(e instanceof FederationFailure) || (e.reason !== 'tls' && e.reason !== 'wrong_spiffe_id')) throw e;
    try {
      return await fetchOnce(url, profile, authorityPems, opts, td);
    } catch (e2) {
      const second = e2 instanceof FederationFailure ? e2 : new FederationFailure('unreachable', (e2 as Error).message);
      // An endpoint that authenticated with the trust domain's name answered for it: its reason counts.
      const reason = second.reason === 'http_status' || second.reason === 'malformed' ? second.reason : e.reason;
      const own = (m: string) => (m.startsWith(`${url}: `) ? m.slice(url.length + 2) : m);
      throw new FederationFailure(reason, `${url}: with SNI "${host}": ${own(e.message)}; then with SNI "${td}": ${own(second.message)}`);
    }
  }
}

/** Interim (1xx) responses tolerated before the final one (a 100 and a 103 or two are plausible). */
const MAX_INTERIM_RESPONSES = 8;

/** One GET with `servername` as SNI (none when undefined). */
function fetchOnce(url: string, profile: BundleEndpointProfile, authorityPems: readonly string[], opts: FetchOptions, servername: string | undefined): Promise<string> {
  const u = new URL(url);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxBytes = opts.maxBytes ?? 1024 * 1024;
  let identityProblem: string | undefined;
  const tlsOptions =
    profile.type === 'https_spiffe'
      ? {
          ca: [...authorityPems],
          // The bundle's CAs are the trust anchors even when not self-signed (a zone whose CA is
          // an intermediate publishes it without its root); without this OpenSSL wants the root.
          allowPartialTrustChain: true,
          rejectUnauthorized: true,
          checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
            const uris = uriSans(cert);
            if (uris.length !== 1 || uris[0] !== profile.endpointSPIFFEID) {
              identityProblem = `endpoint presented ${uris.length === 0 ? 'no SPIFFE ID' : uris.join(', ')}, expected ${profile.endpointSPIFFEID}`;
              return new Error(identityProblem);
            }
            return undefined;
          },
        }
      : { secureContext: webSecureContext(opts.webCaPem), rejectUnauthorized: true };
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port || 443,
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers: { accept: 'application/json' },
        servername,
        agent: false,
        ...tlsOptions,
      },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new FederationFailure('http_status', `${url} answered HTTP ${res.statusCode}`));
          // Its body is not wanted: draining it (resume) read whatever the peer sent until the
          // deadline, gigabytes past the bound below, which holds for a 200 only.
          req.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            req.destroy();
            reject(new FederationFailure('malformed', `${url} sent more than ${maxBytes} bytes`));
          } else chunks.push(c);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', (e) => reject(new FederationFailure('unreachable', `${url}: ${e.message}`)));
      },
    );
    // Interim (1xx) answers are parsed and passed over by node without end, outside the byte bound:
    // a peer streaming them had each refresh parse for the whole timeout. A bundle needs none.
    let interim = 0;
    req.on('information', () => {
      if (++interim > MAX_INTERIM_RESPONSES) req.destroy(new FederationFailure('malformed', `${url} sent more than ${MAX_INTERIM_RESPONSES} informational (1xx) responses`));
    });
    // The whole exchange (connect, TLS, answer) has timeoutMs, not only each silence in it: an
    // endpoint that drips its answer a byte at a time would otherwise hold this refresh for ever.
    const deadline = setTimeout(() => req.destroy(new FederationFailure('timeout', `${url} did not answer within ${timeoutMs} ms`)), timeoutMs);
    req.once('close', () => clearTimeout(deadline));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof FederationFailure) reject(e);
      else if (identityProblem) reject(new FederationFailure('wrong_spiffe_id', identityProblem));
      else if (e.code && /CERT|SSL|TLS|VERIFY|SIGNATURE|ISSUER|SELF_SIGNED|HOSTNAME|ERR_TLS/.test(e.code)) {
        const stale = profile.type === 'https_spiffe' ? noCurrentCa(authorityPems, new Date()) : undefined;
        const hint = stale ?? (profile.type === 'https_spiffe' && UNCHAINED.has(e.code) ? unchainedHint(authorityPems.length, opts.authorityFrom) : undefined);
        reject(new FederationFailure('tls', `${url}: TLS authentication failed: ${e.message}${hint ? ` (${hint})` : ''}`));
      }
      else reject(new FederationFailure('unreachable', `${url}: ${e.message}`));
    });
    req.end();
  });
}
