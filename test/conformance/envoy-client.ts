// A small test client that speaks SDS the way Envoy does: node on the first request only, explicit
// ACK/NACK, and a queue of received responses the tests read with next()/expectNothing().
import * as grpc from '@grpc/grpc-js';
import type {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
  Node,
} from '../../src/xds/messages.js';
import { SECRET_TYPE_URL, decodeSecret, fromAny, loadProtos } from '../../src/xds/protos.js';

export type Api = 'sds' | 'ads';

export interface ConnectOptions {
  /** Node id `<mesh>.<name>`; sent on the first request only (set_node_on_first_message_only). */
  node: string;
  token?: string;
  api?: Api;
  /** Share one channel between streams (Envoy multiplexes streams on one HTTP/2 connection). */
  client?: grpc.Client;
}

type AnyClient = grpc.Client & Record<string, (...args: any[]) => any>;

const ctors = new Map<Api, grpc.ServiceClientConstructor>();
function ctor(api: Api): grpc.ServiceClientConstructor {
  let c = ctors.get(api);
  if (!c) {
    const protos = loadProtos();
    c = grpc.makeGenericClientConstructor(api === 'sds' ? protos.SecretDiscoveryService : protos.AggregatedDiscoveryService, api);
    ctors.set(api, c);
  }
  return c;
}

export function makeClient(address: string, api: Api = 'sds'): grpc.Client {
  return new (ctor(api))(address, grpc.credentials.createInsecure());
}

export function metadataFor(token?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

export function nodeOf(id: string): Node {
  return { id, cluster: id.slice(id.indexOf('.') + 1) };
}

export interface StreamEnd {
  code: grpc.status;
  details: string;
}

/** Responses in arrival order; `next` waits for one, `expectNothing` proves silence. */
class ResponseQueue<T> {
  private readonly items: T[] = [];
  private waiter: ((v: T | StreamEnd) => void) | undefined;
  private end: StreamEnd | undefined;
  readonly ended: Promise<StreamEnd>;
  private resolveEnded!: (e: StreamEnd) => void;
  readonly received: T[] = [];

  constructor() {
    this.ended = new Promise((r) => (this.resolveEnded = r));
  }

  push(v: T): void {
    this.received.push(v);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(v);
    } else this.items.push(v);
  }

  finish(e: StreamEnd): void {
    if (this.end) return;
    this.end = e;
    this.resolveEnded(e);
    const w = this.waiter;
    this.waiter = undefined;
    w?.(e);
  }

  get pending(): number {
    return this.items.length;
  }

  async next(timeoutMs: number): Promise<T> {
    const queued = this.items.shift();
    if (queued !== undefined) return queued;
    if (this.end) throw streamEndError(this.end);
    const v = await new Promise<T | StreamEnd>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no response within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (x) => {
        clearTimeout(t);
        resolve(x);
      };
    });
    if (isEnd(v)) throw streamEndError(v);
    return v;
  }

  async expectNothing(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.items.length > 0) throw new Error(`expected no response within ${ms} ms, got ${this.items.length}`);
  }
}

/** The server's messages decoded with `defaults: false` omit empty fields; fill them as Envoy's C++ protos would. */
function withDefaults<T>(r: T): T {
  const o = r as Record<string, unknown>;
  for (const f of ['resources', 'removed_resources']) if (o[f] === undefined) o[f] = [];
  for (const f of ['version_info', 'system_version_info', 'nonce', 'type_url']) if (o[f] === undefined) o[f] = '';
  return r;
}

function isEnd(v: unknown): v is StreamEnd {
  return typeof v === 'object' && v !== null && 'code' in v && 'details' in v && !('nonce' in v);
}

function streamEndError(e: StreamEnd): Error {
  return Object.assign(new Error(`stream ended: ${grpc.status[e.code]}: ${e.details}`), e);
}

abstract class BaseStream<Req, Res> {
  protected readonly call: grpc.ClientDuplexStream<Req, Res>;
  protected readonly queue = new ResponseQueue<Res>();
  protected nodeSent = false;
  private readonly ownClient: grpc.Client | undefined;

