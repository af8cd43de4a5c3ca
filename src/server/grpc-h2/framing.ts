// gRPC's length-prefixed messages (1 flag byte, 4 length bytes, the message) read out of HTTP/2
// DATA chunks: a message may span many chunks, and a chunk may hold several messages.
import { Status, type CallStatus } from './status.js';

export const GRPC_HEADER_BYTES = 5;

export interface MessageSink {
  /** False stops reading: the call ended (and discarded the reader), or it pauses until resume(). */
  acceptMessage(message: Buffer): boolean;
}

const mib = (n: number) => `${Math.round((n / 1024 / 1024) * 10) / 10} MiB`;

/**
 * Bytes of unfinished request messages held, by the server across all its calls or by one
 * connection. A message is read whole before it is decoded, so a peer that sends all but the last
 * byte of a 1 MiB message on each of thousands of streams would hold gigabytes (1,500 streams:
 * 1.2 GB); past the limit such a call is refused instead. Honest requests (a few KB, whole in one
 * DATA frame) hold next to nothing.
 */
export class ReadBudget {
  used = 0;
  /** Readers holding an unfinished message (the server's budget only). */
  readonly holders = new Set<MessageReader>();
  constructor(
    readonly limit: number,
    /**
     * A connection's budget: what its unfinished messages may hold while they make no progress
     * (see endStalled). `limit` bounds what they hold while arriving: 200 requests of 42 KB sent
     * together arrive interleaved and are all unfinished at once, which a 2 MiB limit refused.
     */
    readonly stalledLimit = limit,
    /** Whose budget it is, as a refusal names it ("this connection holds …"). */
    readonly owner = 'connection',
  ) {}

  /**
   * Ends the calls whose unfinished message made no progress for `ms` (a peer holding its share
   * for good), and, on a connection holding more than its stalledLimit, those that made none for
   * `crowdedMs`: a peer that fills its connection's budget and stops holds it only that long.
   */
  endStalled(now: number, ms: number, crowdedMs = ms): void {
    let crowded: Map<ReadBudget, MessageReader[]> | undefined;
    for (const r of this.holders) {
      const idle = now - r.progressMs;
      if (idle >= ms) {
        r.stalled(ms);
        continue;
      }
      const session = r.sessionBudgetOf;
      if (idle < crowdedMs || !session || session.used <= session.stalledLimit) continue;
      crowded ??= new Map();
      const list = crowded.get(session);
      if (list) list.push(r);
      else crowded.set(session, [r]);
    }
    for (const [session, readers] of crowded ?? []) {
      let stalledBytes = 0;
      for (const r of readers) stalledBytes += r.heldBytes;
      if (stalledBytes <= session.stalledLimit) continue;
      for (const r of readers) r.stalled(crowdedMs);
    }
  }
}

/** A connection holding more than its stalledLimit of unfinished messages: how long one may make no progress. */
export const CROWDED_STALL_MS = 5_000;

/** How long an unfinished request message may wait for its next bytes. */
export const UNFINISHED_MESSAGE_TIMEOUT_MS = 30_000;

/** Splits one request stream into messages; no copy unless a message spans chunks. */
export class MessageReader {
  /** Pieces of the message (or of its 5-byte prefix) still incomplete; undefined between messages. */
  private parts: Buffer[] | undefined;
  private partBytes = 0;
  /** Length of the message being collected, or -1 while its prefix is incomplete. */
  private bodyLength = -1;
  /** While reading is paused: the bytes not yet read, in order (undefined while reading). */
  private held: Buffer[] | undefined;
  /** Set by discard(): the call ended, nothing more is read. */
  private done = false;
  /** Bytes of the unfinished message counted in the budget. */
  private reserved = 0;
  /** When the unfinished message last grew. */
  progressMs = 0;
  /** Told when the unfinished message stalled (see ReadBudget.endStalled): the call ends. */
  owner: { readerStalled(stalledMs: number): void } | undefined;
  /** The budget of whoever opened the call (its credential), once known (see countAlsoIn). */
  private callerBudget: ReadBudget | undefined;
  /** The call's grpc-encoding header, if any: tells a malformed compressed message from an unsupported one. */
  encoding: string | undefined;

  constructor(
    private readonly maxMessageBytes: number,
    /** The server's budget. */
    private readonly budget?: ReadBudget,
    /** The connection's own (so one peer cannot take the whole server's). */
    private readonly sessionBudget?: ReadBudget,
  ) {}

