import { isUndecided, type ProxyPrincipal, type SvidManager } from '../identity/svids.js';
import type { SecretCache } from '../xds/cache.js';
import { checkTypeUrl } from '../xds/common.js';
import { classifySecretName } from '../xds/names.js';
import { DeltaStream, type DeltaAction } from '../xds/delta.js';
import { fetchResponse } from '../xds/fetch.js';
import type { DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse } from '../xds/messages.js';
import { sameStrings, type EncodedResource, type Resolver, type Subscription } from '../xds/resource.js';
import { SotwStream, type SotwAction } from '../xds/sotw.js';
import type { RequestHeaders } from './auth.js';
import { DRAIN_REASON, goaway } from './drain.js';
import type { ServerCall } from './grpc-h2/call.js';
import { ReadBudget } from './grpc-h2/framing.js';
import { countRefusedStream } from './grpc-h2/sessions.js';
import { Status, type CallStatus } from './grpc-h2/status.js';
import { scrubCredentials } from './grpc-logging.js';
import { limitedDebug, limitedWarn, peerSource, type Logger } from './logger.js';
import { authFailureReason, nackNameLabel, type Metrics, type StreamApi } from './metrics.js';
import { proxyMetaKey, type NotThisIdentity, type SecretPublisher, type StreamResolver } from './publisher.js';

export interface StreamDeps {
  /** True once the server drains (SIGTERM): new calls are refused at once. */
  draining?: () => boolean;
  cache: SecretCache;
  publisher: SecretPublisher;
  svids: SvidManager;
  /**
   * Whether a call may open at all, from its headers alone (with tokens: a valid bearer token), or
   * throws like `authenticate`. Runs before any message, so a peer that cannot authenticate holds nothing.
   * Returns the id (jti) of the token it verified, if any.
   */
  admit: (headers: RequestHeaders) => string | undefined;
  /** Who the proxy is, or throws (an error with `code` ends the call with it, else UNAUTHENTICATED). */
  authenticate: (headers: RequestHeaders, nodeId: string | undefined) => ProxyPrincipal;
  metrics: Metrics;
  log: Logger;
  /** Names per request above which the stream is refused (a misbehaving client, not Envoy). */
  maxNamesPerRequest: number;
  /** How long FetchSecrets waits for a valid name that is not resolvable yet. */
  fetchWaitMs: number;
  /** How long a new stream waits for its proxy's first identity decision before answering. */
  identityWaitMs: number;
  registry: StreamRegistry;
  /** Streams one proxy may hold open at once (MAX_STREAMS_PER_PROXY); the next is RESOURCE_EXHAUSTED. */
  maxStreamsPerProxy?: number;
  /** Characters of names one proxy's streams may subscribe to together (MAX_SUBSCRIBED_NAME_CHARS_PER_PROXY). */
  maxSubscribedNameCharsPerProxy?: number;
}

/**
 * Envoy holds 1 to a few streams (SDS without ADS: one per secret source, usually 2), a reconnect
 * briefly twice that. Without a cap one valid token opened 20,000 streams (90 MB).
 */
export const MAX_STREAMS_PER_PROXY = 64;

/**
 * Characters of subscribed names one proxy's streams may hold together. Envoy subscribes a few
 * names of tens of characters; without a bound, one token's 64 delta streams held 999 names of 2,000
 * characters each (258 MiB, with the cache keys made of them).
 */
export const MAX_SUBSCRIBED_NAME_CHARS_PER_PROXY = 1024 * 1024;

/** A sent response as /debug shows it: references to what was written, no copies. */
export interface SentResponse {
  readonly nonce: string;
  readonly version_info?: string;
  readonly system_version_info?: string;
}

export interface StreamInfo {
  id: number;
  api: StreamApi;
  mesh: string;
  proxy: string;
  peer: string;
  subscription: Subscription | undefined;
  openedMs: number;
  pushes: number;
  nacks: number;
  lastSent?: SentResponse;
  lastSentResources?: readonly EncodedResource[];
  lastSentMs: number;
  lastAcked?: SentResponse;
  lastAckedResources?: readonly EncodedResource[];
  lastAckedMs: number;
  lastNack?: { version: string; nonce: string; detail: string; atMs: number };
  /** Names the stream asked for that are not available to it (for /debug and the held-names gauge). */
  readonly resolver?: { resolve(sub: Subscription): { resources: ReadonlyMap<string, unknown>; invalid: readonly string[] } };
}

export interface RegisteredStream {
  info: StreamInfo;
  /** The token the stream authenticated with, if any (id and expiry only). */
  credential?: { jti: string; expiresAtMs: number };
  close(): void;
  /** Ends the stream with UNAUTHENTICATED, e.g. when its token was revoked or expired. */
  deny(reason: string): void;
  /** Ends the stream with UNAVAILABLE so the proxy reconnects (shutdown drain). */
  unavailable(reason: string): void;
  /** The HTTP/2 connection (for GOAWAY while draining). */
  readonly connection: import('node:http2').Http2Session | undefined;
}

