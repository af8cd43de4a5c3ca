// A small SDS client that behaves like Envoy on a state-of-the-world StreamSecrets stream: node on
// the first request only, ACK (version_info + response_nonce) after each response it accepts, NACK
// (error_detail, previous version) for one it rejects, and reconnects with Envoy's jittered
// exponential backoff (500 ms doubling to 30 s) — except on UNAUTHENTICATED / INVALID_ARGUMENT,
// which retrying cannot fix, unless the caller keeps going whatever happens (the watching agent,
// whose token may be refreshed in the meantime).
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { readFlagFileSync } from '../api/flag-file.js';
import type { DiscoveryRequest, DiscoveryResponse } from '../xds/messages.js';
import { SECRET_TYPE_URL, loadProtos } from '../xds/protos.js';
import { decodeSecretResource, type DecodedSecret } from './decode.js';

export type { DecodedSecret } from './decode.js';

export interface SdsTlsOptions {
  /** PEM of the CA that signs the server certificate, or a path to such a file. Absent: system roots. */
  ca?: string;
  /** Accept any server certificate (testing only; the private key still travels encrypted). */
  insecureSkipVerify?: boolean;
  /** Name to check the server certificate against, when it differs from the dialled host. */
  serverName?: string;
}

export interface SdsClientOptions {
  /** `host:port` or `unix:///path`. */
  server: string;
  /** Envoy node id, `<mesh>.<dataplane-name>`. */
  node: string;
  /** node.cluster; defaults to the dataplane name. */
  cluster?: string;
  /** Sent as `authorization: Bearer <token>`; never logged. A function is asked again on every (re)connect. */
  token?: string | (() => string | undefined);
  names: string[];
  /** TLS to the server; absent means plaintext (loopback / unix socket). */
  tls?: SdsTlsOptions;
  /** Reconnect backoff; defaults are Envoy's (500 ms base, 30 s cap). */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * A connection still not ready this long after a stream was opened (a TCP connect or a TLS
   * handshake nobody answers) is given up and tried again with a new channel; default 20 s.
   */
  connectTimeoutMs?: number;
  /** Retry on every status, UNAUTHENTICATED and INVALID_ARGUMENT too (Envoy does): `done` then rejects only on close(). */
  retryEveryStatus?: boolean;
  /** Transient problems (stream errors before a retry, NACKs sent). Fatal errors reject `done` instead. */
  onError?: (err: SdsError, retryInMs?: number) => void;
  /**
   * A response this client NACKed because its own handler failed. Given, it replaces the onError
   * call, whose INVALID_ARGUMENT would read like the server's status (the agent reports its own
   * failures once, with what it was doing).
   */
  onNack?: (version: string, message: string) => void;
}

/** A gRPC status from the server (or a rejection by this client), safe to print: no token inside. */
export class SdsError extends Error {
  override name = 'SdsError';
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly fatal: boolean,
  ) {
    super(`${grpc.status[code] ?? code}: ${details}`);
  }
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

/** Retrying cannot fix these (Envoy would keep retrying, but a one-shot CLI should stop and say why). */
export const FATAL_CODES: ReadonlySet<grpc.status> = new Set([grpc.status.UNAUTHENTICATED, grpc.status.INVALID_ARGUMENT]);

/**
 * Called with the secrets of each response, its version_info, and every accepted secret of the
 * stream with these merged in (SotW responses for SDS need not repeat unchanged names). Throwing
 * or rejecting NACKs the response; the previous state stays accepted.
 */
export type SecretsCallback = (secrets: DecodedSecret[], versionInfo: string, all: ReadonlyMap<string, DecodedSecret>) => void | Promise<void>;

export interface SecretStream {
  close(): void;
  /** Resolves after close(); rejects with an SdsError on a fatal status. */
  done: Promise<void>;
}

export interface FetchOnceOptions extends SdsClientOptions {
  /** Give up after this long without every name (default 15 s). */
  timeoutMs?: number;
}

