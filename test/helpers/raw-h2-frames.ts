// HTTP/2 written frame by frame over a bare TCP socket, for what node's client refuses to send
// (DATA after END_STREAM, say). Request headers are HPACK literals without indexing, so nothing
// needs a table; responses are read only as far as frame type, flags, stream and payload.
import { connect, type Socket } from 'node:net';

export const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** A header block of literal fields without indexing (names and values under 127 bytes). */
function headerBlock(fields: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v);
  }
  return Buffer.concat(parts);
}

/** HEADERS opening a gRPC POST to `path` on `stream`, with any `extra` metadata. */
export function grpcRequestHeaders(stream: number, path: string, extra: [string, string][] = []): Buffer {
  const block = headerBlock([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'localhost'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ...extra,
  ]);
  return frame(FrameType.HEADERS, Flag.END_HEADERS, stream, block);
}

export interface RawH2Connection {
  readonly socket: Socket;
  /** Every frame the server sent so far. */
  readonly frames: Frame[];
  send(...frames: Buffer[]): void;
  /** Resolves once a frame matching `pred` has arrived (rejects after `ms`). */
  waitForFrame(pred: (f: Frame) => boolean, ms: number): Promise<Frame>;
}

/** Connects, sends the preface and an empty SETTINGS, and ACKs the server's SETTINGS. */
export function rawH2Connect(port: number, host = '127.0.0.1'): RawH2Connection {
  const socket = connect(port, host);
  socket.on('error', () => undefined);
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 9) {
      const length = buf.readUIntBE(0, 3);
      if (buf.length < 9 + length) break;
      const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + length) };
      buf = buf.subarray(9 + length);
      frames.push(f);
      if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
    }
    for (const w of [...waiters]) w();
  });
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FrameType.SETTINGS, 0, 0)]));
  return {
    socket,
    frames,
    send: (...out) => void socket.write(Buffer.concat(out)),
    waitForFrame(pred, ms) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no such frame within ${ms} ms; got ${frames.map((f) => `${f.type}/${f.stream}`).join(' ')}`));
        }, ms);
        const check = () => {
          const found = frames.find(pred);
          if (!found) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