/** Live streams, for /debug/proxies, for re-checking their tokens and for closing them on shutdown. */
export class StreamRegistry {
  private nextId = 1;
  readonly streams = new Map<number, RegisteredStream>();
  /** Open streams and FetchSecrets calls by proxy key (see MAX_STREAMS_PER_PROXY); a proxy leaves when its last one ends. */
  readonly openByProxy = new Map<string, number>();
  /** Characters of the names each proxy's streams subscribe to (see MAX_SUBSCRIBED_NAME_CHARS_PER_PROXY). */
  readonly subscribedCharsByProxy = new Map<string, number>();
  /**
   * Open calls by the token (jti) they were admitted with, whatever their state: a proxy's limit
   * applies once its first request names it, and a token's calls that never send one held as many
   * places as its connections carried (10,000 on two: +148 MB RSS, for the first-request timeout).
   */
  readonly openByToken = new Map<string, number>();
  /** Unfinished request bytes by token, over all of its calls (see TOKEN_UNFINISHED_BYTES); kept while it has calls open. */
  readonly unfinishedByToken = new Map<string, ReadBudget>();
  /** Called for each stream registered (shutdown drain sends late streams away). */
  onAdd?: (stream: RegisteredStream) => void;
  /**
   * Streams admitted but without a first request yet: not registered (no node, no proxy), so a
   * peer opening thousands and never writing would hold them unseen; endSilent() ends them.
   */
  readonly silent = new Set<{ readonly openedMs: number; endSilent(limitMs: number): void }>();

  /** Ends every stream that sent no request within `limitMs` of opening; returns how many. */
  endSilent(limitMs: number, now = Date.now()): number {
    let ended = 0;
    for (const s of this.silent) {
      if (now - s.openedMs < limitMs) continue;
      s.endSilent(limitMs);
      ended++;
    }
    return ended;
  }

  /** Registers a stream and gives it its id. */
  add(stream: RegisteredStream): void {
    stream.info.id = this.nextId++;
    this.streams.set(stream.info.id, stream);
    this.onAdd?.(stream);
  }

  remove(id: number): void {
    this.streams.delete(id);
  }

  closeAll(): void {
    for (const s of [...this.streams.values()]) s.close();
  }
}

/**
 * What a log line (or /debug) echoes of text a client chose: a reason quoting its names, its node
 * id, a NACK's detail, a nonce. A client's megabyte request must not become a megabyte of log
 * per stream.
 */
const LOG_ECHO_CHARS = 2048;
/** For a node id, a nonce or a version: a few dozen characters when sent by Envoy. */
const ID_ECHO_CHARS = 256;
/** Names one log line lists (a stream may hold a thousand): the rest are counted. */
const MAX_ECHOED_NAMES = 16;
/**
 * How far past the cut peer text is scrubbed: a credential the cut runs through is still seen
 * whole (an RSA 4096 PEM key is about 3,300 characters), and a megabyte costs no megabyte of scrubbing.
 */
const SCRUB_PAST_CUT_CHARS = 4096;

/**
 * Text a client chose, as a log line or /debug shows it: credentials scrubbed first (a key or a
 * token in a resource name or a NACK detail is the peer's mistake, not ours to print), then cut
 * to `max` characters saying how many more there were.
 */
function echoed(text: string | undefined, max = LOG_ECHO_CHARS): string | undefined {
  if (text === undefined) return undefined;
  const head = text.length > max + SCRUB_PAST_CUT_CHARS ? text.slice(0, max + SCRUB_PAST_CUT_CHARS) : text;
  const scrubbed = scrubCredentials(head);
  const shown = Math.min(scrubbed.length, max);
  const more = scrubbed.length - shown + (text.length - head.length);
  return more === 0 ? scrubbed : `${scrubbed.slice(0, shown)}... (${more} more characters)`;
}

/**
 * Counts a stream opened (+1) or ended (-1) for mesh_sds_streams{mesh,api}. A series lives while it
 * has open streams: with --auth none a peer names any mesh it likes, and a series left at 0 for
 * each made-up mesh stayed until a restart.
 */
function countStream(deps: StreamDeps, mesh: string, api: StreamApi, delta: 1 | -1): void {
  const open = deps.metrics.openStreams;
  let byApi = open.get(mesh);
  if (!byApi) open.set(mesh, (byApi = { sotw: 0, delta: 0, ads: 0 }));
  byApi[api] += delta;
  if (byApi.sotw <= 0 && byApi.delta <= 0 && byApi.ads <= 0) open.delete(mesh);
}

