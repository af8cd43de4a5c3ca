// gRPC over raw node:http2, for tests that must send what no gRPC library would (fuzzing) or see
// what a library hides (GOAWAY, when exactly a stream ended). Requests are hand-encoded protobuf.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';

export const SDS = '/envoy.service.secret.v3.SecretDiscoveryService';
export const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
export const PATHS = {
  StreamSecrets: `${SDS}/StreamSecrets`,
  DeltaSecrets: `${SDS}/DeltaSecrets`,
  FetchSecrets: `${SDS}/FetchSecrets`,
  StreamAggregatedResources: `${ADS}/StreamAggregatedResources`,
  DeltaAggregatedResources: `${ADS}/DeltaAggregatedResources`,
} as const;
export const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

// --- protobuf writing (length-delimited fields are all these requests use) ---
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
/** A length-delimited field (strings, bytes, sub-messages). */
export function field(no: number, value: Buffer | string): Buffer {
  const b = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([varint((no << 3) | 2), varint(b.length), b]);
}

export interface RequestFields {
  node?: string;
  names?: string[];
  typeUrl?: string;
  nonce?: string;
  version?: string;
  errorDetail?: string;
}

/** envoy.service.discovery.v3.DiscoveryRequest */
export function discoveryRequest(r: RequestFields): Buffer {
  return Buffer.concat([
    r.version !== undefined ? field(1, r.version) : Buffer.alloc(0),
    r.node !== undefined ? field(2, field(1, r.node)) : Buffer.alloc(0),
    ...(r.names ?? []).map((n) => field(3, n)),
    r.typeUrl !== undefined ? field(4, r.typeUrl) : Buffer.alloc(0),
    r.nonce !== undefined ? field(5, r.nonce) : Buffer.alloc(0),
    r.errorDetail !== undefined ? field(6, field(3, r.errorDetail)) : Buffer.alloc(0),
  ]);
}

/** envoy.service.discovery.v3.DeltaDiscoveryRequest */
export function deltaRequest(r: RequestFields): Buffer {
  return Buffer.concat([
    r.node !== undefined ? field(1, field(1, r.node)) : Buffer.alloc(0),
    r.typeUrl !== undefined ? field(2, r.typeUrl) : Buffer.alloc(0),
    ...(r.names ?? []).map((n) => field(3, n)),
    r.nonce !== undefined ? field(6, r.nonce) : Buffer.alloc(0),
    r.errorDetail !== undefined ? field(7, field(3, r.errorDetail)) : Buffer.alloc(0),
  ]);
}

/** The gRPC length-prefixed message frame (uncompressed); `declaredLength` may lie. */
export function grpcFrame(msg: Buffer, declaredLength = msg.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, msg]);
}

export interface RawEnd {
  /** grpc-status from trailers (or trailers-only headers); undefined when the stream was reset or the connection lost. */
  code: number | undefined;
  message: string;
  /** HTTP :status, when headers arrived. */
  httpStatus?: number;
  /** Set when the stream ended without a gRPC status (RST_STREAM, connection closed). */
  error?: string;
  /** RST_STREAM code when the stream was reset (0 otherwise). */
  rstCode: number;
  atMs: number;
}

export interface RawCall {
  readonly stream: ClientHttp2Stream;
  /** Count of complete response messages received so far. */
  readonly received: number;
  /** The response messages themselves (without the gRPC frame), when the call was made with `keepMessages`. */
  readonly messages: Buffer[];
  readonly ended: Promise<RawEnd>;
  /** Resolves with the count once at least `n` messages arrived. */
  waitForMessages(n: number, timeoutMs: number): Promise<number>;
}

export function rawConnect(address: string): ClientHttp2Session {
  // Memory for buffered writes (MB): a 10 MB message the server refuses to read must not make this
  // client's own HTTP/2 layer refuse its next streams.
  const s = connect(`http://${address}`, { maxSessionMemory: 64 });
  s.on('error', () => undefined);
  return s;
}

export function rawCall(session: ClientHttp2Session, path: string, opts: { headers?: OutgoingHttpHeaders; body?: Buffer[]; endAfterBody?: boolean; keepMessages?: boolean } = {}): RawCall {
  const stream = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...opts.headers,
  });
  let buf = Buffer.alloc(0);
  let received = 0;
  const messages: Buffer[] = [];
  let httpStatus: number | undefined;
  let code: number | undefined;
  let message = '';
  const waiters = new Set<() => void>();
  const fromHeaders = (h: Record<string, unknown>) => {
    if (h['grpc-status'] !== undefined) {
      code = Number(h['grpc-status']);
      message = decodeURIComponent(String(h['grpc-message'] ?? ''));
    }
  };
  stream.on('response', (h) => {
    httpStatus = Number(h[':status']);
    fromHeaders(h);
    // Trailers-only response: the status came with the headers.
    if (code !== undefined) queueMicrotask(() => onStatus?.());
  });
  let onStatus: (() => void) | undefined;
  stream.on('trailers', (h) => {
    fromHeaders(h);
    // The server is done: the call has ended even while our half of the stream is still open.
    onStatus?.();
  });
  stream.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      if (opts.keepMessages) messages.push(buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
      received++;
    }
    for (const w of [...waiters]) w();
  });
  const ended = new Promise<RawEnd>((resolve) => {
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      for (const w of [...waiters]) w();
      resolve({ code, message, httpStatus, error: code === undefined ? (error ?? `closed (rst code ${stream.rstCode})`) : undefined, rstCode: stream.rstCode ?? 0, atMs: Date.now() });
    };
    onStatus = () => {
      finish();
      // Half-close our side gracefully (an RST per call looks like a rapid-reset flood to a server).
      if (!stream.closed && stream.writable) stream.end();
    };
    stream.on('close', () => finish());
    stream.on('error', (e) => finish(e.message));
  });
  for (const b of opts.body ?? []) stream.write(b);
  if (opts.endAfterBody) stream.end();
  const call: RawCall = {
    stream,
    get received() {
      return received;
    },
    messages,
    ended,
    waitForMessages(n, timeoutMs) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`got ${received} messages, wanted ${n}, within ${timeoutMs} ms`));
        }, timeoutMs);
        const check = () => {
          if (received >= n) {
            clearTimeout(t);
            waiters.delete(check);
            resolve(received);
          } else if (stream.closed) {
            clearTimeout(t);
            waiters.delete(check);
            reject(new Error(`stream closed after ${received} messages, wanted ${n} (grpc-status ${code} ${message})`));
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
  return call;
}

export const HTTP2_NO_ERROR = constants.NGHTTP2_NO_ERROR;
