// One gRPC call on one HTTP/2 stream. One small object per stream (a proxy holds two for days):
// the stream's listeners are shared functions that find their call through a symbol, and the
// call reports to a single listener object (the xDS stream itself) instead of emitting events.
import { constants, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { MessageReader, ReadBudget } from './framing.js';
import { armDeadline, disarmDeadline, type DeadlineHolder } from './deadline.js';
import { grpcMessageHeader, Status, type CallStatus } from './status.js';
import { flatKey } from '../../api/flat-key.js';

const { NGHTTP2_NO_ERROR } = constants;

/** What the application hears of a call; each method is optional. Called with the listener as `this`. */
export interface CallListener<Req> {
  onMessage?(request: Req): void;
  /** The client half-closed (it sends no more messages). */
  onHalfClose?(): void;
  /**
   * The stream was reset or its connection lost before the call ended, or the transport ended it
   * (deadline passed, responses left unread): then `status` is what the call was ended with.
   */
  onCancel?(status?: CallStatus): void;
  /** The client has taken every response written, after behind() said it had not. */
  onWritable?(): void;
}

export interface MethodCodec<Req, Res> {
  decode(message: Buffer): Req;
  /**
   * For a method whose requests are always small (below the server's limit): larger ones are
   * refused from their prefix, and an unfinished one (at most this many bytes) is held outside the
   * server's read budget, so calls anyone may open cannot fill what the proxies' requests need.
   */
  readonly maxMessageBytes?: number;
  /**
   * The response as a whole gRPC frame, 5-byte prefix included (encoders can reserve it and skip a
   * copy), or as the frame's consecutive chunks (large payloads sent by reference, not copied).
   */
  encodeFramed(response: Res): Buffer | readonly Buffer[];
}

/** What every call of one server shares. */
export interface CallContext {
  readonly maxMessageBytes: number;
  /** Unfinished request bytes held across every call of the server (see ReadBudget). */
  readonly readBudget: ReadBudget;
  /**
   * Response bytes a call may have waiting for the client to read before it is ended with
   * RESOURCE_EXHAUSTED. Reading a call's requests pauses well before that (at most 1 MiB unsent),
   * so only pushes can reach it: a client that stops reading while the server keeps writing.
   */
  readonly maxUnsentBytes: number;
  /** A metadata value was dropped for characters outside printable ASCII (as grpc-js does); the value is not passed. */
  readonly onRefusedHeader?: (name: string, peer: string) => void;
}

const CALL = Symbol('grpc-h2.call');
/** The peer string of a connection, computed once for all of its streams (and their log lines). */
const PEER = Symbol('grpc-h2.peer');
type SessionWithPeer = Http2Session & { [PEER]?: string };
const NO_HEADERS: readonly string[] = Object.freeze([]);
type StreamWithCall = ServerHttp2Stream & { [CALL]: ServerCall<unknown, unknown> };

function onStreamData(this: StreamWithCall, chunk: Buffer): void {
  this[CALL].received(chunk);
}
function onStreamEnd(this: StreamWithCall): void {
  // A reset also ends the readable side, and node reports the reset itself only after 'end':
  // look once the pending I/O callbacks have run, so a reset is told apart from a half-close.
  setImmediate(halfClosedLater, this[CALL]);
}
function halfClosedLater(call: ServerCall<unknown, unknown>): void {
  call.halfClosed();
}
function onStreamClose(this: StreamWithCall): void {
  this[CALL].closed();
}
function onStreamDrain(this: StreamWithCall): void {
  this[CALL].drained();
}
function onStreamWritable(this: StreamWithCall): void {
  this[CALL].writable();
}
function onWantTrailers(this: StreamWithCall): void {
  this[CALL].sendTrailers();
}
function resetAfterTrailers(stream: ServerHttp2Stream): void {
  if (!stream.closed && !stream.destroyed && !stream.readableEnded) stream.close(NGHTTP2_NO_ERROR);
}
/** A call ended for unread responses holds them until its trailers can follow: not for longer than this. */
const UNREAD_GRACE_MS = 10_000;
function resetUnread(stream: ServerHttp2Stream): void {
  if (!stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
}
/** A stream error (reset, protocol error) is followed by 'close', which is where the call learns of it. */
function ignore(): void {}

/** Unsent response bytes past which a call's requests are not read until the client takes them. */
const READ_PAUSE_BYTES = 1024 * 1024;
const CONTENT_TYPE = 'application/grpc+proto';
const RESPONSE_HEADERS = { ':status': 200, 'content-type': CONTENT_TYPE, 'grpc-accept-encoding': 'identity' };
const WAIT_FOR_TRAILERS = { waitForTrailers: true, sendDate: false };
const END_STREAM = { endStream: true, sendDate: false };
/** grpc-js' rule for text metadata values: printable ASCII only. */
const LEGAL_TEXT_VALUE = /^[ -~]*$/;

const enum Phase {
  Open,
  HeadersSent,
  /** Status sent (or being sent): nothing more is written or delivered. */
  Ended,
}

/**
 * Ends a stream with a trailers-only status (a call refused or failed before any response). The
 * stream is then reset with NO_ERROR, as grpc-go does when the client has not finished sending: a
 * client that never ends its side (a hostile one) must not keep the stream alive on the server.
 */
export function respondWithStatus(stream: ServerHttp2Stream, status: CallStatus): void {
  try {
    stream.respond({ ':status': 200, 'content-type': CONTENT_TYPE, 'grpc-status': String(status.code), 'grpc-message': grpcMessageHeader(status.details) }, END_STREAM);
    stream.close(NGHTTP2_NO_ERROR);
  } catch {
    // The stream closed meanwhile: there is no one left to tell.
  }
}

const SESSION_BUDGET = Symbol('grpc-h2.sessionReadBudget');
type SessionWithBudget = { [SESSION_BUDGET]?: ReadBudget };

/**
 * The connection's own budget of unfinished request bytes, made on first need: a quarter of the
 * server's while they arrive, twice the largest message once they stall (see ReadBudget.endStalled).
 */
function sessionReadBudget(stream: ServerHttp2Stream, context: CallContext): ReadBudget | undefined {
  const session = stream.session as (SessionWithBudget & object) | undefined;
  if (!session) return undefined;
  const stalledLimit = 2 * context.maxMessageBytes;
  return (session[SESSION_BUDGET] ??= new ReadBudget(Math.max(stalledLimit, Math.floor(context.readBudget.limit / 4)), stalledLimit));
}

export class ServerCall<Req, Res> implements DeadlineHolder {
  listener: CallListener<Req> | undefined;
  /** @internal The grpc-timeout timer while it runs; most calls have none, and pay only this slot. */
  deadlineTimer: NodeJS.Timeout | undefined = undefined;
  /**
   * Told once when the stream is gone, however the call ended (what the application counted for
   * it goes back): a slot on the call, not one more listener and closure on every stream.
   */
  closeHook: { callGone(): void } | undefined = undefined;
  private phase = Phase.Open;
  private endCode: Status = Status.OK;
  private endDetails = '';
  private wasCancelled = false;
  /** Requests are not read while the client leaves this much unread (see write()). */
  private readPaused = false;
  /** The application asked for no more requests for now (holdRequests): read again on releaseRequests. */
  private heldByApp = false;
  /** The client half-closed while requests were still held unread: told once they are read. */
  private halfClosePending = false;
  /** behind() said so: the listener's onWritable() is due once the client has taken it all. */
  private writableWanted = false;
  private readonly reader: MessageReader;

  constructor(
    readonly stream: ServerHttp2Stream,
    private readonly codec: MethodCodec<Req, Res>,
    /** The request's header fields as received, name and value alternating (duplicates kept). */
    private rawHeaders: readonly string[],
    private readonly context: CallContext,
  ) {
    const small = codec.maxMessageBytes;
    this.reader =
      small !== undefined && small < context.maxMessageBytes
        ? new MessageReader(small)
        : new MessageReader(context.maxMessageBytes, context.readBudget, sessionReadBudget(stream, context));
    this.reader.owner = this;
    for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i] === 'grpc-encoding') this.reader.encoding = rawHeaders[i + 1];
    (stream as StreamWithCall)[CALL] = this as ServerCall<unknown, unknown>;
    stream.on('error', ignore);
    stream.on('close', onStreamClose);
    stream.on('wantTrailers', onWantTrailers);
    stream.on('end', onStreamEnd);
    stream.on('data', onStreamData);
  }

  /** `address:port` of the client, as grpc-js' getPeer() reports it ('unknown' on a unix socket). */
  get peer(): string {
    const session = this.stream.session as SessionWithPeer | undefined;
    if (!session) return 'unknown';
    let peer = session[PEER];
    if (peer === undefined) {
      const socket = session.socket;
      if (!socket?.remoteAddress) return 'unknown';
      peer = socket.remotePort ? flatKey(socket.remoteAddress, ':', String(socket.remotePort)) : socket.remoteAddress;
      session[PEER] = peer;
    }
    return peer;
  }

  /** The HTTP/2 connection (for GOAWAY while draining); undefined once the stream is gone. */
  get session(): Http2Session | undefined {
    return this.stream.session;
  }

  /** True once the client reset the stream, the connection was lost or the deadline passed before the call ended. */
  get cancelled(): boolean {
    return this.wasCancelled;
  }

  /** True until the call's status has been sent (or the stream is gone). */
  get active(): boolean {
    return this.phase !== Phase.Ended;
  }

  /** Every value the client sent for a metadata key; text values outside printable ASCII are dropped. */
  headerValues(name: string): string[] {
    const out: string[] = [];
    const raw = this.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      if (raw[i] !== name) continue;
      const value = raw[i + 1]!;
      if (name.endsWith('-bin') || LEGAL_TEXT_VALUE.test(value)) out.push(value);
      else this.context.onRefusedHeader?.(name, this.peer);
    }
    return out;
  }

  /**
   * Lets go of the request's headers once the application has read what it needs from them: a
   * stream lives for days, its token and user agent need not live with it.
   */
  releaseHeaders(): void {
    this.rawHeaders = NO_HEADERS;
  }

  /**
   * Counts the call's unfinished request messages in `budget` too: the budget of whoever opened it
   * (a credential's, over all of its calls and connections). Call it as the call opens.
   */
  countReadsIn(budget: ReadBudget): void {
    this.reader.countAlsoIn(budget);
  }

  /** Lets go of every header but `name` (its values, in order): what a later step still reads. */
  keepOnlyHeader(name: string): void {
    const raw = this.rawHeaders;
    const kept: string[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i] === name) kept.push(name, raw[i + 1]!);
    this.rawHeaders = kept.length === 0 ? NO_HEADERS : kept;
  }

  /**
   * Sends a response message. HTTP/2 buffers what the peer cannot take yet, as grpc-js does, but
   * not without bound: past READ_PAUSE_BYTES unsent, the call's requests (each of which may cause
   * a response) are not read until the client has taken it all, and a call that still has
   * maxUnsentBytes unsent when it is to write more is ended with RESOURCE_EXHAUSTED.
   */
  write(response: Res): void {
    // A reset stream is closed a moment before 'close' reports it: nothing can be sent on it.
    if (this.phase === Phase.Ended || this.stream.destroyed || this.stream.closed) return;
    const unsent = this.stream.writableLength;
    if (unsent > this.context.maxUnsentBytes) return this.refuseUnread(unsent);
    this.send(response);
    if (!this.readPaused && this.stream.writableLength > Math.min(READ_PAUSE_BYTES, this.context.maxUnsentBytes)) {
      this.readPaused = true;
      this.stream.pause();
      // 'drain' comes once everything written has been taken.
      this.stream.once('drain', onStreamDrain);
    }
  }

  private send(response: Res): void {
    if (this.phase === Phase.Open) {
      this.stream.respond(RESPONSE_HEADERS, WAIT_FOR_TRAILERS);
      this.phase = Phase.HeadersSent;
    }
    const frame = this.codec.encodeFramed(response);
    if (Buffer.isBuffer(frame)) return void this.stream.write(frame);
    // Corked, the chunks leave in one writev (one DATA frame when they fit), not one write each.
    this.stream.cork();
    for (const chunk of frame) this.stream.write(chunk);
    this.stream.uncork();
  }

  /**
   * True while the client has not taken what was written (more than the stream buffers); the
   * listener's onWritable() follows once it has. A push can wait for that and then send the state
   * of that moment: written at once, a client that stopped reading had one response per change
   * queued for it (1,000 changes of one secret: 1,000 responses, 1.6 MB).
   */
  behind(): boolean {
    if (this.phase === Phase.Ended || !this.stream.writableNeedDrain) return false;
    if (!this.writableWanted) {
      this.writableWanted = true;
      this.stream.once('drain', onStreamWritable);
    }
    return true;
  }

  /** @internal 'drain' after behind(): the client took everything written. */
  writable(): void {
    this.writableWanted = false;
    if (this.phase !== Phase.Ended) this.listener?.onWritable?.();
  }

  /** The client leaves too much unread: end the call, and tell the application as of a cancel. */
  private refuseUnread(unsent: number): void {
    const status: CallStatus = {
      code: Status.RESOURCE_EXHAUSTED,
      details: `the client is not reading its responses: ${unsent} bytes unsent (limit ${this.context.maxUnsentBytes})`,
    };
    // end() resets the stream if the client still has not read them after a grace.
    this.endAsCancel(status);
  }

  /**
   * Reads no further request until releaseRequests(): HTTP/2 flow control then stops the client
   * once its window is full, instead of the application holding whatever it sends meanwhile.
   */
  holdRequests(): void {
    if (this.phase === Phase.Ended || this.heldByApp) return;
    this.heldByApp = true;
    this.stream.pause();
  }

  /** Reads requests again after holdRequests(), those that came meanwhile first (synchronously). */
  releaseRequests(): void {
    if (!this.heldByApp) return;
    this.heldByApp = false;
    if (!this.readPaused) this.drained();
  }

  /** @internal The client took everything written: read its requests again, held ones first. */
  drained(): void {
    this.readPaused = false;
    if (this.phase === Phase.Ended || this.heldByApp) return;
    const refused = this.reader.resume(this);
    if (refused) return this.endAsCancel(refused);
    if (this.readPaused || !this.active) return;
    this.stream.resume();
    if (this.halfClosePending) {
      this.halfClosePending = false;
      this.halfClosed();
    }
  }

  /** @internal Ends the call with DEADLINE_EXCEEDED in `ms` (the client's grpc-timeout) unless it ends first. */
  setDeadline(ms: number): void {
    if (this.phase !== Phase.Ended && this.deadlineTimer === undefined) armDeadline(this, ms);
  }

  /** @internal An unfinished request message got no further bytes for `ms`: the peer holds its share of the read budget. */
  readerStalled(ms: number): void {
    this.endAsCancel({ code: Status.DEADLINE_EXCEEDED, details: `a request message got no further bytes for ${ms / 1000} s` });
  }

  /** @internal The deadline passed: the status grpc-js sends, and the application hears of it as of a cancel. */
  deadlineExceeded(): void {
    this.endAsCancel({ code: Status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' });
  }

  /** Ends the call with a status (OK when none is given). Only the first call counts. */
  end(status?: CallStatus): void {
    if (this.phase === Phase.Ended) return;
    const headersSent = this.phase === Phase.HeadersSent;
    this.phase = Phase.Ended;
    disarmDeadline(this);
    if (this.stream.destroyed || this.stream.closed) return;
    // Our side is done: request bytes still arriving are read and dropped.
    this.reader.discard();
    if (!headersSent) return respondWithStatus(this.stream, status ?? { code: Status.OK, details: '' });
    if (status) {
      this.endCode = status.code;
      this.endDetails = status.details;
    }
    // The trailers wait behind responses the client has not taken: one that never reads (a zero
    // flow-control window) kept each ended call, and its unsent bytes, open for good.
    if (this.stream.writableLength > 0) setTimeout(resetUnread, UNREAD_GRACE_MS, this.stream).unref();
    this.stream.end();
  }

  /** @internal 'wantTrailers': the last DATA frame is out, the status follows. */
  sendTrailers(): void {
    if (this.stream.destroyed) return;
    this.stream.sendTrailers({ 'grpc-status': String(this.endCode), 'grpc-message': grpcMessageHeader(this.endDetails) });
    // A client that has not finished sending gets RST_STREAM(NO_ERROR) after the status, as grpc-go
    // sends: one that never ends its side (a hostile or careless peer) kept the half-closed stream,
    // its call and everything the call held (~4.4 KB each) until the whole connection ended. Not
    // from inside 'wantTrailers': nghttp2 would drop the trailers it has not written yet.
    if (!this.stream.readableEnded) setImmediate(resetAfterTrailers, this.stream);
  }

  /** @internal A DATA chunk arrived. */
  received(chunk: Buffer): void {
    if (this.phase === Phase.Ended) return;
    const refused = this.reader.push(chunk, this);
    if (refused) this.endAsCancel(refused);
  }

  /**
   * The transport ends the call (a deadline, a client that does not read, a request refused as too
   * large, compressed or undecodable): the client gets that status and the application hears of it
   * as of a cancel, so it lets go of the stream (registry, watches, metrics) as for any ended call.
   */
  private endAsCancel(status: CallStatus): void {
    if (this.phase === Phase.Ended) return;
    this.end(status);
    this.wasCancelled = true;
    this.listener?.onCancel?.(status);
  }

  /** @internal One whole request message; false stops reading (the call ended). */
  acceptMessage(message: Buffer): boolean {
    let request: Req;
    try {
      request = this.codec.decode(message);
    } catch {
      this.endAsCancel({ code: Status.INTERNAL, details: 'Error deserializing request' });
      return false;
    }
    this.listener?.onMessage?.(request);
    return this.phase !== Phase.Ended && !this.readPaused && !this.heldByApp;
  }

  /**
   * @internal The client half-closed. Inside a message, that message was cut short: INTERNAL, as
   * grpc-go answers (grpc-js drops it silently, and the client then sees OK for a request never read).
   */
  halfClosed(): void {
    if (this.phase === Phase.Ended) return;
    if (this.stream.destroyed || this.stream.rstCode) return this.closed();
    if (this.reader.holding) {
      this.halfClosePending = true;
      return;
    }
    if (this.reader.midMessage) return this.endAsCancel({ code: Status.INTERNAL, details: 'the request stream ended inside a message: its last message was cut short' });
    this.listener?.onHalfClose?.();
  }

  /** @internal The stream is gone: a call not ended by then was cancelled. */
  closed(): void {
    this.reader.discard(); // what a partial message held goes back to the budget
    const hook = this.closeHook;
    this.closeHook = undefined;
    hook?.callGone();
    if (this.phase === Phase.Ended) return;
    this.phase = Phase.Ended;
    disarmDeadline(this);
    this.wasCancelled = true;
    this.listener?.onCancel?.();
  }
}