/**
 * Takes one of the proxy's MAX_STREAMS_PER_PROXY places for a stream or a waiting FetchSecrets
 * call, or returns the status refusing it (counted as a refused stream on its connection).
 */
function takeProxyPlace(deps: StreamDeps, proxy: string, stream: ServerCall<unknown, unknown>['stream']): CallStatus | undefined {
  const limit = deps.maxStreamsPerProxy ?? MAX_STREAMS_PER_PROXY;
  const open = deps.registry.openByProxy.get(proxy) ?? 0;
  if (open >= limit) {
    countRefusedStream(stream);
    return { code: Status.RESOURCE_EXHAUSTED, details: `proxy ${proxy} already has ${open} streams open, the limit (${limit} per proxy)` };
  }
  deps.registry.openByProxy.set(proxy, open + 1);
  return undefined;
}

function freeProxyPlace(deps: StreamDeps, proxy: string): void {
  const open = (deps.registry.openByProxy.get(proxy) ?? 1) - 1;
  if (open > 0) deps.registry.openByProxy.set(proxy, open);
  else deps.registry.openByProxy.delete(proxy);
}

type Machine = { onRequest(r: unknown): (SotwAction | DeltaAction)[]; onChange(): (SotwAction | DeltaAction)[] };
/** A request, or what the wire decoder could not read (see xdsCodec in xds-routes.ts). */
export type XdsRequest = DiscoveryRequest & DeltaDiscoveryRequest & { malformed?: string };
type Request = XdsRequest;
type Call = ServerCall<Request, any>;

/** Requests a stream keeps while it waits (≤ identityWaitMs) for its proxy's identity; later ones wait in flow control. */
const MAX_QUEUED_WHILE_WAITING = 8;

/** Names a request carries; a delta request's initial_resource_versions name resources too (each may be answered). */
const namesIn = (req: Request) =>
  (req.resource_names?.length ?? 0) + (req.resource_names_subscribe?.length ?? 0) + (req.resource_names_unsubscribe?.length ?? 0) + initialVersionsIn(req);

function initialVersionsIn(req: Request): number {
  const initial = req.initial_resource_versions;
  if (!initial) return 0;
  let n = 0;
  for (const _ in initial) n++;
  return n;
}

/**
 * Drives one SotW or delta stream: authenticates on the first request (node id + bearer token),
 * runs the pure state machine on each request and on each change of a watched cache entry, and
 * executes its actions on the gRPC call. One object per stream (10,000 proxies is 10,000 of them):
 * it is also the stream's /debug entry and the call's listener (no closures per stream).
 */
class XdsStream implements StreamInfo, RegisteredStream {
  id = 0;
  mesh = '';
  proxy = '';
  readonly peer: string;
  subscription: Subscription | undefined;
  readonly openedMs = Date.now();
  pushes = 0;
  nacks = 0;
  lastSent?: SentResponse;
  lastSentResources?: readonly EncodedResource[];
  lastSentMs = 0;
  lastAcked?: SentResponse;
  lastAckedResources?: readonly EncodedResource[];
  lastAckedMs = 0;
  lastNack?: { version: string; nonce: string; detail: string; atMs: number };

  credential?: { jti: string; expiresAtMs: number };
  /** This stream's share of its proxy's subscribed name characters. */
  private subscribedChars = 0;
  private state: 'new' | 'waiting' | 'open' | 'closed' = 'new';
  private queued: Request[] = [];
  private machine?: Machine;
  resolver?: StreamResolver;
  private watched: readonly string[] = [];
  private cancelWatch?: () => void;
  /** A watched key changed while the client had not taken the last response: answered once it has. */
  private changedWhileBehind = false;
  private warnedNotThisIdentity: NotThisIdentity | undefined;
  private cancelWait?: () => void;
  private waitTimer?: NodeJS.Timeout;

  constructor(
    private readonly call: Call,
    private readonly mode: 'sotw' | 'delta',
    readonly api: StreamApi,
    private readonly deps: StreamDeps,
  ) {
    this.peer = call.peer;
    const refused = admitCall(call, api, deps);
    if (refused) {
      this.state = 'closed';
      call.end(refused);
      return;
    }
    call.listener = this;
    deps.registry.silent.add(this);
  }

  /** No first request within `limitMs`: Envoy sends its first at once, so this peer never will. */
  endSilent(limitMs: number): void {
    // Refused: one opened now and then without a request must not keep its connection busy.
    countRefusedStream(this.call.stream);
    limitedWarn(this.deps.log, peerSource(this.peer), { api: this.api, peer: this.peer }, 'stream closed: no request');
    this.finish({ code: Status.INVALID_ARGUMENT, details: `no ${this.mode === 'delta' ? 'DeltaDiscoveryRequest' : 'DiscoveryRequest'} within ${limitMs / 1000} s of opening the stream` });
  }

