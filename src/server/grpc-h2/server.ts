// A minimal gRPC server on node:http2: routes each stream by :path to its method and leaves the
// rest to ServerCall. It replaces grpc-js' server, whose per-call objects (interceptor chain,
// Duplex stream, metadata, deadline timers) cost more CPU and memory than everything mesh-sds
// does per proxy (SPEC §8).
import http2, { type Http2SecureServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { respondWithStatus, ServerCall, type CallContext, type MethodCodec } from './call.js';
import type { Socket } from 'node:net';
import { parseGrpcTimeout } from './deadline.js';
import { CROWDED_STALL_MS, ReadBudget, UNFINISHED_MESSAGE_TIMEOUT_MS } from './framing.js';
import { countRefusedStream, SessionSet, type KeepaliveOptions } from './sessions.js';
import { Status, type CallStatus } from './status.js';

export interface GrpcServerOptions extends Partial<KeepaliveOptions> {
  /** Larger request messages end the call with RESOURCE_EXHAUSTED (1 MiB). */
  maxMessageBytes?: number;
  /**
   * Unfinished request bytes held across all calls before a call adding to them is refused (64 MiB,
   * at least maxMessageBytes). Each connection may hold a quarter of it (at least twice
   * maxMessageBytes) while its messages arrive, and twice maxMessageBytes of messages that got no
   * bytes for 5 s: past that those calls are ended at the next sweep.
   */
  maxUnfinishedRequestBytes?: number;
  /** A call whose unfinished request message gets no further bytes this long is ended (30 s; checked at each keepalive sweep). */
  unfinishedMessageTimeoutMs?: number;
  /** On a connection holding more than twice maxMessageBytes unfinished: how long a message may get no bytes (5 s). */
  crowdedUnfinishedMessageTimeoutMs?: number;
  /**
   * A unary or server-streaming call whose one request (message and half-close) is not in this
   * long after it opened is ended with INVALID_ARGUMENT (30 s; checked at each keepalive sweep):
   * a peer that opens calls and never finishes them would hold each, headers included, for good.
   */
  firstRequestTimeoutMs?: number;
  /** Unsent response bytes at which a call is ended with RESOURCE_EXHAUSTED (default 8 MiB, at least 64 KiB); see CallContext. */
  maxUnsentBytes?: number;
  onRefusedHeader?: CallContext['onRefusedHeader'];
  /** A TLS client that has not completed its handshake this long after connecting is dropped (10 s, as the admin and bundle endpoints). */
  tlsHandshakeTimeoutMs?: number;
  /**
   * Connections held at once; one more is closed as it arrives (undefined: no limit). Each holds a
   * file descriptor: past the process's limit the store, state files and admin port fail too.
   */
  maxConnections?: number;
  /** A connection was sent away (GOAWAY ENHANCE_YOUR_CALM) for refusing too many of its streams in a window. */
  onTooManyRefusedStreams?: (peer: string, refused: number) => void;
  /** A connection was closed at once because maxConnections are open (`peer` is its address). */
  onConnectionLimit?: (peer: string, limit: number) => void;
  /** A connection ended before any gRPC: not HTTP/2 (an HTTP/1.x client), or a failed TLS handshake. `peer` is its address. */
  onRefusedConnection?: (peer: string, reason: string) => void;
  /** A connection node closed (GOAWAY) for a frame flood: invalid frames, or answers to SETTINGS/PING it left unread. */
  onFloodedConnection?: (peer: string, reason: string) => void;
}

/** The floods node detects (its session error), in words: any other session error is a lost connection, and no news. */
function floodReason(err: Error & { code?: string }): string | undefined {
  if (err.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') return 'HTTP/2 flood: too many invalid frames (empty DATA frames, or frames HTTP/2 does not allow where they came)';
  if (/flooding was detected/i.test(err.message)) return 'HTTP/2 flood: more SETTINGS, PING or RST_STREAM answers queued than the peer reads';
  return undefined;
}

/** A connection whose first bytes were not HTTP/2's preface, in words that point at the usual misconfiguration. */
const notHttp2Reason = (tls: boolean): string =>
  `not HTTP/2${tls ? '' : ' (or TLS to a plaintext listener)'}: an HTTP/1.x request or other bytes; an Envoy SDS cluster needs http2_protocol_options`;

/** Why a TLS handshake failed: plaintext on the TLS listener, and a client offering no ALPN h2, are named as such. */
function tlsFailureReason(err: Error): string {
  if (/wrong version number|http request|unknown protocol/i.test(err.message)) return 'TLS handshake failed: the client sent plaintext to the TLS listener';
  // OpenSSL's own line (a file and a line number of its source) said nothing an operator could act on.
  if (/no application protocol/i.test(err.message)) return `TLS handshake failed: the client does not offer ALPN "h2" (an HTTP/1.x client); an Envoy SDS cluster needs http2_protocol_options`;
  return `TLS handshake failed: ${err.message}`;
}

/** A TLS client that offered no ALPN at all: node would answer it in HTTP/1 and tell no one. */
const NO_ALPN_REASON = 'TLS without ALPN "h2": an HTTP/1.x client, or one that does not offer HTTP/2; an Envoy SDS cluster needs http2_protocol_options';

/** Where to listen: a unix socket path, or a host and port (0: any free port). */
export type ListenTarget = { path: string } | { host: string; port: number };

export interface TlsKeyPair {
  cert: Buffer;
  key: Buffer;
}

type Starter = (call: ServerCall<any, any>) => void;
interface Route {
  codec: MethodCodec<any, any>;
  start: Starter;
}

/**
 * Collects the one request of a unary or server-streaming call, then hands the call to its
 * handler (which may set its own listener, e.g. to hear of a cancel). Statuses as grpc-js sends them.
 */
class SingleRequest<Req> {
  private request: Req | undefined;
  private received = false;
  readonly openedMs = Date.now();

  constructor(
    private readonly call: ServerCall<Req, any>,
    private readonly path: string,
    private readonly handler: (call: ServerCall<Req, any>, request: Req) => void,
    /** Calls still waiting for their request, swept by the server (see firstRequestTimeoutMs). */
    private readonly waiting: Set<SingleRequest<any>>,
  ) {
    waiting.add(this);
  }

  onMessage(request: Req): void {
    if (this.received) {
      this.waiting.delete(this);
      return this.call.end({ code: Status.UNIMPLEMENTED, details: `Received a second request message for server streaming method ${this.path}` });
    }
    this.received = true;
    this.request = request;
  }

  onHalfClose(): void {
    this.waiting.delete(this);
    if (!this.received) return this.call.end({ code: Status.UNIMPLEMENTED, details: `Received no request message for server streaming method ${this.path}` });
    this.call.listener = undefined;
    this.handler(this.call, this.request!);
  }

  onCancel(): void {
    this.waiting.delete(this);
  }

  /** Ends the call if its request is not complete `limitMs` after it opened; true if it was ended or is gone. */
  endIfLate(now: number, limitMs: number): boolean {
    if (!this.call.active) return true;
    if (now - this.openedMs < limitMs) return false;
    this.call.end({ code: Status.INVALID_ARGUMENT, details: `no complete request (its message and the end of the client's stream) within ${limitMs / 1000} s of opening the call to ${this.path}` });
    return true;
  }
}

/**
 * Streams one connection may hold open. Envoy opens a few; a client multiplexing many proxies
 * (the bench: 10,000 over 8 connections) about 1,250. Advertised, so a client queues the next ones
 * instead of having them refused: with 100,000 advertised, node's session memory (32 MB, ~2.4 KB
 * per stream) ran out near 13,500 streams, it refused the next 101 with ENHANCE_YOUR_CALM and then
 * failed the whole connection with GOAWAY INTERNAL_ERROR, every stream on it included.
 */
export const MAX_STREAMS_PER_CONNECTION = 10_000;
/**
 * node's accounting cap per connection (MB): the streams above (~24 MB) and what is being sent
 * to them. It only bounds; nothing is reserved.
 */
const MAX_SESSION_MEMORY_MB = 64;

const SETTINGS = {
  maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION,
  // Envoy's request headers plus a bearer token with its claims fit many times over.
  maxHeaderListSize: 64 * 1024,
};

function ignore(): void {}

/** Whatever the client still sends on a refused stream is read and dropped, not left buffered. */
function dropRequest(stream: ServerHttp2Stream): void {
  stream.on('error', ignore);
  stream.resume();
}

/** How long a refusal's body may take to leave before its stream is closed anyway. */
const REFUSAL_FLUSH_MS = 2000;
const UNSUPPORTED_CONTENT_TYPE = 'unsupported content-type: a gRPC request has application/grpc, application/grpc+<subtype> or application/grpc;<params> (grpc-web needs a translating proxy)\n';

/** grpc-go's rule: "application/grpc" alone or followed by "+" or ";" (not grpc-web, not "application/grpcfoo"). */
function isGrpcContentType(value: unknown): boolean {
  if (typeof value !== 'string' || !value.startsWith('application/grpc')) return false;
  const next = value.charAt('application/grpc'.length);
  return next === '' || next === '+' || next === ';';
}

/** A stream that never becomes a call: a trailers-only status. */
function refuseCall(stream: ServerHttp2Stream, status: CallStatus): void {
  countRefusedStream(stream);
  dropRequest(stream);
  respondWithStatus(stream, status);
}

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly context: CallContext;
  private readonly sessions: SessionSet;
  private http: Http2Server | Http2SecureServer | undefined;
  private shuttingDown: (() => void)[] | undefined;
  private readonly onRefusedConnection: GrpcServerOptions['onRefusedConnection'];
  private readonly onFloodedConnection: GrpcServerOptions['onFloodedConnection'];
  private readonly tlsHandshakeTimeoutMs: number;
  private readonly maxConnections: number | undefined;
  private readonly onConnectionLimit: GrpcServerOptions['onConnectionLimit'];
  private readonly waitingForRequest = new Set<SingleRequest<any>>();
  private readonly firstRequestMs: number;
  /** Runs while calls wait for their request (see firstRequestTimeoutMs). */
  private waitingSweep: NodeJS.Timeout | undefined;

  /** Bytes of unfinished request messages held across every connection (the server-wide read budget in use). */
  get unfinishedRequestBytes(): number {
    return this.context.readBudget.used;
  }

  constructor(opts: GrpcServerOptions = {}) {
    this.onRefusedConnection = opts.onRefusedConnection;
    this.onFloodedConnection = opts.onFloodedConnection;
    this.tlsHandshakeTimeoutMs = opts.tlsHandshakeTimeoutMs ?? 10_000;
    this.maxConnections = opts.maxConnections;
    this.onConnectionLimit = opts.onConnectionLimit;
    const maxMessageBytes = opts.maxMessageBytes ?? 1024 * 1024;
    this.context = {
      maxMessageBytes,
      readBudget: new ReadBudget(Math.max(maxMessageBytes, opts.maxUnfinishedRequestBytes ?? 64 * 1024 * 1024)),
      // At least a stream's buffer (16 KiB) and then some: a read pause below it would wait for a
      // 'drain' that only a full buffer emits.
      maxUnsentBytes: Math.max(64 * 1024, opts.maxUnsentBytes ?? 8 * 1024 * 1024),
      onRefusedHeader: opts.onRefusedHeader,
    };
    this.sessions = new SessionSet({
      keepaliveTimeMs: opts.keepaliveTimeMs ?? 60_000,
      keepaliveTimeoutMs: opts.keepaliveTimeoutMs ?? 20_000,
      maxPeerPingsPerWindow: opts.maxPeerPingsPerWindow ?? 20,
      peerPingWindowMs: opts.peerPingWindowMs ?? 10_000,
      maxConnectionIdleMs: opts.maxConnectionIdleMs ?? 20_000,
      maxRefusedStreamsPerWindow: opts.maxRefusedStreamsPerWindow ?? 100,
    });
    const onTooMany = opts.onTooManyRefusedStreams;
    this.sessions.onTooManyRefused = (session, refused) => onTooMany?.(session.socket?.remoteAddress ?? 'unknown', refused);
    const budget = this.context.readBudget;
    const stallMs = opts.unfinishedMessageTimeoutMs ?? UNFINISHED_MESSAGE_TIMEOUT_MS;
    const crowdedMs = Math.min(stallMs, opts.crowdedUnfinishedMessageTimeoutMs ?? CROWDED_STALL_MS);
    this.sessions.onSweep = (now) => budget.endStalled(now, stallMs, crowdedMs);
    this.firstRequestMs = opts.firstRequestTimeoutMs ?? 30_000;
  }

  /** A bidirectional-streaming method: `start` sets the call's listener. */
  addBidi<Req, Res>(path: string, codec: MethodCodec<Req, Res>, start: (call: ServerCall<Req, Res>) => void): void {
    this.routes.set(path, { codec, start });
  }

  /**
   * A unary or server-streaming method: the handler gets the call once its one request is in.
   * `admit`, when given, runs as the call opens (headers only) and may end it with a status at once.
   */
  addSingleRequest<Req, Res>(
    path: string,
    codec: MethodCodec<Req, Res>,
    handler: (call: ServerCall<Req, Res>, request: Req) => void,
    admit?: (call: ServerCall<Req, Res>) => CallStatus | undefined,
  ): void {
    this.routes.set(path, {
      codec,
      start: (call: ServerCall<Req, Res>) => {
        const refused = admit?.(call);
        if (refused) return call.end(refused);
        call.listener = new SingleRequest(call, path, handler, this.waitingForRequest);
        this.sweepWaitingCalls();
      },
    });
  }

  private sweepWaitingCalls(): void {
    if (this.waitingSweep) return;
    this.waitingSweep = setInterval(() => {
      const now = Date.now();
      for (const w of this.waitingForRequest) if (w.endIfLate(now, this.firstRequestMs)) this.waitingForRequest.delete(w);
      if (this.waitingForRequest.size > 0) return;
      clearInterval(this.waitingSweep);
      this.waitingSweep = undefined;
    }, Math.min(5000, this.firstRequestMs));
    this.waitingSweep.unref();
  }

  /** Serves another key pair to new connections (a rotated listener certificate); open ones keep theirs. */
  setTlsKeyPair(pair: TlsKeyPair): void {
    const http = this.http as Http2SecureServer | undefined;
    if (!http || typeof http.setSecureContext !== 'function') throw new Error('the listener does not serve TLS');
    http.setSecureContext({ cert: pair.cert, key: pair.key });
  }

  /** Starts listening; resolves with the bound TCP port (undefined on a unix socket). */
  listen(target: ListenTarget, tls?: TlsKeyPair): Promise<number | undefined> {
    // Rapid reset (CVE-2023-44487) is stopped by nghttp2 (>= 1.57, in node >= 20.8.1): a token
    // bucket on incoming RST_STREAM (burst 1000, 33/s), then GOAWAY. Node 20 has no option for it
    // (streamResetBurst/streamResetRate came later, with those defaults) and we need none: every
    // stream let through ends as a cancelled call. maxSessionRejectedStreams and
    // maxSessionInvalidFrames keep node's defaults (100, 1000); they bound other floods. Node stops
    // reading a connection nghttp2 gave up on, so its socket goes at the next keepalive ping.
    const options = { settings: SETTINGS, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    // handshakeTimeout: node's default (120 s) let a client that never sends a ClientHello hold its socket for two minutes.
    const http = tls
      ? http2.createSecureServer({ ...options, cert: tls.cert, key: tls.key, ALPNProtocols: ['h2'], allowHTTP1: false, handshakeTimeout: this.tlsHandshakeTimeoutMs })
      : http2.createServer(options);
    this.http = http;
    if (this.maxConnections !== undefined) {
      // Counted by node per accepted socket (TLS handshakes included); the one over is destroyed
      // as it arrives, and 'drop' says so.
      http.maxConnections = this.maxConnections;
      const limit = this.maxConnections;
      http.on('drop', (data?: { remoteAddress?: string }) => this.onConnectionLimit?.(data?.remoteAddress ?? 'unknown', limit));
    }
    // The address is read while the socket is there: a refused session has lost it by its error.
    const peers = new WeakMap<object, string>();
    // The socket under each session (session.socket is a proxy that may not destroy it): node
    // makes the session inside its own listener of this event, so this one, first, sees it just before.
    let accepted: Socket | undefined;
    http.prependListener(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      accepted = socket;
    });
    http.on('session', (session) => {
      this.sessions.add(session, accepted);
      accepted = undefined;
      if (this.onRefusedConnection || this.onFloodedConnection) peers.set(session, session.socket?.remoteAddress ?? 'unknown');
    });
    http.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      this.sessions.streamOpened(stream);
      this.route(stream, headers, rawHeaders);
    });
    // A peer's garbage (bad preface, failed TLS handshake) ends its own connection only; the
    // operator hears of it (an Envoy cluster without HTTP/2 looks like this), rate-limited there.
    const refused = this.onRefusedConnection;
    // Only a connection that never spoke HTTP/2 (its preface was not HTTP/2's): a reset of a
    // served connection (a load balancer, a network blip) is a session error too, and no news.
    // A flood node detected is news too: else a connection sent away mid-attack left no trace.
    const flooded = this.onFloodedConnection;
    http.on('sessionError', (err: Error, session?: object) => {
      const peer = (session && peers.get(session)) ?? 'unknown';
      if (/bad client magic/i.test(err.message)) return refused?.(peer, notHttp2Reason(!!tls));
      const flood = floodReason(err);
      if (flood) flooded?.(peer, flood);
    });
    if (tls) {
      (http as Http2SecureServer).on('tlsClientError', (err: Error & { code?: string }, socket?: { remoteAddress?: string }) => {
        // Connected and gone before a handshake (a TCP health check, a port scan): nothing to fix.
        if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return;
        refused?.(socket?.remoteAddress ?? 'unknown', tlsFailureReason(err));
      });
      // With a listener node leaves the socket to it: it is closed here, whoever is told.
      (http as Http2SecureServer).on('unknownProtocol', (socket: Socket) => {
        refused?.(socket.remoteAddress ?? 'unknown', NO_ALPN_REASON);
        socket.destroy();
      });
    }
    return new Promise((resolve, reject) => {
      http.once('error', reject);
      const listening = () => {
        http.off('error', reject);
        const address = http.address();
        resolve(typeof address === 'object' && address ? address.port : undefined);
      };
      if ('path' in target) listenOwnerOnly(http, target.path, listening);
      else http.listen(target.port, target.host, listening);
    });
  }

  private route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    if (this.shuttingDown) return void stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    const contentType = headers['content-type'];
    const path = headers[':path'] ?? '';
    let refusal: number | undefined;
    if (headers[':method'] !== 'POST') refusal = 405;
    else if (!isGrpcContentType(contentType)) refusal = 415;
    const route = this.routes.get(path);
    if (refusal !== undefined) {
      countRefusedStream(stream);
      dropRequest(stream);
      // Not a gRPC call, so no gRPC client will end its half: once the answer is sent, so is the stream.
      const close = () => {
        try {
          stream.close(http2.constants.NGHTTP2_NO_ERROR);
        } catch {
          // Already closed.
        }
      };
      try {
        if (refusal === 415) {
          // Said in the body: a plain HTTP client (grpc-web, curl) reads no grpc-message.
          stream.respond({ ':status': 415, 'content-type': 'text/plain; charset=utf-8' });
          // A peer that never opens its window would keep the stream (and its place) open: close()
          // waits for the body to leave, destroy() resets the stream at once.
          const stuck = setTimeout(() => stream.destroy(), REFUSAL_FLUSH_MS).unref();
          stream.end(UNSUPPORTED_CONTENT_TYPE, () => (clearTimeout(stuck), close()));
        } else {
          stream.respond({ ':status': refusal }, { endStream: true });
          close();
        }
      } catch {
        // Already closed.
      }
      return;
    }
    if (!route) return refuseCall(stream, { code: Status.UNIMPLEMENTED, details: `The server does not implement the method ${path}` });
    // One property lookup for calls without a deadline (nearly all); a timer only for those with one.
    const timeout = headers['grpc-timeout'];
    let deadlineMs: number | undefined;
    if (timeout !== undefined) {
      deadlineMs = parseGrpcTimeout(String(timeout));
      // grpc-js' status and message for it (checked after the method, as grpc-js does).
      if (deadlineMs === undefined) return refuseCall(stream, { code: Status.INTERNAL, details: `Invalid grpc-timeout value "${String(timeout)}"` });
    }
    const call = new ServerCall(stream, route.codec, rawHeaders, this.context);
    if (deadlineMs !== undefined) call.setDeadline(deadlineMs);
    try {
      route.start(call);
    } catch {
      call.end({ code: Status.UNKNOWN, details: 'Unknown error' });
    }
  }

  /** Stops accepting; each connection gets GOAWAY and closes once its streams are done; then `done`. */
  tryShutdown(done: () => void): void {
    if (this.shuttingDown) return void this.shuttingDown.push(done);
    this.shuttingDown = [done];
    let pending = 2;
    const step = () => {
      if (--pending > 0) return;
      this.sessions.stop();
      clearInterval(this.waitingSweep);
      this.waitingSweep = undefined;
      for (const cb of this.shuttingDown ?? []) cb();
    };
    const sessionsGone = () => {
      this.sessions.onEmpty = undefined;
      step();
    };
    this.sessions.onEmpty = sessionsGone;
    if (this.sessions.size === 0) sessionsGone();
    for (const s of [...this.sessions.sessions()]) s.close();
    if (this.http?.listening) this.http.close(() => step());
    else step();
  }

  /** Ends every connection now (streams are reset). */
  forceShutdown(): void {
    if (!this.shuttingDown) this.shuttingDown = [];
    if (this.http?.listening) this.http.close();
    for (const s of [...this.sessions.sessions()]) s.destroy();
    this.sessions.stop();
    clearInterval(this.waitingSweep);
    this.waitingSweep = undefined;
  }
}

/**
 * Binds a unix socket that only its owner can connect to from the moment it exists: permissions
 * are checked at connect, so a connection made under the process' umask (0777 with umask 000)
 * outlived the chmod to 0600 that followed, and with --auth none served any proxy's key. Node binds
 * inside listen(), synchronously, so the umask is narrowed for that call alone (the caller then sets
 * 0600, or 0660 once the socket has its group). 077, not 177: the umask is the process', and a folder
 * the thread pool makes meanwhile (a state key's, mode 0700) must keep its owner's search bit.
 */
function listenOwnerOnly(http: Http2Server | Http2SecureServer, path: string, listening: () => void): void {
  const umask = process.umask(0o077);
  try {
    http.listen(path, listening);
  } finally {
    process.umask(umask);
  }
}
