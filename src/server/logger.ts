// Structured JSON logging. Redaction is configured here, once, so that a careless
// `log.info({ svid }, ...)` anywhere in the code base still cannot leak a key or a token.
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { BatchedFdWriter } from './log-destination.js';

export type Logger = PinoLogger;

export const REDACTED = '[REDACTED]';

/** Field names whose values are secret wherever they appear in a logged object. */
const SECRET_FIELDS: ReadonlySet<string> = new Set(['key', 'keyPem', 'privateKey', 'privateKeyPem', 'token', 'authorization', 'password']);
/** How deep a logged object is searched (top level is 0): { req: { headers: { authorization } } } and deeper. */
const MAX_REDACT_DEPTH = 4;

export interface LoggerOptions {
  /** Where JSON lines go; stdout when absent. Tests pass a capturing stream. */
  destination?: DestinationStream;
  /** Extra bindings added to every line (e.g. `{ component: 'sds' }`). */
  base?: Record<string, unknown>;
}

/** Duck type of @grpc/grpc-js Metadata, which otherwise serialises as `{}` and hides what was sent. */
interface MetadataLike {
  getMap(): Record<string, unknown>;
}

function isMetadataLike(v: unknown): v is MetadataLike {
  return typeof v === 'object' && v !== null && typeof (v as { getMap?: unknown }).getMap === 'function';
}

/** gRPC metadata becomes a plain object (binary values as a byte count) so its authorization is redacted. */
function serializeMetadata(v: unknown): unknown {
  if (!isMetadataLike(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v.getMap())) {
    out[k] = Buffer.isBuffer(val) ? `<${val.length} bytes>` : val;
  }
  return out;
}

/**
 * Returns `v` with every secret field's value replaced by [REDACTED], copying only the objects on the
 * way to one (the usual line has none and is returned as it is). A walk of the few fields of a log
 * line costs about a microsecond, where pino's path-based redaction cost 25 µs per line: at 10,000
 * proxies connecting, that was most of the cost of logging "stream opened".
 */
export function redactSecrets(v: unknown, depth = 0): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (isMetadataLike(v)) v = serializeMetadata(v);
  else if (v instanceof Error) v = pino.stdSerializers.err(v);
  if (depth > MAX_REDACT_DEPTH || ArrayBuffer.isView(v) || v instanceof Date) return v;
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const r = redactSecrets(v[i], depth + 1);
      if (r !== v[i]) (copy ??= v.slice())[i] = r;
    }
    return copy ?? v;
  }
  const obj = v as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const k of Object.keys(obj)) {
    const val = obj[k];
    const r = SECRET_FIELDS.has(k) && val !== undefined ? REDACTED : redactSecrets(val, depth + 1);
    if (r !== val) (copy ??= { ...obj })[k] = r;
  }
  return copy ?? obj;
}

let timeMs = -1;
let timeField = '';
/** pino's isoTime, formatted once per millisecond: a connect storm logs several lines in each. */
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== timeMs) {
    timeMs = now;
    timeField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return timeField;
}

/** How long a log line may wait in the stdout buffer before it is written. */
const LOG_FLUSH_MS = 200;

let stdoutDestination: BatchedFdWriter | undefined;

/**
 * stdout written in batches of 4 KiB or more (flushed at least every 200 ms and at exit) instead of
 * one write system call per line: 10,000 proxies connecting log 20,000 "stream opened" lines.
 * One per process, so loggers never interleave partial buffers.
 */
function bufferedStdout(): DestinationStream {
  if (stdoutDestination) return stdoutDestination;
  const dest = new BatchedFdWriter(1);
  stdoutDestination = dest;
  setInterval(() => dest.flush(), LOG_FLUSH_MS).unref();
  process.once('exit', () => dest.flushSync());
  return dest;
}

export function createLogger(level: string, opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'mesh-sds', ...opts.base },
    timestamp: isoTimeOncePerMs,
    // gRPC metadata becomes a plain object inside redactSecrets (formatters.log runs first), at any depth.
    serializers: { err: pino.stdSerializers.err },
    formatters: {
      level: (label) => ({ level: label }),
      log: (obj) => redactSecrets(obj) as Record<string, unknown>,
      bindings: (bindings) => redactSecrets(bindings) as Record<string, unknown>,
    },
  };
  const root = pino(options, opts.destination ?? bufferedStdout());
  // pino applies the bindings formatter to the root only; children (which inherit this) redact their own.
  const child = root.child;
  root.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, redactSecrets(bindings) as pino.Bindings, childOptions);
  } as typeof root.child;
  return root;
}

export interface WarnLimitOptions {
  /** Length of a window (10 s). */
  windowMs?: number;
  /** Lines logged per source and message in a window before the rest are only counted (1). */
  burst?: number;
  /** Sources tracked at once; beyond this, new sources share one bucket (10,000). */
  maxSources?: number;
}

interface Bucket {
  logged: number;
  suppressed: number;
  timer?: NodeJS.Timeout;
}

/**
 * Repeated warnings from one source (a peer, a file, a proxy) are summarised: the first `burst`
 * of each message per window are logged, the rest counted, and at the end of the window one line
 * says "… and N more like this in the last 10 s". Bounded memory: at most `maxSources` buckets.
 */
export class WarnLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly maxSources: number;

  constructor(
    private readonly log: Logger,
    opts: WarnLimitOptions = {},
  ) {
    this.windowMs = opts.windowMs ?? 10_000;
    this.burst = opts.burst ?? 1;
    this.maxSources = opts.maxSources ?? 10_000;
  }

  warn(source: string, obj: Record<string, unknown>, msg: string): void {
    let key = `${source}\u0000${msg}`;
    let b = this.buckets.get(key);
    if (!b && this.buckets.size >= this.maxSources) {
      key = `*\u0000${msg}`;
      source = '*';
      b = this.buckets.get(key);
    }
    if (!b) {
      b = { logged: 0, suppressed: 0 };
      this.buckets.set(key, b);
      const bucket = b;
      const from = source;
      b.timer = setTimeout(() => this.flush(key, bucket, from, msg), this.windowMs);
      b.timer.unref();
    }
    if (b.logged < this.burst) {
      b.logged++;
      this.log.warn(obj, msg);
    } else {
      b.suppressed++;
    }
  }

  private flush(key: string, b: Bucket, source: string, msg: string): void {
    this.buckets.delete(key);
    if (b.suppressed > 0) {
      const window = this.windowMs >= 1000 ? `${Math.round(this.windowMs / 1000)} s` : `${this.windowMs} ms`;
      this.log.warn({ source, suppressed: b.suppressed, windowMs: this.windowMs }, `${msg} … and ${b.suppressed} more like this in the last ${window}`);
    }
  }

  /** Logs every pending summary now (shutdown). */
  flushAll(): void {
    for (const [key, b] of [...this.buckets]) {
      clearTimeout(b.timer);
      const i = key.indexOf('\u0000');
      this.flush(key, b, key.slice(0, i), key.slice(i + 1));
    }
  }
}

const limiters = new WeakMap<Logger, WarnLimiter>();

/** The logger's shared limiter (one per logger, created on first use). */
export function limitedWarn(log: Logger, source: string, obj: Record<string, unknown>, msg: string): void {
  let l = limiters.get(log);
  if (!l) {
    l = new WarnLimiter(log);
    limiters.set(log, l);
  }
  l.warn(source, obj, msg);
}

/** The peer's address without its port: one client reconnecting from new ports is one source. */
export function peerSource(peer: string): string {
  const m = /^(.*):\d+$/.exec(peer);
  return m?.[1] ?? peer;
}