  /** The client half-closed, or reset the stream / lost its connection: the stream is over. */
  onHalfClose(): void {
    this.finish();
  }

  /** The client went away, or the transport ended the call (then with `status`, e.g. responses left unread). */
  onCancel(status?: CallStatus): void {
    this.finish(status);
  }

  get info(): StreamInfo {
    return this;
  }

  onMessage(req: Request): void {
    if (this.state === 'closed') return;
    if (req.malformed !== undefined) {
      limitedWarn(this.deps.log, peerSource(this.peer), { peer: this.peer, api: this.api, reason: echoed(req.malformed) }, 'malformed request');
      return this.finish({ code: Status.INVALID_ARGUMENT, details: `malformed ${this.mode === 'delta' ? 'DeltaDiscoveryRequest' : 'DiscoveryRequest'}: ${req.malformed}` });
    }
    if (this.state === 'open') return this.onRequest(req);
    this.queued.push(req);
    // Waiting for the proxy's identity, the requests wait too: past a few, none is read until then,
    // so a peer sending without pause is held back by flow control, not kept in memory.
    if (this.queued.length >= MAX_QUEUED_WHILE_WAITING) this.call.holdRequests();
    if (this.state !== 'new') return;
    this.deps.registry.silent.delete(this);
    let principal: ProxyPrincipal;
    try {
      principal = this.deps.authenticate(this.call, req.node?.id ?? undefined);
    } catch (e) {
      const refused = authRefusal(this.deps, e);
      countRefusedStream(this.call.stream);
      limitedWarn(this.deps.log, peerSource(this.peer), { api: this.api, peer: this.peer, node: echoed(req.node?.id ?? undefined, ID_ECHO_CHARS), reason: echoed(refused.details) }, 'stream authentication failed');
      return this.finish(refused);
    } finally {
      // The authorization header has been read: the rest is not needed.
      this.call.releaseHeaders();
    }
    this.open(principal);
  }

  /** Ends the stream (idempotent): OK when no status is given. */
  finish(status?: CallStatus): void {
    if (this.state === 'closed') return;
    const registered = this.state === 'open' || this.state === 'waiting';
    if (this.state === 'new') this.deps.registry.silent.delete(this);
    this.state = 'closed';
    this.stopWaiting();
    this.cancelWatch?.();
    this.queued = [];
    if (registered) {
      countStream(this.deps, this.mesh, this.api, -1);
      freeProxyPlace(this.deps, this.proxy);
      this.holdNameChars(0);
      this.deps.log.info({ stream: this.id, proxy: this.proxy, api: this.api, peer: this.peer, seconds: Math.round((Date.now() - this.openedMs) / 1000), pushes: this.pushes, nacks: this.nacks, status: status?.code ?? 0, reason: echoed(status?.details) }, 'stream closed');
      this.deps.svids.detach(this.proxy, this.credential?.jti);
      this.deps.registry.remove(this.id);
    }
    this.call.end(status);
  }

  close(): void {
    this.finish();
  }

  unavailable(reason: string): void {
    this.finish({ code: Status.UNAVAILABLE, details: reason });
  }

  get connection() {
    return this.call.session;
  }

  deny(reason: string): void {
    this.deps.log.warn({ proxy: this.proxy, api: this.api, reason: echoed(reason) }, 'stream closed: credentials no longer valid');
    this.finish({ code: Status.UNAUTHENTICATED, details: reason });
  }

  private open(principal: ProxyPrincipal): void {
    if (this.state === 'closed') return;
    const proxy = this.deps.svids.attach(principal);
    const refused = takeProxyPlace(this.deps, proxy, this.call.stream);
    if (refused) {
      this.deps.svids.detach(proxy, principal.credential?.jti);
      limitedWarn(this.deps.log, proxy, { proxy, api: this.api, peer: this.peer, reason: refused.details }, 'stream refused: the proxy has too many streams open');
      return this.finish(refused);
    }
    this.state = 'open';
    this.credential = principal.credential;
    this.proxy = proxy;
    this.mesh = principal.mesh;
    countStream(this.deps, this.mesh, this.api, 1);
    this.deps.registry.add(this);
    this.deps.log.info({ stream: this.id, proxy: this.proxy, api: this.api, peer: this.peer }, 'stream opened');
    // A delta subscription grows request by request: the per-request cap bounds it as a whole too.
    this.resolver = this.deps.publisher.resolverFor(this.proxy, principal.mesh, {
      allowEmptyTypeUrl: this.api !== 'ads',
      maxSubscribedNames: this.mode === 'delta' ? this.deps.maxNamesPerRequest : undefined,
    });
    this.machine = this.mode === 'sotw' ? new SotwStream(this.resolver) : new DeltaStream(this.resolver);
    // A proxy that just connected usually gets its SVID within milliseconds: wait for that (bounded)
    // before the first answer, so it gets one complete response instead of a partial one and a push.
    // A stream asking only for trust bundles (Envoy's second stream) has nothing to wait for.
    if (!isUndecided(this.deps.svids.get(this.proxy)) || !this.queued.some((r) => this.asksForIdentity(r))) return this.start();
    this.state = 'waiting';
    this.cancelWait = this.deps.cache.watch([proxyMetaKey(this.proxy)], () => {
      if (!isUndecided(this.deps.svids.get(this.proxy))) this.start();
    });
    this.waitTimer = setTimeout(() => this.start(), this.deps.identityWaitMs);
  }

