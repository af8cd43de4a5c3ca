// A minimal gRPC client for bidirectional streams straight over node:http2, for the load generators:
// they share the 2 cores with the server, and grpc-js's per-call machinery (interceptors, filters,
// listeners) costs the clients more CPU than the server spends on the same stream. On the wire it
// is ordinary gRPC: HTTP/2 POST, `application/grpc`, 5-byte length-prefixed messages, status in
// the trailers — what Envoy's own gRPC client sends.
import http2 from 'node:http2';

export interface RawStreamHandlers {
  onMessage: (msg: Buffer) => void;
  /** The stream ended: grpc-status (0 = OK) and grpc-message, or a transport error. */
  onEnd: (status: number, message: string) => void;
}

export interface RawStream {
  write(msg: Buffer): void;
  cancel(): void;
}

export class RawGrpcConnection {
  private constructor(private readonly session: http2.ClientHttp2Session) {}

  /** `localAddress`: source address (several 127.0.0.x spread 10,000s of connections over more port ranges). */
  static connect(target: string, opts: { localAddress?: string; windowBytes?: number; waitForSettings?: boolean } = {}): Promise<RawGrpcConnection> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://${target}`, {
        settings: { initialWindowSize: 1 << 20, maxConcurrentStreams: 1 << 20 },
        peerMaxConcurrentStreams: 1 << 20,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      } as http2.ClientSessionOptions);
      session.once('error', reject);
      session.once('close', () => reject(new Error('connection closed before it was established')));
      // Established = the server's SETTINGS arrived: the server has accepted the connection (a
      // TCP handshake alone only means the kernel queued it, and a full accept queue resets it).
      session.once(opts.waitForSettings ? 'remoteSettings' : 'connect', () => {
        session.off('error', reject);
        session.on('error', () => undefined);
        // Connection-level flow-control window: many streams share it.
        session.setLocalWindowSize(opts.windowBytes ?? 64 << 20);
        resolve(new RawGrpcConnection(session));
      });
    });
  }

  openStream(path: string, handlers: RawStreamHandlers, headers: Record<string, string> = {}): RawStream {
    const req = this.session.request(
      { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers },
      { endStream: false },
    );
    let pending: Buffer | undefined;
    let ended = false;
    const end = (status: number, message: string) => {
      if (ended) return;
      ended = true;
      handlers.onEnd(status, message);
    };
    req.on('data', (chunk: Buffer) => {
      let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        handlers.onMessage(buf.subarray(5, 5 + len));
        buf = buf.subarray(5 + len);
      }
      pending = buf.length > 0 ? buf : undefined;
    });
    req.on('trailers', (t) => end(Number(t['grpc-status'] ?? 2), String(t['grpc-message'] ?? '')));
    req.on('response', (h) => {
      // A trailers-only response carries the status in the headers.
      if (h['grpc-status'] !== undefined) end(Number(h['grpc-status']), String(h['grpc-message'] ?? ''));
    });
    req.on('error', (e) => end(14, e.message));
    req.on('close', () => end(req.rstCode === http2.constants.NGHTTP2_CANCEL ? 1 : 14, 'stream closed'));
    return {
      write: (msg) => {
        const frame = Buffer.allocUnsafe(5 + msg.length);
        frame[0] = 0;
        frame.writeUInt32BE(msg.length, 1);
        msg.copy(frame, 5);
        req.write(frame);
      },
      cancel: () => req.close(http2.constants.NGHTTP2_CANCEL),
    };
  }

  close(): void {
    this.session.close();
  }

  /** Ends the connection at once (its streams are reset). */
  destroy(): void {
    this.session.destroy();
  }

  onClose(fn: () => void): void {
    this.session.once('close', fn);
  }
}
