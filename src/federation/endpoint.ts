// SPIFFE bundle endpoint (SPEC §10; SPIFFE Trust Domain and Bundle standard §5): `GET /<td>`
// serves the bundle of every trust domain this server issues from, over TLS.
//
// Profiles:
// - https_spiffe (default): the endpoint presents an X509-SVID `spiffe://<td>/mesh-sds/bundle-endpoint`
//   issued from that trust domain's CA. One listener may serve several trust domains: the
//   certificate is chosen by SNI (= the trust domain name); without SNI, or with a name that is
//   not one of ours, the SVID of the first trust domain in name order is presented.
//   The SVID is reissued at 80 % of its lifetime. After a CA roll it is NOT replaced at once:
//   while the CA that signed it is still in the published bundle it stays, so a follower that
//   holds only the previous bundle can still authenticate the endpoint and learn the new CA.
// - https_web: a given certificate and key (files re-read when they change).
import { unwatchFile, watchFile } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSecureContext, type SecureContext } from 'node:tls';
import { encodeSpiffeBundle } from '../api/spiffe-bundle.js';
import { issueSvidSync, LEAF_CLOCK_CHECK_MS } from '../pki/leaf.js';
import type { CertificateAuthority, IssuedSvid } from '../pki/types.js';
import type { StateStore } from '../store/types.js';
import { BundleSequences, caSetDigest } from './sequence.js';
import { listenOn, parseHostPort, stalledClientLimits } from '../api/host-port.js';
import { capConnectionsFairly } from '../api/fair-connections.js';
import { OncePer } from '../api/once-per.js';
import { readFlagFileSync } from '../api/flag-file.js';

export const DEFAULT_REFRESH_HINT_SECONDS = 300;
export const ENDPOINT_SPIFFE_PATH = '/mesh-sds/bundle-endpoint';
const ROTATION_FRACTION = 0.8;
/**
 * Connections the endpoint keeps open at once; one more closes one (see capConnectionsFairly). Its
 * clients are a few followers polling every refresh hint, but it faces other zones: without a cap,
 * 2,000 idle connections each held a descriptor for the 10 s client timeout, and a peer opening them
 * faster than that takes the descriptors the gRPC listener, the store and the state files need.
 */
export const BUNDLE_ENDPOINT_MAX_CONNECTIONS = 128;
/** How often a refusal over the connection cap is logged at most. */
const OVER_LIMIT_LOG_MS = 10_000;

/** A trust domain to publish (see identity/issuing-domains.ts). */
export interface PublishedDomain {
  trustDomain: string;
  /** Issues the endpoint's SVID for this trust domain. */
  ca: CertificateAuthority;
  svidLifetimeMs: number;
  caPems: string[];
  caFingerprints: string[];
}

export interface BundleEndpointOptions {
  /** `host:port` or `[v6]:port`; a bare `port` or `:port` binds 127.0.0.1. */
  listen: string;
  state: StateStore;
  refreshHintSeconds?: number;
  /** https_web profile: serve this certificate instead of per-trust-domain SVIDs. */
  webTls?: { certFile: string; keyFile: string };
  /** Defaults to issuing on the calling thread (a handful of certificates a day). */
  issue?: (ca: CertificateAuthority, spiffeId: string, expiryMs: number, now: Date) => Promise<IssuedSvid> | IssuedSvid;
  /** Overrides each domain's SVID lifetime (tests). */
  svidLifetimeMs?: number;
  /** Longest wait between checks of the SVID's rotation time against the wall clock (60 s; tests). */
  clockCheckMs?: number;
  log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  now?: () => Date;
  /**
   * How long a client may take over its TLS handshake, its request headers and its whole request
   * (default 10 s; a bundle GET takes milliseconds): a peer that opens connections and stalls is
   * dropped instead of holding them for node's defaults (120 s handshake, 60 s headers).
   */
  clientTimeoutMs?: number;
}

interface Served {
  body: string;
  sequence: number;
}

interface ServedState extends Served {
  /** caSetDigest of the CAs in `body`: an unchanged set needs no state store round trip. */
  digest: string;
}

interface EndpointSvid {
  svid: IssuedSvid;
  context: SecureContext;
  timer?: NodeJS.Timeout;
}

export interface BundleEndpoint {
  readonly profile: 'https_spiffe' | 'https_web';
  readonly address: string;
  readonly port: number;
  /** `https://host:port` */
  readonly url: string;
  /** Publishes the current trust domains; resolves once the documents (and SVIDs) are in place. */
  setDomains(domains: readonly PublishedDomain[]): Promise<void>;
  /** What `GET /<td>` returns now. */
  document(trustDomain: string): Served | undefined;
  /** Trust domains whose current bundle could not be published (each keeps its last good one, if any), with the reason. */
  problems(): ReadonlyMap<string, string>;
  /** The SVID presented for a trust domain (https_spiffe), certificate metadata and chain only. */
  svid(trustDomain: string): Omit<IssuedSvid, 'keyPem'> | undefined;
  close(): Promise<void>;
}