  private asksForIdentity(req: Request): boolean {
    // Too many names: refused at once by onRequest, without a look at each of them first.
    if (namesIn(req) > this.deps.maxNamesPerRequest) return false;
    // A type this stream does not serve (ADS for clusters, say) is refused by the machine: at once.
    if (checkTypeUrl(req.type_url, this.resolver!)) return false;
    const names = this.mode === 'sotw' ? req.resource_names : req.resource_names_subscribe;
    // A name that can never exist fails the stream (INVALID_ARGUMENT): at once, too.
    return this.deps.publisher.firstAnswerWaitsForIdentity(names);
  }

  private stopWaiting(): void {
    this.cancelWait?.();
    this.cancelWait = undefined;
    clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
  }

  private start(): void {
    this.stopWaiting();
    if (this.state !== 'waiting' && this.state !== 'open') return;
    this.state = 'open';
    const queued = this.queued;
    this.queued = [];
    for (const req of queued) this.onRequest(req);
    // After the queue: the requests held back come after those that came before them.
    this.call.releaseRequests();
  }

  private onRequest(req: Request): void {
    if (namesIn(req) > this.deps.maxNamesPerRequest) {
      return this.finish({ code: Status.INVALID_ARGUMENT, details: `too many resource names in one request (limit ${this.deps.maxNamesPerRequest})` });
    }
    this.run(this.machine!.onRequest(req));
  }

  private run(actions: (SotwAction | DeltaAction)[]): void {
    if (this.state !== 'open') return;
    const { metrics, log } = this.deps;
    for (const a of actions) {
      switch (a.type) {
        case 'send':
          this.call.write(a.response);
          metrics.pushes.inc();
          this.pushes++;
          this.lastSent = a.response;
          this.lastSentResources = a.resources;
          this.lastSentMs = Date.now();
          break;
        case 'fail':
          limitedWarn(log, peerSource(this.peer), { proxy: this.proxy, api: this.api, reason: echoed(a.message) }, 'stream refused');
          return this.finish({ code: Status.INVALID_ARGUMENT, details: a.message });
        case 'nack': {
          metrics.nacks.inc();
          this.nacks++;
          // The rejected response is the last one sent when the nonce matches (SotW only ever NACKs that one).
          const rejected = this.lastSent?.nonce === a.nonce ? this.lastSentResources : undefined;
          for (const r of rejected ?? []) metrics.nackedSecrets.inc({ name: nackNameLabel(r.name) });
          // The version Envoy rejected (its request carries the last version it accepted).
          const version = echoed((rejected ? (this.lastSent?.version_info ?? this.lastSent?.system_version_info) : undefined) ?? a.version_info, ID_ECHO_CHARS)!;
          // Envoy's detail is a few lines; what a client sends beyond that is neither kept nor logged.
          const detail = echoed(a.detail.message)!;
          this.lastNack = { version, nonce: echoed(a.nonce, ID_ECHO_CHARS)!, detail, atMs: Date.now() };
          limitedWarn(
            log,
            this.proxy,
            { proxy: this.proxy, api: this.api, nonce: this.lastNack.nonce, version, names: rejected?.map((r) => r.name), detail },
            'proxy rejected a secret (NACK); keeping its last accepted version',
          );
          break;
        }
        case 'ack':
          metrics.acks.inc();
          if (this.lastSent?.nonce === a.nonce) {
            this.lastAcked = this.lastSent;
            this.lastAckedResources = this.lastSentResources;
            this.lastAckedMs = Date.now();
          }
          break;
        case 'subscribe': {
          const refused = this.holdNameChars(nameChars(a.subscription));
          if (refused) {
            limitedWarn(log, this.proxy, { proxy: this.proxy, api: this.api, reason: refused }, 'stream refused: its proxy subscribes to too many names');
            return this.finish({ code: Status.RESOURCE_EXHAUSTED, details: refused });
          }
          this.subscription = a.subscription;
          break;
        }
        case 'ignore':
          // A peer repeating a stale nonce would otherwise write a line per request.
          limitedDebug(log, this.proxy, () => ({ proxy: this.proxy, api: this.api, reason: a.reason, nonce: echoed(a.nonce, ID_ECHO_CHARS) }), 'request ignored');
          break;
      }
    }
    this.rewatch();
  }

