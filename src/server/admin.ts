// Admin HTTP: health, readiness, Prometheus metrics and debug views (SPEC §7).
// Debug views are metadata only; scrubSecrets() is a second line of defence in case a callback
// ever hands over an object that still carries key material or a token.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { isLoopbackOrUnix } from './auth.js';
import { scrubCredentials } from './grpc-logging.js';
import { isSecretField } from './secret-fields.js';
import { formatReadiness, type ReadinessReport } from './readiness.js';
import { listenOn, parseHostPort, stalledClientLimits } from '../api/host-port.js';
import { capConnectionsFairly } from '../api/fair-connections.js';
import { OncePer } from '../api/once-per.js';
import { pacedRender } from './metrics-pacing.js';

export interface AdminDebugSources {
  proxies: () => unknown;
  secrets: () => unknown;
  identities?: () => unknown;
}

export interface AdminServerOptions {
  /** `host:port` or `[v6]:port`; a bare `port` or `:port` binds 127.0.0.1. Port 0 picks a free port. */
  listen: string;
  metrics: Metrics;
  /** /readyz: 200 when every check passes; `?verbose` lists each check (SPEC §6). */
  readiness: () => ReadinessReport;
  /** Callbacks may return a value or a promise of one. */
  debug: AdminDebugSources;
  /**
   * `POST /rotate[?proxy=MESH.NAME]`: reissue the SVID of one proxy, or of every connected proxy
   * (key compromise, CA change drills). Returns how many proxies were rotated. Not called for a
   * request identical to one accepted less than ROTATE_COALESCE_MS ago (answered `coalesced`).
   */
  rotate?: (proxy?: string) => number;
  /**
   * Whether /rotate and /debug/* answer clients on other hosts (`--admin-remote-debug`). Off: only
   * loopback clients; /healthz, /readyz and /metrics answer everyone either way.
   */
  remoteDebug?: boolean;
  logger: Logger;
}

export interface AdminServer {
  /** The bound IP address, e.g. `127.0.0.1`. */
  address: string;
  port: number;
  /** `http://host:port` ready to use. */
  url: string;
  close(): Promise<void>;
}

const REDACTED_ITEM = '[REDACTED]';

/**
 * A private key PEM block with a body (cut short or not). A header alone, or a message naming the
 * kind (`PEM block 1 is a PRIVATE KEY, not a CERTIFICATE`), carries no key and is worth showing.
 */
const PRIVATE_KEY_WITH_BODY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(\s|\\[rn])*[A-Za-z0-9+/=]/;

/**
 * A JSON-safe deep copy of `value` without secrets: properties the logger also drops (key, caKey,
 * keyPem, token, accessToken, password, authorization…: isSecretField) are dropped, as is any
 * property whose string value holds a private key PEM block with a body, and any KeyObject; in
 * other strings (a NACK detail, a name a proxy asked for) tokens, key headers and base64 key bytes
 * are replaced by `[REDACTED]` (scrubCredentials). In arrays a secret item becomes `[REDACTED]` so
 * indexes stay meaningful. Maps become objects, Sets arrays, Dates ISO strings, Buffers a byte
 * count; cycles become `[Circular]`.
 */