export class BundleEndpointError extends Error {}

export function parseEndpointListen(listen: string, flag = '--bundle-endpoint'): { host: string; port: number } {
  try {
    return parseHostPort(listen, flag);
  } catch (e) {
    throw new BundleEndpointError((e as Error).message);
  }
}

function readWebTls(files: { certFile: string; keyFile: string }): { cert: string; key: string } {
  const read = (f: string, flag: string): string => {
    try {
      return readFlagFileSync(flag, f).toString('utf8');
    } catch (e) {
      // FlagFileError's message: never the path when it is the key itself given by mistake.
      throw new BundleEndpointError((e as Error).message);
    }
  };
  const pair = { cert: read(files.certFile, '--bundle-endpoint-tls-cert'), key: read(files.keyFile, '--bundle-endpoint-tls-key') };
  const problem = webTlsProblem(pair, files);
  if (problem) throw new BundleEndpointError(problem);
  return pair;
}

/**
 * Why a certificate and key cannot be served together, naming the flag and file: openssl's own text
 * (`key values mismatch`, `no start line`) named neither, at start or on reload. Never quotes the files.
 */
function webTlsProblem(pair: { cert: string; key: string }, files: { certFile: string; keyFile: string }): string | undefined {
  const fails = (o: { cert?: string; key?: string }): string | undefined => {
    try {
      createSecureContext(o);
      return undefined;
    } catch (e) {
      return (e as Error).message.replace(/^error:[0-9A-F]+:/, '');
    }
  };
  const certProblem = fails({ cert: pair.cert });
  if (certProblem) return `--bundle-endpoint-tls-cert ${files.certFile}: no PEM certificate that can be served (${certProblem})`;
  const keyProblem = fails({ key: pair.key });
  if (keyProblem) return `--bundle-endpoint-tls-key ${files.keyFile}: no PEM private key that can be used (${keyProblem})`;
  const pairProblem = fails(pair);
  if (pairProblem) return `--bundle-endpoint-tls-key ${files.keyFile} is not the private key of --bundle-endpoint-tls-cert ${files.certFile} (${pairProblem})`;
  return undefined;
}