  /**
   * A stream asking for a KRI or SPIFFE ID that is not its proxy's identity (the Dataplane moved to
   * another MeshIdentity, or the config names the wrong one) is held and gets nothing: Envoy keeps
   * the certificate it has until it expires. Said once per change of what the stream holds.
   */
  private warnNotThisIdentity(): void {
    const other = this.resolver!.notThisIdentity;
    if (other === this.warnedNotThisIdentity) return;
    this.warnedNotThisIdentity = other;
    if (!other) return;
    // Made only when the line is logged (once per window): a delta stream holding 1,000 such names
    // of 2,000 characters changed its plan with each 100-byte request, and scrubbing every name
    // for a suppressed line cost 5 ms of CPU per request. A line shows the first few names.
    const fields = () => {
      const sent = new Set((this.lastSentResources ?? []).map((r) => r.name));
      return {
        proxy: this.proxy,
        api: this.api,
        names: other.names.slice(0, MAX_ECHOED_NAMES).map((n) => echoed(n, ID_ECHO_CHARS)),
        namesCount: other.names.length,
        identity: other.kri,
        spiffeId: other.spiffeId,
        servedBefore: other.names.some((n) => sent.has(n)),
      };
    };
    limitedWarn(
      this.deps.log,
      this.proxy,
      fields,
      `stream asks for an identity that is not this proxy's (it is ${other.kri}, ${other.spiffeId}): held, and the proxy keeps the certificate it has until it expires; ask for "default" to follow the proxy's identity`,
    );
  }

  /**
   * Takes `chars` as this stream's share of its proxy's subscribed names, or returns why not (the
   * share it had is kept until the stream ends). 0 gives the share back.
   */
  private holdNameChars(chars: number): string | undefined {
    const held = this.deps.registry.subscribedCharsByProxy;
    const others = (held.get(this.proxy) ?? 0) - this.subscribedChars;
    const limit = this.deps.maxSubscribedNameCharsPerProxy ?? MAX_SUBSCRIBED_NAME_CHARS_PER_PROXY;
    if (chars > 0 && others + chars > limit) {
      return `the proxy's streams would subscribe to ${others + chars} characters of resource names, over the limit of ${limit} per proxy`;
    }
    this.subscribedChars = chars;
    if (others + chars > 0) held.set(this.proxy, others + chars);
    else held.delete(this.proxy);
    return undefined;
  }

  /** Watches exactly the cache keys the last resolution read (they change with identity too). */
  private rewatch(): void {
    this.warnNotThisIdentity();
    const keys = this.resolver!.watchKeys;
    if (this.state !== 'open' || sameStrings(keys, this.watched)) return;
    this.cancelWatch?.();
    this.watched = keys;
    this.cancelWatch = this.deps.cache.watch(keys, () => this.onWatchedChange());
  }

  /**
   * A change waits while the client has not read the last response: it then gets one response with
   * the state of that moment, not one per change in between queued in memory for it.
   */
  private onWatchedChange(): void {
    if (this.call.behind()) this.changedWhileBehind = true;
    else this.run(this.machine!.onChange());
  }

  /** The client took what was written (after call.behind()): a change that waited is answered now. */
  onWritable(): void {
    if (!this.changedWhileBehind) return;
    this.changedWhileBehind = false;
    this.run(this.machine!.onChange());
  }
}

/** Characters of a subscription's names (UTF-16 code units). */
function nameChars(sub: Subscription): number {
  let n = 0;
  for (const name of sub.names) n += name.length;
  return n;
}

export function handleStream(call: Call, mode: 'sotw' | 'delta', api: StreamApi, deps: StreamDeps): void {
  new XdsStream(call, mode, api, deps);
}

