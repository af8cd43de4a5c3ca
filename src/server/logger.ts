// Structured JSON logging. Redaction is configured here, once, so that a careless
// `log.info({ svid }, ...)` anywhere in the code base still cannot leak a key or a token.
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { REDACTED, scrubSecretText } from '../api/secret-text.js';
import { BatchedFdWriter } from './log-destination.js';
import { isSecretField } from './secret-fields.js';

export type Logger = PinoLogger;

export { REDACTED };

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

const CIRCULAR = '[Circular]';
/**
 * The objects on the path to the one being walked, by depth: meeting one again is a cycle. A walk
 * has no depth limit (a secret six levels down is still found); cycles end it instead.
 */
const ancestors: unknown[] = [];
/** The deepest entry of `ancestors` written by the current walk, cleared after it. */
let deepest = 0;

/**
 * Returns `v` with every secret field's value replaced by [REDACTED], copying only the objects on the
 * way to one (the usual line has none and is returned as it is). A walk of the few fields of a log
 * line costs a tenth of a microsecond, where pino's path-based redaction cost 25 µs per line: at 10,000
 * proxies connecting, that was most of the cost of logging "stream opened". Field names match in
 * any case; errors become pino's serialised form (message and stack with their causes), binary
 * data a byte count, and a cycle `[Circular]` (pointing back at the original would print what the
 * copy redacted). Every string is scrubbed of key blocks, JWTs, bearer credentials and URL
 * credentials (an error's message and stack carry its causes' messages).
 */
export function redactSecrets(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  let r: unknown;
  try {
    r = redact(v, 0);
  } catch (e) {
    // Thousands of levels deep: what cannot be checked is not logged, and logging does not throw.
    if (!(e instanceof RangeError)) throw e;
    r = { fieldsNotLogged: 'nested too deeply to be checked for secrets' };
  } finally {
    for (let i = 0; i <= deepest; i++) ancestors[i] = undefined; // keeps nothing logged alive
    deepest = 0;
  }
  return r;
}

function redact(v: object, depth: number): unknown {
  for (let i = 0; i < depth; i++) if (ancestors[i] === v) return CIRCULAR;
  ancestors[depth] = v;
  if (depth > deepest) deepest = depth;
  if (isMetadataLike(v)) v = serializeMetadata(v) as object;
  else if (v instanceof Error) v = pino.stdSerializers.err(v);
  else if (v instanceof Date) return v;
  // Both turn an object into a string, which only a field can be: pino takes the top level's own keys.
  else if (ArrayBuffer.isView(v)) return depth === 0 ? v : `<${v.byteLength} bytes>`;
  else if (depth > 0 && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
    // What JSON.stringify will print instead (a URL object: its href, password included).
    const json: unknown = (v as { toJSON(): unknown }).toJSON();
    if (typeof json === 'string') return scrubSecretText(json);
    return typeof json === 'object' && json !== null && json !== v ? redact(json, depth + 1) : json;
  }
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i];
      const r = typeof item === 'string' ? scrubSecretText(item) : typeof item === 'object' && item !== null ? redact(item, depth + 1) : item;
      if (r !== item) (copy ??= v.slice())[i] = r;
    }
    return copy ?? v;
  }
  const obj = v as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const k of Object.keys(obj)) {
    const val = obj[k];
    if (val === undefined) continue;
    let r: unknown = val;
    if (isSecretField(k)) r = REDACTED;
    else if (typeof val === 'string') r = scrubSecretText(val);
    else if (typeof val === 'object' && val !== null) r = redact(val, depth + 1);
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
    serializers: {
      // formatters.log runs first and has serialised every error (at any depth) and turned gRPC
      // metadata into a plain object; serialising that again would name every error's type "Object".
      err: (e: unknown) => (e instanceof Error ? pino.stdSerializers.err(e) : e),
      // The message (formatted, or the error's when none is given), scrubbed as the fields' strings
      // are. Cheaper than a logMethod hook (~0.1 µs a line) or scrubbing the finished line (which
      // flattens the string pino builds in pieces).
      msg: (m: unknown) => (typeof m === 'string' ? scrubSecretText(m) : m),
    },
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

/**
 * A line's fields, or a function making them: called only when the line is logged, so fields that
 * cost a pass over what a peer sent (scrubbing its names) are not made for each suppressed repeat.
 */
export type LogFields = Record<string, unknown> | (() => Record<string, unknown>);

interface Bucket {
  logged: number;
  suppressed: number;
  level: 'warn' | 'debug';
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

  warn(source: string, obj: LogFields, msg: string): void {
    this.emit('warn', source, obj, msg);
  }

  /** As warn, at debug level: what a peer can make the server say per message is summarised too. */
  debug(source: string, obj: LogFields, msg: string): void {
    if (this.log.isLevelEnabled('debug')) this.emit('debug', source, obj, msg);
  }

  private emit(level: 'warn' | 'debug', source: string, obj: LogFields, msg: string): void {
    let key = `${level}\u0000${source}\u0000${msg}`;
    let b = this.buckets.get(key);
    if (!b && this.buckets.size >= this.maxSources) {
      key = `${level}\u0000*\u0000${msg}`;
      source = '*';
      b = this.buckets.get(key);
    }
    if (!b) {
      b = { logged: 0, suppressed: 0, level };
      this.buckets.set(key, b);
      const bucket = b;
      const from = source;
      b.timer = setTimeout(() => this.flush(key, bucket, from, msg), this.windowMs);
      b.timer.unref();
    }
    if (b.logged < this.burst) {
      b.logged++;
      this.log[level](typeof obj === 'function' ? obj() : obj, msg);
    } else {
      b.suppressed++;
    }
  }

  private flush(key: string, b: Bucket, source: string, msg: string): void {
    this.buckets.delete(key);
    if (b.suppressed > 0) {
      const window = this.windowMs >= 1000 ? `${Math.round(this.windowMs / 1000)} s` : `${this.windowMs} ms`;
      this.log[b.level]({ source, suppressed: b.suppressed, windowMs: this.windowMs }, `${msg} … and ${b.suppressed} more like this in the last ${window}`);
    }
  }

  /** Logs every pending summary now (shutdown). */
  flushAll(): void {
    for (const [key, b] of [...this.buckets]) {
      clearTimeout(b.timer);
      const [, source, msg] = key.split('\u0000') as [string, string, string];
      this.flush(key, b, source, msg);
    }
  }
}

const limiters = new WeakMap<Logger, WarnLimiter>();

/** The logger's shared limiter (one per logger, created on first use). */
function sharedLimiter(log: Logger): WarnLimiter {
  let l = limiters.get(log);
  if (!l) {
    l = new WarnLimiter(log);
    limiters.set(log, l);
  }
  return l;
}

export function limitedWarn(log: Logger, source: string, obj: LogFields, msg: string): void {
  sharedLimiter(log).warn(source, obj, msg);
}

export function limitedDebug(log: Logger, source: string, obj: LogFields, msg: string): void {
  sharedLimiter(log).debug(source, obj, msg);
}

/** The peer's address without its port: one client reconnecting from new ports is one source. */
export function peerSource(peer: string): string {
  const m = /^(.*):\d+$/.exec(peer);
  return m?.[1] ?? peer;
}
