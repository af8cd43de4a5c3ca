// Where the JSON log lines go (stdout): a file descriptor written in batches. pino's own
// destination (sonic-boom) measures the byte length of its whole growing buffer on every line
// while a write is in flight, which flattens (copies) that buffer each time: a connect storm's
// 20,000 "stream opened" lines cost about 80 MB of garbage that way. Here a line is only pushed
// onto an array; a batch is joined and encoded once, when it is written.
import { write, writeSync } from 'node:fs';

export interface BatchedFdOptions {
  /** Write once this many characters are pending (4096); `flush()` writes whatever is pending. */
  batchChars?: number;
  /**
   * Pending characters above which new lines are dropped and counted instead of held (16 Mi): a
   * log reader that stopped reading must not grow the server's memory without bound.
   */
  maxPendingChars?: number;
  /** Wait before retrying a write the descriptor refused for now (EAGAIN: a full non-blocking pipe). */
  retryMs?: number;
}

const SYNC_RETRY_LIMIT_MS = 1000;

/** One JSON line saying how many lines were dropped (pino's shape: level 40 is warn). */
function droppedLine(count: number): string {
  return `${JSON.stringify({ level: 'warn', time: new Date().toISOString(), name: 'mesh-sds', dropped: count, msg: `${count} log lines dropped: the log output is not being read fast enough` })}\n`;
}

export class BatchedFdWriter {
  private lines: string[] = [];
  private pending = 0;
  private dropped = 0;
  /** The batch being written and how far; `retry` while it waits out an EAGAIN. */
  private inFlight: { buf: Buffer; at: number; retry?: NodeJS.Timeout } | undefined;
  /** flush() callbacks waiting for what was pending when they were given. */
  private waiters: ((err?: Error) => void)[] = [];
  /** The reader is gone (EPIPE, EBADF): nothing more is written. */
  private broken = false;
  private readonly batchChars: number;
  private readonly maxPendingChars: number;
  private readonly retryMs: number;

  constructor(
    private readonly fd: number,
    opts: BatchedFdOptions = {},
  ) {
    this.batchChars = opts.batchChars ?? 4096;
    this.maxPendingChars = opts.maxPendingChars ?? 16 * 1024 * 1024;
    this.retryMs = opts.retryMs ?? 10;
  }

  /** Takes one line (pino passes each with its newline); false when it was dropped. */
  write(line: string): boolean {
    if (this.broken) return false;
    if (this.pending + line.length > this.maxPendingChars) {
      this.dropped++;
      return false;
    }
    this.lines.push(line);
    this.pending += line.length;
    if (!this.inFlight && this.pending >= this.batchChars) this.writeNext();
    return true;
  }

  /**
   * Starts writing whatever is pending (a timer calls this, so no line waits long); `done` is
   * called once all of it has been written (pino's `logger.flush(cb)`).
   */
  flush(done?: (err?: Error) => void): void {
    if (!this.broken && !this.inFlight && (this.pending > 0 || this.dropped > 0)) this.writeNext();
    if (!done) return;
    if (this.broken || !this.inFlight) setImmediate(done);
    else this.waiters.push(done);
  }

  /** Lines held and not yet handed to the descriptor. */
  get pendingLines(): number {
    return this.lines.length;
  }

  /**
   * At exit, with no event loop left: writes what is pending, synchronously. A batch whose write
   * is running on libuv's threads is left to it (writing it again could duplicate it); one waiting
   * out an EAGAIN is written here first.
   */
  flushSync(): void {
    if (this.broken) return;
    const parts: Buffer[] = [];
    if (this.inFlight?.retry) {
      clearTimeout(this.inFlight.retry);
      parts.push(this.inFlight.buf.subarray(this.inFlight.at));
      this.inFlight = undefined;
    }
    if (this.pending > 0 || this.dropped > 0) parts.push(this.take());
    const deadline = Date.now() + SYNC_RETRY_LIMIT_MS;
    for (const part of parts) {
      let at = 0;
      while (at < part.length) {
        try {
          at += writeSync(this.fd, part, at, part.length - at);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) return;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, this.retryMs);
        }
      }
    }
  }

  private take(): Buffer {
    if (this.dropped > 0) {
      this.lines.push(droppedLine(this.dropped));
      this.dropped = 0;
    }
    const buf = Buffer.from(this.lines.join(''), 'utf8');
    this.lines = [];
    this.pending = 0;
    return buf;
  }

  private writeNext(): void {
    const lines = this.lines.length + (this.dropped > 0 ? 1 : 0);
    this.send(this.take(), 0, lines);
  }

  private send(buf: Buffer, at: number, lines: number): void {
    const flight = { buf, at } as NonNullable<BatchedFdWriter['inFlight']>;
    this.inFlight = flight;
    write(this.fd, buf, at, buf.length - at, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          flight.retry = setTimeout(() => this.send(buf, at, lines), this.retryMs);
          return;
        }
        this.inFlight = undefined;
        if (err.code === 'EPIPE' || err.code === 'EBADF') {
          // Nobody reads the log any more: stop, and hold nothing.
          this.broken = true;
          this.lines = [];
          this.pending = 0;
        } else {
          // A full disk or an I/O error may pass: this batch is lost (and counted), later ones are tried.
          this.dropped += lines;
        }
        return this.release();
      }
      if (at + n < buf.length) return this.send(buf, at + n, lines);
      this.inFlight = undefined;
      // Waiters wait for everything pending when they asked: keep writing until it is all out.
      if (this.pending >= this.batchChars || (this.waiters.length > 0 && this.pending > 0)) this.writeNext();
      else this.release();
    });
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const done of waiters) done();
  }
}