  /**
   * Counts this reader's unfinished messages in `budget` too (the caller's, shared by all of its
   * calls on any connection). Only before anything was held: it is given back to every budget.
   */
  countAlsoIn(budget: ReadBudget): void {
    if (this.reserved === 0) this.callerBudget = budget;
  }

  /** The connection's budget this reader counts in. */
  get sessionBudgetOf(): ReadBudget | undefined {
    return this.sessionBudget;
  }

  /** Bytes of the unfinished message counted in the budgets. */
  get heldBytes(): number {
    return this.reserved;
  }

  /** True when bytes of an unfinished message are buffered (a half-close now cuts it short). */
  get midMessage(): boolean {
    return this.parts !== undefined;
  }

  /** True while reading is paused (the sink said stop) and bytes may be held for later. */
  get holding(): boolean {
    return this.held !== undefined;
  }

  /**
   * Feeds one chunk. `sink` gets each whole message and returns false to stop reading: the rest
   * is held until resume() (or dropped, when the call ended meanwhile). Returns the status that
   * ends the call when the framing is refused.
   */
  push(chunk: Buffer, sink: MessageSink): CallStatus | undefined {
    if (this.done) return undefined;
    if (this.held) {
      this.held.push(chunk);
      return undefined;
    }
    return this.read(chunk, sink);
  }

  /** Reads what was held while paused, until the sink stops again; like push() otherwise. */
  resume(sink: MessageSink): CallStatus | undefined {
    const held = this.held ?? [];
    this.held = undefined;
    for (let i = 0; i < held.length; i++) {
      if (this.done) return undefined;
      if (this.held) {
        // Paused again: the chunks not reached stay held, after what the last one left.
        (this.held as Buffer[]).push(...held.slice(i));
        return undefined;
      }
      const refused = this.read(held[i]!, sink);
      if (refused) return refused;
    }
    return undefined;
  }

  private stop(chunk: Buffer, pos: number): undefined {
    if (!this.done) this.held = pos < chunk.length ? [chunk.subarray(pos)] : [];
    return undefined;
  }

