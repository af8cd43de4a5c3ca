// The live HTTP/2 connections of one server, with keepalive done by one sweep timer for all of
// them (no timer per connection or stream): each connection is pinged every keepaliveTimeMs and
// destroyed when an answer takes longer than keepaliveTimeoutMs; a client that pings faster than
// a flood limit loses its connection. The same sweep closes connections that hold no stream for
// maxConnectionIdleMs (grpc-go's MaxConnectionIdle): a peer that only answers pings would
// otherwise hold a file descriptor for good, and 20,000 of them exhausted the process's.
import { constants, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';

export interface KeepaliveOptions {
  /** How often each connection is pinged (grpc-js keepalive_time_ms). */
  keepaliveTimeMs: number;
  /** How long a ping may go unanswered before the connection is dropped (keepalive_timeout_ms). */
  keepaliveTimeoutMs: number;
  /** Client pings allowed per window before the connection is dropped as a flood. */
  maxPeerPingsPerWindow: number;
  peerPingWindowMs: number;
  /**
   * A connection with no open stream for this long (since its last stream ended, or since it
   * connected) gets GOAWAY and is closed. An Envoy holds its SDS streams open for as long as it
   * runs; one that went quiet reconnects when it needs to.
   */
  maxConnectionIdleMs: number;
  /**
   * Streams refused (authentication failed, unknown method, over a limit), or reset by nghttp2 for
   * the peer's malformed frames on them (PEER_FAULT_RESETS), per window of
   * peerPingWindowMs, past which the connection gets GOAWAY ENHANCE_YOUR_CALM: each refusal costs
   * ~150-200 µs (a token check), and a peer opening them without end slowed every proxy.
   */
  maxRefusedStreamsPerWindow: number;
}

/** Per-connection keepalive state, hung on the session so its 'ping' listener is a shared function. */
class Liveness {
  /** When our next ping is due. */
  pingDueMs: number;
  /** When our outstanding ping was sent (0: none outstanding). */
  pingSentMs = 0;
  peerPings = 0;
  /** Streams refused in the current window. */
  refusedStreams = 0;
  peerPingWindowStartMs: number;
  /** Streams open on the connection (counted as they open and close: no walk over them). */
  streams = 0;
  /**
   * When its last stream that was served ended (connected, if none): it is idle from then while
   * every stream open is marked not busy (markNotBusy). Else one peer with no token kept any
   * number of connections open by opening a refused stream on each every few seconds, and took
   * every place of --max-connections.
   */
  servedEndMs: number;
  /** Open streams marked not busy (see markNotBusy). */
  notBusyOpen = 0;
  /** When it was told to go away for idleness (0: not yet). */
  idleClosedMs = 0;
  constructor(
    now: number,
    opts: KeepaliveOptions,
    /**
     * The connection's socket. A destroyed session ends its socket gracefully, which never
     * completes while the peer does not read: the descriptor stayed open for good (measured: 50
     * such sockets, none freed in 30 s). The sweep destroys what is left of it.
     */
    readonly socket: Socket | undefined,
    /** Its connection, which a stream no longer names once closed (see onTrackedStreamClose). */
    readonly session: TrackedSession,
  ) {
    this.pingDueMs = now + opts.keepaliveTimeMs;
    this.peerPingWindowStartMs = now;
    this.servedEndMs = now;
  }
}

const LIVENESS = Symbol('grpc-h2.liveness');
const SESSIONS = Symbol('grpc-h2.sessions');
/** Set on a stream counted in its connection's notBusyOpen (see markNotBusy). */
const NOT_BUSY = Symbol('grpc-h2.notBusy');
type TrackedSession = Http2Session & { [LIVENESS]: Liveness; [SESSIONS]: SessionSet };
type TrackedStream = ServerHttp2Stream & { [LIVENESS]: Liveness; [NOT_BUSY]: boolean };

/** A connection told to go away for idleness that is still there this long after is destroyed. */
const IDLE_CLOSE_GRACE_MS = 5_000;

/**
 * Resets nghttp2 sends for the peer's own malformed frames on a stream (WINDOW_UPDATE of 0, DATA
 * past content-length or the window, ...). nghttp2 1.61 counts only the resets a peer sends:
 * making the server reset each stream instead ("MadeYouReset", CVE-2025-8671) opened 20,000 calls
 * in one burst on one connection, every one started and cancelled, with no GOAWAY.
 */
const PEER_FAULT_RESETS = new Set<number>([
  constants.NGHTTP2_PROTOCOL_ERROR,
  constants.NGHTTP2_FLOW_CONTROL_ERROR,
  constants.NGHTTP2_STREAM_CLOSED,
  constants.NGHTTP2_FRAME_SIZE_ERROR,
]);

function onTrackedStreamClose(this: TrackedStream): void {
  const l = this[LIVENESS];
  // Counted as refused streams, so such a peer is sent away as one opening refused streams is.
  if (this.rstCode !== undefined && PEER_FAULT_RESETS.has(this.rstCode) && !l.session.destroyed) l.session[SESSIONS].refusedStream(l.session);
  if (this[NOT_BUSY]) l.notBusyOpen--;
  else l.servedEndMs = Date.now();
  l.streams--;
  // Counted out: a markNotBusy after its close (a refusal sent late) must not count it again.
  this[NOT_BUSY] = true;
}

/**
 * The stream does not keep its connection from being idle, and its end does not count as the
 * connection being used: a refused stream, or a call any peer may make without a token (health).
 * Else a peer with no token held any number of connections open, and every --max-connections place.
 */
export function markNotBusy(stream: ServerHttp2Stream): void {
  const s = stream as Partial<TrackedStream>;
  const l = s[LIVENESS];
  if (!l || s[NOT_BUSY]) return;
  s[NOT_BUSY] = true;
  l.notBusyOpen++;
}

function onSessionClose(this: TrackedSession): void {
  this[SESSIONS].forget(this);
}
function onPeerPing(this: TrackedSession): void {
  this[SESSIONS].peerPinged(this);
}
/**
 * Counts a stream refused on its connection (see KeepaliveOptions.maxRefusedStreamsPerWindow);
 * call it before the stream ends. Its end does not count as the connection being used.
 */
export function countRefusedStream(stream: ServerHttp2Stream): void {
  markNotBusy(stream);
  const s = stream.session as Partial<TrackedSession> | undefined;
  s?.[SESSIONS]?.refusedStream(s as TrackedSession);
}


/** GOAWAY (NO_ERROR, "max_idle", as grpc-go says it), then close: no stream is open to wait for. */
function closeIdle(session: Http2Session): void {
  try {
    session.goaway(constants.NGHTTP2_NO_ERROR, 0, Buffer.from('max_idle'));
    session.close();
  } catch {
    session.destroy();
  }
}
/** Garbage from a peer fails its own connection only; 'close' follows and does the bookkeeping. */
function ignore(): void {}

export class SessionSet {
  private readonly live = new Map<Http2Session, Liveness>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly sweepEveryMs: number;
  /** Called when the last session is gone (shutdown waits on it). */
  onEmpty: (() => void) | undefined;
  /** A connection was sent away for refused streams (see maxRefusedStreamsPerWindow). */
  onTooManyRefused: ((session: Http2Session, refused: number) => void) | undefined;
  /** Called after each pass (other per-connection upkeep rides on the same timer). */
  onSweep: ((now: number) => void) | undefined;

  constructor(private readonly opts: KeepaliveOptions) {
    // A quarter of the shorter interval (a ping is sent and judged at most that late), but no more
    // often than needed: each pass visits every connection, 10,000 of them at scale.
    this.sweepEveryMs = Math.max(10, Math.min(5000, Math.min(opts.keepaliveTimeMs, opts.keepaliveTimeoutMs, opts.maxConnectionIdleMs) / 4));
  }

  get size(): number {
    return this.live.size;
  }

  sessions(): IterableIterator<Http2Session> {
    return this.live.keys();
  }

  add(session: Http2Session, socket?: Socket): void {
    const s = session as TrackedSession;
    s[LIVENESS] = new Liveness(Date.now(), this.opts, socket, s);
    s[SESSIONS] = this;
    session.on('error', ignore);
    session.on('close', onSessionClose);
    session.on('ping', onPeerPing);
    this.live.set(session, s[LIVENESS]);
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.sweep(), this.sweepEveryMs);
      this.sweepTimer.unref();
    }
  }

  /** A stream opened on one of the connections: it is not idle until its last stream ends. */
  streamOpened(stream: ServerHttp2Stream): void {
    const l = (stream.session as TrackedSession | undefined)?.[LIVENESS];
    if (!l) return;
    l.streams++;
    (stream as TrackedStream)[LIVENESS] = l;
    (stream as TrackedStream)[NOT_BUSY] = false;
    stream.on('close', onTrackedStreamClose);
  }

  forget(session: Http2Session): void {
    if (!this.live.delete(session)) return;
    if (this.live.size === 0) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
      this.onEmpty?.();
    }
  }

  peerPinged(session: TrackedSession): void {
    const l = session[LIVENESS];
    if (++l.peerPings <= this.opts.maxPeerPingsPerWindow) return;
    // As gRPC servers answer too many pings: GOAWAY ENHANCE_YOUR_CALM "too_many_pings", then close.
    try {
      session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_pings'));
    } catch {
      // Already going away.
    }
    session.destroy();
  }

  refusedStream(session: TrackedSession): void {
    const l = session[LIVENESS];
    // Only the first past the limit: the connection is going away, later refusals are its last streams.
    if (++l.refusedStreams !== this.opts.maxRefusedStreamsPerWindow + 1) return;
    try {
      session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_refused_streams'));
      // No new stream; those open (other proxies multiplexed on it) end in their own time.
      session.close();
    } catch {
      // Already going away.
    }
    this.onTooManyRefused?.(session, l.refusedStreams);
  }

  /** One pass over all connections: drop the silent ones, ping the due ones, reset flood windows. */
  sweep(now = Date.now()): void {
    const { keepaliveTimeMs, keepaliveTimeoutMs, peerPingWindowMs, maxConnectionIdleMs } = this.opts;
    for (const [session, l] of this.live) {
      if (session.destroyed) {
        // Its goodbye (GOAWAY, FIN) had a sweep period to go out; a socket still open goes now.
        if (l.socket && !l.socket.destroyed) l.socket.destroy();
        this.forget(session);
        continue;
      }
      if (l.idleClosedMs !== 0) {
        // Told to go away and still there: it goes now.
        if (now - l.idleClosedMs >= IDLE_CLOSE_GRACE_MS) session.destroy();
        continue;
      }
      if (l.streams === l.notBusyOpen && now - l.servedEndMs >= maxConnectionIdleMs) {
        l.idleClosedMs = now;
        closeIdle(session);
        continue;
      }
      if (now - l.peerPingWindowStartMs >= peerPingWindowMs) {
        l.peerPingWindowStartMs = now;
        l.peerPings = 0;
        l.refusedStreams = 0;
      }
      if (l.pingSentMs !== 0) {
        if (now - l.pingSentMs >= keepaliveTimeoutMs) session.destroy();
        continue;
      }
      if (now < l.pingDueMs) continue;
      l.pingSentMs = now;
      try {
        session.ping((err) => {
          l.pingSentMs = 0;
          l.pingDueMs = Date.now() + keepaliveTimeMs;
          if (err) session.destroy();
        });
      } catch {
        // Closing or not connected yet: its 'close' removes it, or the next sweep tries again.
        l.pingSentMs = 0;
        l.pingDueMs = now + keepaliveTimeMs;
      }
    }
    this.onSweep?.(now);
  }

  /** Stops the sweep (shutdown). */
  stop(): void {
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }
}