  constructor(address: string, method: string, protected readonly opts: ConnectOptions) {
    const api = opts.api ?? 'sds';
    this.ownClient = opts.client ? undefined : makeClient(address, api);
    const client = (opts.client ?? this.ownClient) as AnyClient;
    this.call = client[method]!(metadataFor(opts.token)) as grpc.ClientDuplexStream<Req, Res>;
    this.call.on('data', (r: Res) => this.queue.push(withDefaults(r)));
    this.call.on('error', (e: grpc.ServiceError) => this.queue.finish({ code: e.code, details: e.details }));
    this.call.on('status', (s: grpc.StatusObject) => this.queue.finish({ code: s.code, details: s.details }));
  }

  /** Every response received so far, in order (including ones already taken by next()). */
  get received(): readonly Res[] {
    return this.queue.received;
  }

  /** Resolves with the final status when the server ends or fails the stream. */
  get ended(): Promise<StreamEnd> {
    return this.queue.ended;
  }

  next(timeoutMs = 8000): Promise<Res> {
    return this.queue.next(timeoutMs);
  }

  expectNothing(ms: number): Promise<void> {
    return this.queue.expectNothing(ms);
  }

  /** Writes a raw request; adds the node only to the first one (unless the request sets it). */
  send(req: Req & { node?: Node | null }): void {
    if (!this.nodeSent && req.node === undefined) req = { ...req, node: nodeOf(this.opts.node) };
    this.nodeSent = true;
    this.call.write(req);
  }

  close(): void {
    this.call.end();
    this.call.cancel();
    this.ownClient?.close();
  }
}

/** State-of-the-world stream (StreamSecrets, or StreamAggregatedResources with api 'ads'). */
export class SotwClient extends BaseStream<DiscoveryRequest, DiscoveryResponse> {
  /** version_info of the last response this client ACKed (what Envoy sends with a NACK). */
  lastGoodVersion = '';
  names: string[] = [];

  constructor(address: string, opts: ConnectOptions) {
    super(address, opts.api === 'ads' ? 'StreamAggregatedResources' : 'StreamSecrets', opts);
  }

  /** Sends a subscription request (initial or a change of names), as Envoy does. */
  request(names: string[], extra: Partial<DiscoveryRequest> = {}): void {
    this.names = names;
    this.send({ version_info: this.lastGoodVersion, resource_names: names, type_url: SECRET_TYPE_URL, response_nonce: '', ...extra });
  }

  /** ACK: the response's version and nonce, same names. */
  ack(res: DiscoveryResponse): void {
    this.lastGoodVersion = res.version_info;
    this.send({ version_info: res.version_info, resource_names: this.names, type_url: SECRET_TYPE_URL, response_nonce: res.nonce });
  }

  /** NACK: the previous good version, the rejected response's nonce, and error_detail. */
  nack(res: DiscoveryResponse, message = 'rejected by test'): void {
    this.send({
      version_info: this.lastGoodVersion,
      resource_names: this.names,
      type_url: SECRET_TYPE_URL,
      response_nonce: res.nonce,
      error_detail: { code: grpc.status.INVALID_ARGUMENT, message },
    });
  }

  /** Reads responses, ACKing each, until `pred` holds for one (Envoy ACKs everything it accepts). */
  async ackUntil(what: string, pred: (r: DiscoveryResponse) => boolean, timeoutMs = 10_000): Promise<DiscoveryResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      const r = await this.next(left);
      this.ack(r);
      if (pred(r)) return r;
    }
  }
}

/** Incremental stream (DeltaSecrets, or DeltaAggregatedResources with api 'ads'). */
export class DeltaClient extends BaseStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
  constructor(address: string, opts: ConnectOptions) {
    super(address, opts.api === 'ads' ? 'DeltaAggregatedResources' : 'DeltaSecrets', opts);
  }

  subscribe(names: string[], extra: Partial<DeltaDiscoveryRequest> = {}): void {
    const req: Record<string, unknown> = { type_url: SECRET_TYPE_URL, resource_names_subscribe: names, ...extra };
    // The descriptor-set loader sees a proto map as its wire form: repeated {key, value} entries.
    if (extra.initial_resource_versions) {
      req.initial_resource_versions = Object.entries(extra.initial_resource_versions).map(([key, value]) => ({ key, value }));
    }
    this.send(req as DeltaDiscoveryRequest);
  }

  unsubscribe(names: string[]): void {
    this.send({ type_url: SECRET_TYPE_URL, resource_names_unsubscribe: names });
  }

  ack(res: DeltaDiscoveryResponse): void {
    this.send({ type_url: SECRET_TYPE_URL, response_nonce: res.nonce });
  }

  nack(res: DeltaDiscoveryResponse, message = 'rejected by test'): void {
    this.send({ type_url: SECRET_TYPE_URL, response_nonce: res.nonce, error_detail: { code: grpc.status.INVALID_ARGUMENT, message } });
  }
}