export function scrubSecrets(value: unknown): unknown {
  const seen = new WeakSet<object>();
  const DROP = Symbol('drop');

  const walk = (v: unknown): unknown => {
    if (v === null) return null;
    switch (typeof v) {
      case 'string':
        return PRIVATE_KEY_WITH_BODY.test(v) ? DROP : scrubCredentials(v);
      case 'number':
        return Number.isFinite(v) ? v : String(v);
      case 'boolean':
        return v;
      case 'bigint':
        return v.toString();
      case 'undefined':
      case 'function':
      case 'symbol':
        return DROP;
    }
    const o = v as object;
    if (o instanceof KeyObject) return DROP;
    if (o instanceof Date) return Number.isNaN(o.getTime()) ? null : o.toISOString();
    if (Buffer.isBuffer(o) || o instanceof Uint8Array) return `<${o.byteLength} bytes>`;
    if (seen.has(o)) return '[Circular]';
    seen.add(o);
    try {
      if (Array.isArray(o) || o instanceof Set) {
        return [...(o as Iterable<unknown>)].map((item) => {
          const w = walk(item);
          return w === DROP ? (typeof item === 'string' ? REDACTED_ITEM : null) : w;
        });
      }
      if (!(o instanceof Map) && typeof (o as { toJSON?: unknown }).toJSON === 'function') {
        const j = (o as { toJSON: () => unknown }).toJSON();
        const w = j === o ? '[Circular]' : walk(j);
        return w === DROP ? null : w;
      }
      const entries: [string, unknown][] =
        o instanceof Map ? [...o.entries()].map(([k, val]) => [String(k), val]) : Object.entries(o);
      const out: Record<string, unknown> = {};
      for (const [k, val] of entries) {
        if (isSecretField(k)) continue;
        const w = walk(val);
        if (w !== DROP) out[k] = w;
      }
      return out;
    } finally {
      seen.delete(o);
    }
  };

  const r = walk(value);
  return r === DROP ? null : r;
}