export interface FetchResult {
  /** One per requested name, in request order. */
  secrets: DecodedSecret[];
  versionInfo: string;
}

type SdsStub = grpc.Client & {
  StreamSecrets(md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
};

function credentials(tls: SdsTlsOptions | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  // A path is read as the CLI reads --ca-file: a FIFO or a device is refused, not waited on or read without end.
  const ca = tls.ca === undefined ? null : tls.ca.includes('-----BEGIN') ? Buffer.from(tls.ca) : readFlagFileSync('tls.ca', tls.ca);
  const verify: grpc.VerifyOptions = tls.insecureSkipVerify ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {};
  return grpc.credentials.createSsl(ca, null, null, verify);
}

/**
 * HTTP/2 pings on an open connection find a dead one (host gone, network partition) that TCP alone
 * would never report. Every 30 s is far below what the server allows (20 pings per 10 s).
 */
const KEEPALIVE_TIME_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;

/** grpc-js has no connect timeout: a stream waits for ever on a handshake nobody answers. */
const CONNECT_TIMEOUT_MS = 20_000;

type SecureConnector = { connect(socket: Socket): Promise<unknown> };

/**
 * grpc-js has no connect timeout and cannot end a connection stuck before it is ready (a TLS
 * handshake, or HTTP/2 settings, nobody answers: a frozen server whose kernel still accepts), so
 * each new channel after a give-up would leave one more socket open to it for good. Each
 * connection's TCP socket is destroyed when the channel is still not ready `ms` after it connected;
 * grpc-js then fails that connection and the stream is retried. Wraps grpc-js' internal
 * `_createSecureConnector` (1.14); without it, the stream's own give-up still retries.
 */
function withConnectTimeout(creds: grpc.ChannelCredentials, ms: number, isReady: () => boolean): grpc.ChannelCredentials {
  const internal = creds as unknown as { _createSecureConnector?: (...args: unknown[]) => SecureConnector };
  const create = internal._createSecureConnector;
  if (typeof create !== 'function') return creds;
  internal._createSecureConnector = function (this: unknown, ...args: unknown[]): SecureConnector {
    const connector = create.apply(this, args);
    const connect = connector.connect.bind(connector);
    connector.connect = (socket: Socket) => {
      setTimeout(() => {
        if (!isReady()) socket.destroy(new Error(`no answer within ${ms / 1000} s of connecting`));
      }, ms).unref();
      return connect(socket);
    };
    return connector;
  };
  return creds;
}

export function makeSdsClient(server: string, tls?: SdsTlsOptions, connectTimeoutMs = CONNECT_TIMEOUT_MS): grpc.Client {
  const protos = loadProtos();
  const Ctor = grpc.makeGenericClientConstructor(protos.SecretDiscoveryService, 'SecretDiscoveryService');
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    // Its own connections: grpc-js shares plaintext ones between channels to one target, and the
    // connect timeout asks this channel whether they are ready (a closed one would cut them all).
    'grpc.use_local_subchannel_pool': 1,
  };
  if (tls?.serverName) options['grpc.ssl_target_name_override'] = tls.serverName;
  // The timer asking isReady fires only after the client exists (a connection starts on a call).
  const isReady = (): boolean => client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
  const client: grpc.Client = new Ctor(server, withConnectTimeout(credentials(tls), connectTimeoutMs, isReady), options);
  return client;
}

export function bearerMetadata(token: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (!token) return md;
  // grpc-js refuses such a value with an error that quotes it whole: refuse it here, unquoted.
  if (!/^[\x21-\x7e]+$/.test(token)) throw new Error('the token contains whitespace or characters outside printable ASCII (a mesh-sds token is base64url text); check the token file');
  md.set('authorization', `Bearer ${token}`);
  return md;
}