/** FetchSecrets: one answer built like a SotW response; waits briefly for names still being issued. */
export function handleFetch(call: ServerCall<Request, DiscoveryResponse>, req: Request, deps: StreamDeps): void {
  const callback = (err: CallStatus | null, res?: DiscoveryResponse) => {
    if (res) call.write(res);
    call.end(err ?? undefined);
  };
  if (req.malformed !== undefined) return callback({ code: Status.INVALID_ARGUMENT, details: `malformed DiscoveryRequest: ${req.malformed}` });
  if ((req.resource_names?.length ?? 0) > deps.maxNamesPerRequest) {
    return callback({ code: Status.INVALID_ARGUMENT, details: `too many resource names (limit ${deps.maxNamesPerRequest})` });
  }
  let principal: ProxyPrincipal;
  try {
    principal = deps.authenticate(call, req.node?.id ?? undefined);
  } catch (e) {
    countRefusedStream(call.stream);
    return callback(authRefusal(deps, e));
  }
  if (call.cancelled) return;
  const pk = deps.svids.attach(principal);
  // A fetch may wait (fetchWaitMs) for its names: while it does it holds one of its proxy's places,
  // or one token could hold as many waiting calls as its connections carry.
  const refused = takeProxyPlace(deps, pk, call.stream);
  if (refused) {
    deps.svids.detach(pk, principal.credential?.jti);
    limitedWarn(deps.log, pk, { proxy: pk, api: 'fetch', peer: call.peer, reason: refused.details }, 'stream refused: the proxy has too many streams open');
    return callback(refused);
  }
  // An empty-string name is a name (refused by fetchResponse), not a wildcard.
  const names = req.resource_names ?? [];
  const wildcard = names.length === 0 || names.includes('*');
  const resolver = deps.publisher.resolverFor(pk, principal.mesh);
  const resolve: Resolver = (sub) => resolver.resolve(sub);
  let finished = false;
  let cancelWatch: (() => void) | undefined;
  // Releases the watch, the timer and the proxy reference exactly once.
  const release = (): boolean => {
    if (finished) return false;
    finished = true;
    cancelWatch?.();
    clearTimeout(timer);
    freeProxyPlace(deps, pk);
    deps.svids.detach(pk, principal.credential?.jti);
    return true;
  };
  const done = (err: CallStatus | null, res?: DiscoveryResponse) => {
    if (!release()) return;
    if (err) callback(err);
    else callback(null, res);
  };
  const attempt = (final: boolean) => {
    if (finished) return;
    // A fetch is on no stream list, so recheckCredentials cannot end it: a token forgotten while it
    // waits (revoked or expired) must get nothing, least of all the SVID reissued because of it.
    if (principal.credential && !deps.svids.holdsCredential(pk, principal.credential.jti)) {
      return done({ code: Status.UNAUTHENTICATED, details: 'token no longer valid (revoked or expired)' });
    }
    const result = fetchResponse(req, resolve);
    if (result.type === 'fail') return done({ code: Status.INVALID_ARGUMENT, details: result.message });
    // A one-shot wildcard must not answer before the proxy's identity is known: it would never
    // learn about the SVID being issued right now (streams get it pushed; a fetch does not).
    const waitForIdentity = wildcard && isUndecided(deps.svids.get(pk));
    if ((result.held.length === 0 && !waitForIdentity) || final) {
      if (result.held.length > 0 && result.resources.length === 0) {
        const reason = heldReason(result.held, resolver.notThisIdentity, deps.svids.get(pk), principal.mesh);
        return done({ code: Status.UNAVAILABLE, details: `secret ${result.held.map((n) => JSON.stringify(n)).join(', ')} not available: ${reason}` });
      }
      return done(null, result.response);
    }
    cancelWatch?.();
    cancelWatch = deps.cache.watch(resolver.watchKeys, () => attempt(false));
  };
  const timer = setTimeout(() => attempt(true), deps.fetchWaitMs);
  // A client that gives up must not keep its proxy attached until the wait times out.
  call.listener = { onCancel: release };
  attempt(false);
}

/**
 * Why a fetch's held names got nothing, each kind of name with its own reason: another identity's
 * KRI or SPIFFE ID stays held as long as the proxy keeps its own ("not available" alone read as
 * "try again"), and a trust domain the mesh does not have was explained by the proxy's identity.
 */
function heldReason(held: readonly string[], other: NotThisIdentity | undefined, identity: ReturnType<SvidManager['get']>, mesh: string): string {
  const reasons: string[] = [];
  const list = (names: readonly string[]) => `${names.map((n) => JSON.stringify(n)).join(', ')} ${names.length === 1 ? 'is' : 'are'}`;
  const otherNames = new Set(other?.names);
  if (other) reasons.push(`${list(other.names)} not this proxy's identity (it is ${other.kri}, ${other.spiffeId}); ask for "default" to follow the proxy's identity`);
  const domains: string[] = [];
  const bundles: string[] = [];
  const own: string[] = [];
  for (const n of held) {
    if (otherNames.has(n)) continue;
    const kind = classifySecretName(n).kind;
    (kind === 'trustDomain' ? domains : kind === 'trustAll' ? bundles : own).push(n);
  }
  const inMesh = `mesh ${JSON.stringify(mesh)}`;
  if (domains.length > 0) reasons.push(`${list(domains)} not a trust domain of ${inMesh} (no MeshTrust or MeshIdentity of the mesh has it)`);
  if (bundles.length > 0) reasons.push(`${list(bundles)} empty: ${inMesh} has no trust domain yet`);
  if (own.length > 0) reasons.push(`${list(own)} the proxy's own: ${ownReason(identity)}`);
  return reasons.join('; ');
}