/** FetchSecrets (unary). Rejects with the gRPC error (code, details). */
export function fetchSecrets(address: string, req: DiscoveryRequest, token?: string, deadlineMs?: number): Promise<DiscoveryResponse> {
  const client = makeClient(address, 'sds') as AnyClient;
  const options: grpc.CallOptions = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
  return new Promise<DiscoveryResponse>((resolve, reject) => {
    client.FetchSecrets!(req, metadataFor(token), options, (err: grpc.ServiceError | null, res: DiscoveryResponse) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

// ---- decoding what the server sent ----

export interface TlsCertificateSecret {
  name: string;
  certChainPem: string;
  keyPem: string;
}

export interface DecodedSecret {
  name: string;
  /** The raw decoded Secret message (snake_case fields). */
  raw: Record<string, any>;
}

export function decodeAnySecret(any: { type_url: string; value: Uint8Array }): DecodedSecret {
  if (any.type_url !== SECRET_TYPE_URL) throw new Error(`unexpected type_url ${any.type_url}`);
  const raw = decodeSecret(any.value) as Record<string, any>;
  return { name: String(raw.name ?? ''), raw };
}

/** name → decoded secret of a SotW response. */
export function secretsOf(res: DiscoveryResponse): Map<string, DecodedSecret> {
  const out = new Map<string, DecodedSecret>();
  for (const any of res.resources) {
    const s = decodeAnySecret(any);
    if (out.has(s.name)) throw new Error(`secret ${s.name} twice in one response`);
    out.set(s.name, s);
  }
  return out;
}

/** name → decoded secret of a delta response (and a check that Resource.name equals Secret.name). */
export function deltaSecretsOf(res: DeltaDiscoveryResponse): Map<string, DecodedSecret & { version: string }> {
  const out = new Map<string, DecodedSecret & { version: string }>();
  for (const r of res.resources) {
    const s = decodeAnySecret(r.resource);
    if (s.name !== r.name) throw new Error(`delta Resource.name ${r.name} carries Secret ${s.name}`);
    out.set(s.name, { ...s, version: r.version });
  }
  return out;
}

export function tlsCertificate(s: DecodedSecret): TlsCertificateSecret {
  const tc = s.raw.tls_certificate;
  if (!tc) throw new Error(`secret ${s.name} has no tls_certificate`);
  return {
    name: s.name,
    certChainPem: Buffer.from(tc.certificate_chain.inline_bytes).toString('utf8'),
    keyPem: Buffer.from(tc.private_key.inline_bytes).toString('utf8'),
  };
}

export interface SpiffeTrustDomain {
  name: string;
  pem: string;
}

/** trust_domains of a SPIFFE validator validation_context, in served order. */
export function spiffeTrustDomains(s: DecodedSecret): SpiffeTrustDomain[] {
  const vc = s.raw.validation_context;
  const cvc = vc?.custom_validator_config;
  if (!cvc) throw new Error(`secret ${s.name} has no custom_validator_config`);
  if (cvc.name !== 'envoy.tls.cert_validator.spiffe') throw new Error(`validator ${cvc.name}`);
  const typed = decodeTyped(cvc.typed_config);
  return (typed.trust_domains ?? []).map((td: any) => ({ name: String(td.name), pem: Buffer.from(td.trust_bundle.inline_bytes).toString('utf8') }));
}

/** trusted_ca PEM of a validation_context secret. */
export function trustedCa(s: DecodedSecret): string {
  const ca = s.raw.validation_context?.trusted_ca;
  if (!ca) throw new Error(`secret ${s.name} has no trusted_ca`);
  return Buffer.from(ca.inline_bytes).toString('utf8');
}

function decodeTyped(any: { type_url: string; value: Uint8Array }): Record<string, any> {
  return fromAny(any).value as Record<string, any>;
}