function send(res: ServerResponse, code: number, contentType: string, body: string): void {
  res.writeHead(code, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Why a POST /rotate is not one of its two forms (bare, or ?proxy=MESH.NAME once), or undefined. */
export function rotateRequestProblem(params: URLSearchParams, req: Pick<IncomingMessage, 'headers'>): string | undefined {
  const length = req.headers['content-length'];
  if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined) {
    return 'POST /rotate takes no body: name one proxy with ?proxy=MESH.NAME, or send no parameter to rotate every proxy';
  }
  for (const name of params.keys()) if (name !== 'proxy') return `unknown parameter ${JSON.stringify(name.slice(0, 64))}: only ?proxy=MESH.NAME`;
  const proxies = params.getAll('proxy');
  if (proxies.length > 1) return 'proxy given more than once: rotate one proxy per request';
  if (proxies.length === 1 && proxies[0]!.trim() === '') return 'proxy is empty: name one proxy (?proxy=MESH.NAME), or send no parameter to rotate every proxy';
  return undefined;
}

/** Connections the admin server keeps open at once; one more closes one of the client that holds the most (see capConnectionsFairly). */
export const ADMIN_MAX_CONNECTIONS = 128;

/**
 * A POST /rotate identical to one accepted less than this long ago reissues nothing: 200 requests
 * in 2 s reissued one proxy's SVID 119 times (each a key generation and a push to every stream).
 */
export const ROTATE_COALESCE_MS = 1000;

/** /rotate changes every proxy's identity and /debug/* lists every proxy: kept from browsers and, by default, other hosts. */
function isPrivilegedPath(path: string): boolean {
  return path === '/rotate' || path.startsWith('/debug/');
}

/**
 * Headers a reverse proxy adds to what it relays (curl, the kubelet and Prometheus send none). An
 * Envoy sidecar (Istio, Kuma) relays an inbound HTTP/1.1 request from loopback (127.0.0.6) with
 * X-Forwarded-Proto (Envoy sends it upstream on HTTP/1.1) but, unless its listener sets
 * use_remote_address, no X-Forwarded-For: any pod of the mesh could rotate every proxy and read /debug/*.
 */
const RELAY_HEADERS: readonly string[] = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-client-cert', 'x-envoy-external-address', 'via'];

/** A peer address as node reports it (`127.0.0.1`, `::1`, `::ffff:127.0.0.1` on a dual-stack socket). */
function isLoopbackPeer(address: string | undefined): boolean {
  if (!address || isIP(address) === 0) return false;
  return isLoopbackOrUnix(isIP(address) === 6 ? `[${address}]:0` : `${address}:0`);
}

/** The host name of a Host header without its port (`[::1]:80` gives `::1`), lowercased. */
function hostHeaderName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.lastIndexOf(':');
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

/**
 * Why a request for /rotate or /debug/* is refused, or undefined. Browsers are refused outright:
 * any page can make one POST here or, having rebound its own DNS name to 127.0.0.1, read here.
 * They mark their requests (Origin, Sec-Fetch-Site) and send the page's name as Host; curl, the
 * kubelet and Prometheus send neither header, and an address or `localhost` as Host.
 */
export function privilegedRequestProblem(req: Pick<IncomingMessage, 'headers' | 'socket'>, remoteDebug: boolean): { kind: 'browser' | 'remote' | 'dns-rebinding'; message: string } | undefined {
  const site = req.headers['sec-fetch-site'];
  if (req.headers.origin !== undefined || (site !== undefined && site !== 'none' && site !== 'same-origin')) {
    return { kind: 'browser', message: 'refused: sent by a web page (Origin or Sec-Fetch-Site header); use curl or another client that is not a browser' };
  }
  // A reverse proxy on this host (a sidecar) connects from loopback for clients that are not.
  const forwarded = RELAY_HEADERS.some((h) => req.headers[h] !== undefined);
  if (!isLoopbackPeer(req.socket.remoteAddress) || forwarded) {
    if (remoteDebug) return undefined;
    return { kind: 'remote', message: 'refused: /rotate and /debug/* answer only clients on this host (loopback); start serve with --admin-remote-debug (MESH_SDS_ADMIN_REMOTE_DEBUG=true) to open them to other hosts' };
  }
  // DNS rebinding: a page whose name now resolves to 127.0.0.1 still sends that name as Host.
  const host = req.headers.host;
  if (host !== undefined) {
    const name = hostHeaderName(host);
    if (name !== 'localhost' && isIP(name) === 0) {
      return {
        kind: 'dns-rebinding',
        message: `refused: Host ${JSON.stringify(host.slice(0, 100))} is neither localhost nor an IP address (a DNS-rebinding page sends its own name); use http://127.0.0.1:PORT or http://localhost:PORT`,
      };
    }
  }
  return undefined;
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = parseHostPort(opts.listen, 'admin');
  const log = opts.logger;
  // Each view is paced as /metrics is: /debug/proxies of 10,000 proxies is 15 MB built on the main
  // thread (450 ms), so an operator's `watch curl` must not hold that thread the whole time.
  const debugView = (source: (() => unknown) | undefined) => source && pacedRender(async () => JSON.stringify(scrubSecrets(await source()), null, 2) + '\n');
  const debugRoutes: Record<string, (() => Promise<string>) | undefined> = {
    '/debug/proxies': debugView(opts.debug.proxies),
    '/debug/secrets': debugView(opts.debug.secrets),
    '/debug/identities': debugView(opts.debug.identities),
  };

  /** One limiter per kind of refusal: a burst of one kind does not hide the first of another. */
  const refusals = { browser: new OncePer(1000), remote: new OncePer(1000), 'dns-rebinding': new OncePer(1000) };
  /** When the last rotation of each scope (`*` or a proxy) was accepted; kept for ROTATE_COALESCE_MS. */
  const rotationsAccepted = new Map<string, number>();
  const coalescedLog = new OncePer(1000);
  const renderMetrics = pacedRender(() => opts.metrics.render());

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      // A request target WHATWG URL rejects (`//%`, `http://[/`) is the client's error.
      return send(res, 400, 'text/plain; charset=utf-8', 'malformed request target\n');
    }
    const path = url.pathname;
    if (isPrivilegedPath(path)) {
      const refused = privilegedRequestProblem(req, opts.remoteDebug ?? false);
      if (refused) {
        refusals[refused.kind].log((skipped) =>
          log.warn({ path, peer: req.socket.remoteAddress, kind: refused.kind, reason: scrubCredentials(refused.message), alsoRefusedSinceLastLine: skipped }, 'admin request refused'),
        );
        return send(res, 403, 'application/json; charset=utf-8', JSON.stringify({ error: refused.message }) + '\n');
      }
    }
    if (path === '/rotate' && opts.rotate) {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
      }
      // Rotating every proxy is one bare POST; anything that looks like it meant one proxy but does
      // not name it (an empty or repeated ?proxy=, another parameter, a body) is refused, not widened.
      const problem = rotateRequestProblem(url.searchParams, req);
      if (problem) return send(res, 400, 'application/json; charset=utf-8', JSON.stringify({ error: problem }) + '\n');
      const proxy = url.searchParams.get('proxy') ?? undefined;
      const scope = proxy ?? '*';
      const now = Date.now();
      const acceptedAt = rotationsAccepted.get(scope);
      if (acceptedAt !== undefined && now - acceptedAt < ROTATE_COALESCE_MS) {
        // Answered 200, not 429: the reissue this asks for started less than a second ago, from the
        // CA of now, so what the caller wants is under way. An error would make a retrying script or
        // a drill run twice report a failure that did not happen, and invite more retries.
        coalescedLog.log((skipped) => log.info({ proxy: scope, acceptedMsAgo: now - acceptedAt, alsoCoalescedSinceLastLine: skipped }, 'rotation coalesced with an identical one accepted less than 1 s ago; nothing reissued'));
        return send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ rotated: 0, coalesced: true }) + '\n');
      }
      const rotated = opts.rotate(proxy);
      if (proxy && rotated === 0) return send(res, 404, 'application/json; charset=utf-8', JSON.stringify({ error: `no connected proxy ${proxy}` }) + '\n');
      for (const [s, at] of rotationsAccepted) if (now - at >= ROTATE_COALESCE_MS) rotationsAccepted.delete(s);
      rotationsAccepted.set(scope, now);
      log.info({ proxy: scope, rotated }, 'rotation requested');
      return send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ rotated }) + '\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
      return;
    }
    if (path === '/healthz') return send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
    if (path === '/readyz') {
      const report = opts.readiness();
      return send(res, report.ready ? 200 : 503, 'text/plain; charset=utf-8', formatReadiness(report, url.searchParams.has('verbose')));
    }
    if (path === '/metrics') return send(res, 200, opts.metrics.contentType, await renderMetrics());
    const view = debugRoutes[path];
    if (view) return send(res, 200, 'application/json; charset=utf-8', await view());
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
  };

  // The admin port may be open to the pod network (probes, scrapes): a stalled client is dropped after 10 s.
  const server = createServer(stalledClientLimits(10_000), (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, path: scrubCredentials((req.url ?? '').slice(0, 2048)) }, 'admin request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // Short-lived admin requests; do not let idle keep-alive sockets hold close() up.
  server.keepAliveTimeout = 5000;
  // Probes and scrapes need a few connections; without a cap, clients of an admin port open to the
  // pod network could hold every descriptor the gRPC listener needs for proxies. Not node's
  // maxConnections: one client holding all of them would shut the kubelet's probes out.
  const roomMadeLog = new OncePer(1000);
  capConnectionsFairly(server, ADMIN_MAX_CONNECTIONS, (e) =>
    roomMadeLog.log((skipped) =>
      log.warn(
        { limit: ADMIN_MAX_CONNECTIONS, peer: e.peer, peerConnections: e.peerConnections, newcomer: e.newcomer, alsoClosedSinceLastLine: skipped },
        e.newcomer ? 'admin connection closed as it arrived: its client holds the most and has no other idle one' : 'admin connection closed to make room for a new one: its client holds the most',
      ),
    ),
  );

  const { address: addr, urlHost } = await listenOn(server, host, port);
  if (!isLoopbackOrUnix(addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`)) {
    if (opts.remoteDebug) log.warn({ address: addr.address, port: addr.port }, 'admin server is reachable from other hosts and --admin-remote-debug opens /rotate and /debug/* to them');
    else log.info({ address: addr.address, port: addr.port }, 'admin server is reachable from other hosts: /healthz, /readyz and /metrics answer them, /rotate and /debug/* only loopback clients');
  }
  log.info({ address: addr.address, port: addr.port }, 'admin server listening');

  return {
    address: addr.address,
    port: addr.port,
    url: `http://${urlHost}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