  private read(chunk: Buffer, sink: MessageSink): CallStatus | undefined {
    let pos = 0;
    for (;;) {
      if (this.parts) {
        if (this.bodyLength < 0) {
          const take = Math.min(GRPC_HEADER_BYTES - this.partBytes, chunk.length - pos);
          const over = this.reserve(take);
          if (over) return over;
          this.collect(chunk, pos, take);
          pos += take;
          if (this.partBytes < GRPC_HEADER_BYTES) return undefined;
          const head = Buffer.concat(this.parts, GRPC_HEADER_BYTES);
          const refused = this.refuse(head[0]!, head.readUInt32BE(1));
          if (refused) return refused;
          this.bodyLength = head.readUInt32BE(1);
          this.parts = [];
          this.partBytes = 0;
        }
        const take = Math.min(this.bodyLength - this.partBytes, chunk.length - pos);
        if (this.partBytes + take < this.bodyLength) {
          const over = this.reserve(take);
          if (over) return over;
        }
        this.collect(chunk, pos, take);
        pos += take;
        if (this.partBytes < this.bodyLength) return undefined;
        const message = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.bodyLength);
        this.parts = undefined;
        this.partBytes = 0;
        this.bodyLength = -1;
        this.release();
        if (!sink.acceptMessage(message)) return this.stop(chunk, pos);
        continue;
      }
      const remaining = chunk.length - pos;
      if (remaining === 0) return undefined;
      if (remaining < GRPC_HEADER_BYTES) {
        const over = this.reserve(remaining);
        if (over) return over;
        this.parts = [piece(chunk, pos, chunk.length)];
        this.partBytes = remaining;
        return undefined;
      }
      const length = chunk.readUInt32BE(pos + 1);
      const refused = this.refuse(chunk[pos]!, length);
      if (refused) return refused;
      if (remaining >= GRPC_HEADER_BYTES + length) {
        const end = pos + GRPC_HEADER_BYTES + length;
        if (!sink.acceptMessage(chunk.subarray(pos + GRPC_HEADER_BYTES, end))) return this.stop(chunk, end);
        pos = end;
        continue;
      }
      const over = this.reserve(remaining);
      if (over) return over;
      this.parts = [piece(chunk, pos + GRPC_HEADER_BYTES, chunk.length)];
      this.partBytes = remaining - GRPC_HEADER_BYTES;
      this.bodyLength = length;
      return undefined;
    }
  }

  /** Forgets a partial message (the call ended; what still arrives is dropped unread). */
  discard(): void {
    this.release();
    this.done = true;
    this.held = undefined;
    this.parts = undefined;
    this.partBytes = 0;
    this.bodyLength = -1;
  }

  /** Counts `n` more held bytes, or the status refusing the call when the server holds too many. */
  private reserve(n: number): CallStatus | undefined {
    if (n === 0) return undefined;
    const { budget, sessionBudget, callerBudget } = this;
    if (sessionBudget && sessionBudget.used + n > sessionBudget.limit) return ownLimit(sessionBudget);
    if (callerBudget && callerBudget.used + n > callerBudget.limit) return ownLimit(callerBudget);
    if (budget && budget.used + n > budget.limit) {
      return { code: Status.RESOURCE_EXHAUSTED, details: `the server holds ${mib(budget.limit)} of unfinished request messages, its limit: try again` };
    }
    if (budget) {
      budget.used += n;
      budget.holders.add(this);
    }
    if (sessionBudget) sessionBudget.used += n;
    if (callerBudget) callerBudget.used += n;
    this.reserved += n;
    this.progressMs = Date.now();
    return undefined;
  }

  private release(): void {
    if (this.budget) {
      this.budget.used -= this.reserved;
      this.budget.holders.delete(this);
    }
    if (this.sessionBudget) this.sessionBudget.used -= this.reserved;
    if (this.callerBudget) this.callerBudget.used -= this.reserved;
    this.reserved = 0;
  }

  /** @internal The unfinished message stalled: its share goes back, and the call is ended. */
  stalled(ms: number): void {
    this.release();
    this.owner?.readerStalled(ms);
  }

  private collect(chunk: Buffer, pos: number, take: number): void {
    if (take === 0) return;
    this.parts!.push(piece(chunk, pos, pos + take));
    this.partBytes += take;
  }

  /** Refuses a compressed message (only identity is accepted) or one over the limit, before reading it. */
  private refuse(flags: number, length: number): CallStatus | undefined {
    if (flags & 1) {
      // PROTOCOL-HTTP2: a compressed flag without a message encoding is INTERNAL (grpc-go too).
      if (this.encoding === undefined || this.encoding === 'identity') return { code: Status.INTERNAL, details: `compressed flag set with ${this.encoding === undefined ? 'no' : 'identity'} grpc-encoding` };
      // Named only when shaped like an encoding name: it is peer text, and statuses get logged.
      const named = /^[A-Za-z0-9._-]{1,32}$/.test(this.encoding) ? `grpc-encoding "${this.encoding}"` : 'this grpc-encoding';
      return { code: Status.UNIMPLEMENTED, details: `compressed messages are not supported (${named}; grpc-accept-encoding: identity)` };
    }
    // The other flag bits are reserved; grpc-go refuses them too.
    if (flags !== 0) return { code: Status.INTERNAL, details: `unexpected message flags 0x${flags.toString(16).padStart(2, '0')}: a gRPC message starts with 0 (or 1, compressed)` };
    if (length > this.maxMessageBytes) return { code: Status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${length} vs. ${this.maxMessageBytes})` };
    return undefined;
  }
}

/** A connection's or a caller's budget is full: its own doing, so it is told to send whole requests. */
function ownLimit(b: ReadBudget): CallStatus {
  return { code: Status.RESOURCE_EXHAUSTED, details: `this ${b.owner} holds ${mib(b.limit)} of unfinished request messages, its limit: send each request whole` };
}

/**
 * Bytes of an unfinished message, kept until it completes: copied when they are a small part of
 * their chunk, which a view would keep alive whole (16 KiB for one byte) beyond what is counted.
 */
function piece(chunk: Buffer, start: number, end: number): Buffer {
  const view = chunk.subarray(start, end);
  return view.length * 2 < chunk.length ? Buffer.from(view) : view;
}

/** A message with its 5-byte prefix, for encoders that do not write the prefix themselves. */
export function frameMessage(message: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(GRPC_HEADER_BYTES + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, GRPC_HEADER_BYTES);
  return frame;
}