function ownReason(identity: ReturnType<SvidManager['get']>): string {
  if (identity === undefined) return 'its identity is not decided yet';
  if ('reason' in identity) return identity.reason;
  if (identity.state === 'spire') return `its identity ${JSON.stringify(identity.spiffeId)} comes from SPIRE (this server serves its trust bundles only)`;
  // Issued: what is missing is ROOTCA, its trust domain's bundle.
  return `no CA of its trust domain ${JSON.stringify(identity.trustDomain)} is trusted in the mesh yet`;
}

/**
 * Runs `deps.admit` as a call opens: a refusal is counted, logged (rate-limited per peer) and
 * returned as the status that ends the call. An admitted call keeps only its authorization header
 * (read again with the node id of the first request); everything else it was sent is let go.
 */
export function admitCall(call: ServerCall<Request, unknown>, api: StreamApi | 'fetch', deps: StreamDeps): CallStatus | undefined {
  // Draining: refused before anything is answered (it was refused only after its first response),
  // and its connection told to go away so the proxy reconnects to another replica.
  if (deps.draining?.()) {
    goaway(call.session);
    return { code: Status.UNAVAILABLE, details: DRAIN_REASON };
  }
  let jti: string | undefined;
  try {
    jti = deps.admit(call);
  } catch (e) {
    const refused = authRefusal(deps, e);
    countRefusedStream(call.stream);
    limitedWarn(deps.log, peerSource(call.peer), { api, peer: call.peer, reason: echoed(refused.details) }, 'stream authentication failed');
    return refused;
  }
  if (jti !== undefined) {
    const limit = deps.maxStreamsPerProxy ?? MAX_STREAMS_PER_PROXY;
    const open = deps.registry.openByToken.get(jti) ?? 0;
    if (open >= limit) {
      countRefusedStream(call.stream);
      limitedWarn(deps.log, peerSource(call.peer), { api, peer: call.peer, limit }, 'stream refused: its token has too many calls open');
      return { code: Status.RESOURCE_EXHAUSTED, details: `this token already has ${open} calls open, the limit (${limit} per token)` };
    }
    deps.registry.openByToken.set(jti, open + 1);
    let budget = deps.registry.unfinishedByToken.get(jti);
    if (!budget) deps.registry.unfinishedByToken.set(jti, (budget = new ReadBudget(TOKEN_UNFINISHED_BYTES, TOKEN_UNFINISHED_BYTES, 'token')));
    call.countReadsIn(budget);
    call.closeHook = new TokenPlace(deps.registry, jti);
  }
  call.keepOnlyHeader('authorization');
  return undefined;
}

/**
 * Unfinished request bytes one token's calls may hold together: Envoy's requests are tens of KB,
 * on a few streams. The server's 64 MiB are shared by every proxy: one token filled them (64
 * calls of all but the end of 1 MiB), and every request spanning two DATA frames was refused.
 */
const TOKEN_UNFINISHED_BYTES = 2 * 1024 * 1024;
/** A call's place among its token's: given back when the call is gone (ended, reset, connection lost). */
class TokenPlace {
  constructor(
    private readonly registry: StreamRegistry,
    private readonly jti: string,
  ) {}

  callGone(): void {
    const open = (this.registry.openByToken.get(this.jti) ?? 1) - 1;
    if (open > 0) return void this.registry.openByToken.set(this.jti, open);
    this.registry.openByToken.delete(this.jti);
    this.registry.unfinishedByToken.delete(this.jti);
  }
}

/** A failed authentication, counted, as the status that ends the call (UNAUTHENTICATED unless the error names one). */
function authRefusal(deps: StreamDeps, e: unknown): CallStatus {
  const err = e as Error & { code?: Status };
  deps.metrics.streamAuthFailures.inc({ reason: authFailureReason(e) });
  return { code: err.code ?? Status.UNAUTHENTICATED, details: err.message };
}

/**
 * Tokens are checked when a stream opens, and Envoy keeps streams open for days: re-check every
 * open stream's token now and then (against the in-memory revocation list), so a revoked or
 * expired token stops getting new secrets; then forget the proxies (claim sets) left with no
 * valid token, so their SVIDs are never served again.
 */
export function recheckCredentials(registry: StreamRegistry, svids: SvidManager, isRevoked: (jti: string) => boolean, now = Date.now()): number {
  let denied = 0;
  // Every few seconds over every stream: no copy of the registry (a stream denied here leaves the
  // Map while it is iterated, which a Map allows).
  for (const s of registry.streams.values()) {
    const c = s.credential;
    if (!c) continue;
    if (c.expiresAtMs <= now) s.deny('token expired');
    else if (isRevoked(c.jti)) s.deny('token revoked');
    else continue;
    denied++;
  }
  svids.forgetCredentials((jti, expiresAtMs) => (isRevoked(jti) ? true : expiresAtMs <= now ? 'expired' : false));
  return denied;
}