export function nodeOf(node: string, cluster?: string): { id: string; cluster: string; user_agent_name: string } {
  const dot = node.indexOf('.');
  return { id: node, cluster: cluster ?? (dot > 0 ? node.slice(dot + 1) : node), user_agent_name: 'mesh-sds-fetch' };
}

/** Envoy's JitteredExponentialBackOffStrategy: uniform in [0, interval), interval doubling to the cap. */
export class Backoff {
  private interval: number;
  constructor(
    private readonly initialMs = 500,
    private readonly maxMs = 30_000,
    private readonly random: () => number = Math.random,
  ) {
    this.interval = initialMs;
  }
  next(): number {
    const ms = Math.floor(this.random() * this.interval);
    this.interval = Math.min(this.interval * 2, this.maxMs);
    return Math.min(ms, this.maxMs);
  }
  reset(): void {
    this.interval = this.initialMs;
  }
}

export function openSecretStream(opts: SdsClientOptions, onSecrets: SecretsCallback): SecretStream {
  const connectMs = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  let client = makeSdsClient(opts.server, opts.tls, connectMs) as SdsStub;
  const backoff = new Backoff(opts.backoff?.initialMs, opts.backoff?.maxMs);
  const node = nodeOf(opts.node, opts.cluster);
  const asked = (name: string): boolean => opts.names.length === 0 || opts.names.includes(name);
  let closed = false;
  let call: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let connectTimer: NodeJS.Timeout | undefined;
  // What this client has accepted, carried over reconnects like Envoy's last ACKed version.
  let acceptedVersion = '';
  let accepted = new Map<string, DecodedSecret>();
  let settle!: (err?: SdsError) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });

  const finish = (err?: SdsError) => {
    if (closed) return;
    closed = true;
    clearTimeout(retryTimer);
    clearTimeout(connectTimer);
    const c = call;
    call = undefined;
    c?.cancel();
    client.close();
    settle(err);
  };

  const retryLater = (err: SdsError) => {
    const wait = backoff.next();
    opts.onError?.(err, wait);
    retryTimer = setTimeout(connect, wait);
  };

  /**
   * The stream's connection is not ready after connectTimeoutMs: its channel is dropped and a new
   * one tried (the stuck connection's socket is destroyed by withConnectTimeout).
   */
  const giveUpConnecting = (c: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>) => {
    if (call !== c || closed || client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY) return;
    call = undefined;
    c.cancel();
    client.close();
    client = makeSdsClient(opts.server, opts.tls, connectMs) as SdsStub;
    retryLater(new SdsError(grpc.status.UNAVAILABLE, `no connection to ${opts.server} within ${connectMs / 1000} s (the TCP connect or TLS handshake got no answer)`, false));
  };

  const connect = () => {
    if (closed) return;
    const c = client.StreamSecrets(bearerMetadata(typeof opts.token === 'function' ? opts.token() : opts.token));
    call = c;
    clearTimeout(connectTimer);
    connectTimer = setTimeout(() => giveUpConnecting(c), connectMs);
    let first = true;
    let chain = Promise.resolve();
    const send = (req: DiscoveryRequest) => {
      if (call !== c) return;
      const full: DiscoveryRequest = { type_url: SECRET_TYPE_URL, resource_names: opts.names, ...req };
      if (first) full.node = node;
      first = false;
      c.write(full);
    };
    const handle = async (res: DiscoveryResponse) => {
      if (call !== c) return;
      backoff.reset();
      const version = res.version_info ?? '';
      try {
        // A response answers the watch of its type_url: one of another type (a server mixing up its
        // streams) is not read as secrets, whatever its resources say (Envoy has no watch for it).
        if (res.type_url !== SECRET_TYPE_URL) {
          throw new Error(`response of type ${JSON.stringify(res.type_url ?? '')}, not ${SECRET_TYPE_URL}: not read`);
        }
        // Only the names asked for: others are neither checked (a broken one would NACK those
        // asked for with it) nor kept (a server sending ever new names would grow `accepted`).
        // Envoy rejects a watch handed more than one secret ("Unexpected SDS secrets length"):
        // which of two is meant cannot be told. Refused before the second is parsed, so that
        // thousands of copies of one cost no more than one.
        const named = new Set<string>();
        const wanted = (name: string): boolean => {
          if (!asked(name)) return false;
          if (named.has(name)) throw new Error(`secret ${JSON.stringify(name)} comes more than once in the response: not read`);
          named.add(name);
          return true;
        };
        const secrets = (res.resources ?? []).flatMap((r) => decodeSecretResource(r, wanted) ?? []);
        const merged = new Map(accepted);
        for (const s of secrets) merged.set(s.name, s);
        await onSecrets(secrets, version, merged);
        accepted = merged;
        acceptedVersion = version;
        send({ version_info: version, response_nonce: res.nonce });
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        send({ version_info: acceptedVersion, response_nonce: res.nonce, error_detail: { code: grpc.status.INVALID_ARGUMENT, message } });
        if (opts.onNack) opts.onNack(version, message);
        else opts.onError?.(new SdsError(grpc.status.INVALID_ARGUMENT, `rejected version ${version || '(empty)'}: ${message}`, false));
      }
    };
    // One response at a time: the stream is paused while one is handled (HTTP/2 flow control then
    // holds the server back), so a server pushing faster than the files are written (up to 16 MiB
    // a response) does not pile its responses up in memory.
    c.on('data', (res: DiscoveryResponse) => {
      c.pause();
      chain = chain.then(() => handle(res)).finally(() => c.resume());
    });
    // Every outcome arrives as 'status'; 'error' repeats non-OK ones and must merely be listened to.
    c.on('error', () => undefined);
    c.on('status', (st: grpc.StatusObject) => {
      if (call !== c || closed) return;
      call = undefined;
      // grpc-js gives an OK status the details "OK": "OK: OK" says nothing of what happened.
      const details = st.code === grpc.status.OK ? 'the server closed the stream' : st.details || 'stream failed';
      const err = new SdsError(st.code, details, !opts.retryEveryStatus && FATAL_CODES.has(st.code));
      if (err.fatal) return finish(err);
      retryLater(err);
    });
    send({ version_info: acceptedVersion, response_nonce: '' });
  };

  connect();
  return { close: () => finish(), done };
}