function send(res: ServerResponse, code: number, body: string): void {
  res.writeHead(code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

const errorBody = (message: string): string => JSON.stringify({ error: message }) + '\n';

export async function startBundleEndpoint(opts: BundleEndpointOptions): Promise<BundleEndpoint> {
  const { host, port } = parseEndpointListen(opts.listen);
  const profile = opts.webTls ? 'https_web' : 'https_spiffe';
  const hint = opts.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS;
  if (!Number.isSafeInteger(hint) || hint <= 0) throw new BundleEndpointError(`--bundle-refresh-hint: must be a positive number of seconds, got ${hint}`);
  const now = opts.now ?? (() => new Date());
  const issue = opts.issue ?? issueSvidSync;
  const sequences = new BundleSequences(opts.state, {
    onDamaged: (stateKey) => opts.log?.warn({ stateKey }, 'bundle endpoint: spiffe_sequence record damaged; numbering on from the current time (never lower than before) and writing it again'),
  });
  const docs = new Map<string, ServedState>();
  const svids = new Map<string, EndpointSvid>();
  let domains: readonly PublishedDomain[] = [];
  let defaultDomain: string | undefined;
  /** Trust domains whose current CAs could not be published, with the reason. */
  let problems: ReadonlyMap<string, string> = new Map();
  let closed = false;

  const route = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, errorBody('method not allowed'));
    }
    let td: string;
    try {
      // Throws on targets WHATWG URL rejects (`//%`, `http://[/`): a client error, not ours.
      td = decodeURIComponent(new URL(req.url ?? '/', 'https://bundle-endpoint').pathname.slice(1));
    } catch {
      return send(res, 400, errorBody('malformed request target'));
    }
    if (td === '') return send(res, 404, errorBody('name a trust domain: GET /<trust-domain>'));
    const doc = docs.get(td);
    if (!doc) return send(res, 404, errorBody(`no SPIFFE bundle for trust domain "${td}" here`));
    send(res, 200, doc.body);
  };

  // A request handler that throws would end the process (it runs outside any promise): one
  // unauthenticated request must never take the SDS server down with it.
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      route(req, res);
    } catch (e) {
      opts.log?.warn({ reason: (e as Error).message }, 'bundle endpoint request failed');
      try {
        if (!res.headersSent) send(res, 500, errorBody('internal error'));
        else res.destroy();
      } catch {
        res.destroy();
      }
    }
  };

  let webFiles: string[] = [];
  let server: Server;
  const limits = stalledClientLimits(opts.clientTimeoutMs ?? 10_000);
  if (opts.webTls) {
    const files = opts.webTls;
    server = createServer({ ...readWebTls(files), ...limits }, handle);
    webFiles = [files.certFile, files.keyFile];
    for (const f of webFiles) {
      watchFile(f, { interval: 1000, persistent: false }, () => {
        try {
          server.setSecureContext(readWebTls(files));
          opts.log?.info({ cert: files.certFile }, 'bundle endpoint certificate reloaded');
        } catch (e) {
          opts.log?.warn({ reason: (e as Error).message }, 'bundle endpoint certificate not reloaded; serving the previous one');
        }
      });
    }
  } else {
    server = createServer(
      {
        ...limits,
        SNICallback: (servername, cb) => {
          const own = svids.get(servername.toLowerCase()) ?? (defaultDomain ? svids.get(defaultDomain) : undefined);
          cb(null, own?.context);
        },
      },
      handle,
    );
  }
  server.keepAliveTimeout = 5000;
  // Said, at most once per 10 s: a follower refused here only sees its fetch fail.
  const overLimitLog = new OncePer(OVER_LIMIT_LOG_MS);
  capConnectionsFairly(server, BUNDLE_ENDPOINT_MAX_CONNECTIONS, (e) =>
    overLimitLog.log((skipped) =>
      opts.log?.warn(
        { limit: BUNDLE_ENDPOINT_MAX_CONNECTIONS, peer: e.peer, peerConnections: e.peerConnections, newcomer: e.newcomer, alsoClosedSinceLastLine: skipped },
        e.newcomer ? 'bundle endpoint: connection closed as it arrived: its client holds the most and has no other idle one' : 'bundle endpoint: connection closed to make room for a new one: its client holds the most',
      ),
    ),
  );

  const spiffeIdOf = (td: string) => `spiffe://${td}${ENDPOINT_SPIFFE_PATH}`;

  const issueFor = async (d: PublishedDomain): Promise<void> => {
    const issuedAt = now();
    const svid = await issue(d.ca, spiffeIdOf(d.trustDomain), opts.svidLifetimeMs ?? d.svidLifetimeMs, issuedAt);
    const entry: EndpointSvid = { svid, context: createSecureContext({ cert: svid.certChainPem, key: svid.keyPem }) };
    const old = svids.get(d.trustDomain);
    clearTimeout(old?.timer);
    svids.set(d.trustDomain, entry);
    // Measured from issuance (NotBefore is back-dated for clock skew), as proxy SVIDs are.
    const at = issuedAt.getTime() + (svid.notAfter.getTime() - issuedAt.getTime()) * ROTATION_FRACTION;
    const wait = (): void => {
      entry.timer = setTimeout(
        () => {
          const nowMs = now().getTime();
          // Due, or the clock was stepped back past its NotBefore (clients refuse it as not valid yet).
          if (nowMs < at && nowMs >= svid.notBefore.getTime()) return wait();
          void rotate(d.trustDomain);
        },
        Math.min(Math.max(at - now().getTime(), 0), opts.clockCheckMs ?? LEAF_CLOCK_CHECK_MS),
      );
      entry.timer.unref();
    };
    wait();
    opts.log?.info({ trustDomain: d.trustDomain, spiffeId: svid.spiffeId, serial: svid.serialHex, notAfter: svid.notAfter, ca: d.ca.fingerprint.slice(0, 16) }, 'bundle endpoint SVID issued');
  };

  const rotate = async (td: string): Promise<void> => {
    const d = domains.find((x) => x.trustDomain === td);
    if (closed || !d) return;
    try {
      await issueFor(d);
      refreshDefault();
    } catch (e) {
      opts.log?.warn({ trustDomain: td, reason: (e as Error).message }, 'bundle endpoint SVID not reissued; retrying in 30 s');
      const entry = svids.get(td);
      if (entry) {
        entry.timer = setTimeout(() => void rotate(td), 30_000);
        entry.timer.unref();
      }
    }
  };

  const refreshDefault = (): void => {
    defaultDomain = domains.find((d) => svids.has(d.trustDomain))?.trustDomain;
    const ctx = defaultDomain ? svids.get(defaultDomain) : undefined;
    // The context used when a client sends no SNI (IP literals, or a client that does not set it).
    if (ctx) server.setSecureContext({ cert: ctx.svid.certChainPem, key: ctx.svid.keyPem });
  };

  let queue: Promise<void> = Promise.resolve();
  /** The newest view not yet applied, and the update (not yet started) that will apply it. */
  let pendingView: readonly PublishedDomain[] | undefined;
  let pendingRun: Promise<void> | undefined;
  const apply = async (next: readonly PublishedDomain[]): Promise<void> => {
    if (closed) return;
    const sorted = [...next].sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0));
    const fresh = new Map<string, ServedState>();
    const failed = new Map<string, string>();
    for (const d of sorted) {
      const digest = caSetDigest(d.caFingerprints);
      const prev = docs.get(d.trustDomain);
      if (prev?.digest === digest) {
        fresh.set(d.trustDomain, prev);
        continue;
      }
      // One trust domain whose CAs cannot be published (a key no JWK can carry, the state store
      // failing its sequence) must not stop the others: it keeps its last good bundle, if any.
      try {
        // Encoded once before the sequence is taken, so a bundle that cannot be encoded burns no number.
        encodeSpiffeBundle({ cas: d.caPems });
        const sequence = await sequences.sequenceFor(d.trustDomain, d.caFingerprints);
        fresh.set(d.trustDomain, { sequence, digest, body: encodeSpiffeBundle({ cas: d.caPems, sequence, refreshHintSeconds: hint }) });
        if (prev && prev.sequence !== sequence) opts.log?.info({ trustDomain: d.trustDomain, sequence, cas: d.caFingerprints.length }, 'bundle endpoint: bundle changed');
      } catch (e) {
        const reason = (e as Error).message;
        failed.set(d.trustDomain, reason);
        if (prev) fresh.set(d.trustDomain, prev);
        // Reported once per change, not on every view.
        if (problems.get(d.trustDomain) !== reason) {
          opts.log?.warn({ trustDomain: d.trustDomain, reason, keeping: prev ? `sequence ${prev.sequence}` : 'nothing (not published)' }, 'bundle endpoint: bundle of this trust domain not updated; the other trust domains are');
        }
      }
    }
    problems = failed;
    // A failed domain stays as last published (its SVID keeps chaining to the bundle it serves);
    // one with nothing to serve gets no SVID either.
    const before = new Map(domains.map((d) => [d.trustDomain, d]));
    domains = sorted.flatMap((d) => (!failed.has(d.trustDomain) ? [d] : fresh.has(d.trustDomain) ? [before.get(d.trustDomain) ?? d] : []));
    docs.clear();
    for (const [td, doc] of fresh) docs.set(td, doc);
    if (profile === 'https_spiffe') {
      for (const [td, entry] of [...svids]) {
        if (fresh.has(td)) continue;
        clearTimeout(entry.timer);
        svids.delete(td);
      }
      for (const d of domains) {
        const have = svids.get(d.trustDomain);
        // Keep the SVID while its CA is published (see the header comment); reissue otherwise, and
        // when the current CA is given again with another chain (its parents completed): the
        // endpoint's TLS chain follows it, as proxy SVIDs do.
        const staleChain = have?.svid.caFingerprint === d.ca.fingerprint && !have.svid.certChainPem.endsWith(d.ca.chainPem);
        if (have && !staleChain && d.caFingerprints.includes(have.svid.caFingerprint) && have.svid.notAfter.getTime() > now().getTime()) continue;
        try {
          await issueFor(d);
        } catch (e) {
          opts.log?.warn({ trustDomain: d.trustDomain, reason: (e as Error).message }, 'bundle endpoint SVID not issued');
        }
      }
      refreshDefault();
    }
  };

  const { address: addr, urlHost } = await listenOn(server, host, port);
  opts.log?.info({ address: addr.address, port: addr.port, profile, refreshHintSeconds: hint }, 'bundle endpoint listening');

  return {
    profile,
    address: addr.address,
    port: addr.port,
    url: `https://${urlHost}:${addr.port}`,
    setDomains(next) {
      // One update runs at a time; of the views given meanwhile only the newest is applied (a stalled
      // state store must not pile up one per Dataplane change). A superseded caller awaits that one.
      pendingView = next;
      if (pendingRun) return pendingRun;
      const run = queue.then(() => {
        const view = pendingView!;
        pendingView = undefined;
        pendingRun = undefined;
        return apply(view);
      });
      pendingRun = run;
      queue = run.catch((e: Error) => opts.log?.warn({ reason: e.message }, 'bundle endpoint not updated; serving the previous bundles'));
      return run;
    },
    document(td) {
      const d = docs.get(td);
      return d && { body: d.body, sequence: d.sequence };
    },
    problems: () => problems,
    svid(td) {
      const s = svids.get(td)?.svid;
      if (!s) return undefined;
      const { keyPem: _key, ...rest } = s;
      return rest;
    },
    close: async () => {
      closed = true;
      for (const e of svids.values()) clearTimeout(e.timer);
      for (const f of webFiles) unwatchFile(f);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