/** Streams until every name has arrived once (ACKing it), then closes; rejects on a fatal status or timeout. */
export function fetchOnce(opts: FetchOnceOptions): Promise<FetchResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise<FetchResult>((resolve, reject) => {
    let result: FetchResult | undefined;
    let lastError: SdsError | undefined;
    let failure: SdsError | undefined;
    let have = new Set<string>();
    const stream = openSecretStream(
      {
        ...opts,
        onError: (err, retry) => {
          lastError = err;
          opts.onError?.(err, retry);
        },
      },
      (_secrets, versionInfo, all) => {
        have = new Set(all.keys());
        if (result || !opts.names.every((n) => all.has(n))) return;
        result = { secrets: opts.names.map((n) => all.get(n)!), versionInfo };
        // Close after this callback returns, so the ACK goes out first.
        setImmediate(() => stream.close());
      },
    );
    const timer = setTimeout(() => {
      const missing = opts.names.filter((n) => !have.has(n)).map((n) => JSON.stringify(n));
      const last = lastError ? ` (last error ${lastError.message})` : '';
      failure = new SdsError(grpc.status.DEADLINE_EXCEEDED, `no answer for ${missing.join(', ')} within ${timeoutMs} ms${last}`, true);
      stream.close();
    }, timeoutMs);
    stream.done.then(
      () => {
        clearTimeout(timer);
        if (result) resolve(result);
        else reject(failure ?? new SdsError(grpc.status.CANCELLED, 'closed before every secret arrived', true));
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
