import * as grpc from '@grpc/grpc-js';
import { isUndecided, type ProxyPrincipal, type SvidManager } from '../identity/svids.js';
import type { SecretCache } from '../xds/cache.js';
import { DeltaStream, type DeltaAction } from '../xds/delta.js';
import { fetchResponse } from '../xds/fetch.js';
import type { DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse } from '../xds/messages.js';
import type { Resolver, Subscription } from '../xds/resource.js';
import { SotwStream, type SotwAction } from '../xds/sotw.js';
import type { Logger } from './logger.js';
import type { Metrics, StreamApi } from './metrics.js';
import { proxyMetaKey, type SecretPublisher } from './publisher.js';

export interface StreamDeps {
  cache: SecretCache;
  publisher: SecretPublisher;
  svids: SvidManager;
  authenticate: (metadata: grpc.Metadata, nodeId: string | undefined) => Promise<ProxyPrincipal>;
  metrics: Metrics;
  log: Logger;
  /** Names per request above which the stream is refused (a misbehaving client, not Envoy). */
  maxNamesPerRequest: number;
  /** How long FetchSecrets waits for a valid name that is not resolvable yet. */
  fetchWaitMs: number;
  /** How long a new stream waits for its proxy's first identity decision before answering. */
  identityWaitMs: number;
  registry: StreamRegistry;
}

export interface StreamInfo {
  id: number;
  api: StreamApi;
  proxy: string;
  peer: string;
  subscription: Subscription | undefined;
  opened: Date;
  pushes: number;
  nacks: number;
  lastNack?: string;
}

/** Live streams, for /debug/proxies and for closing them all on shutdown. */
export class StreamRegistry {
  private nextId = 1;
  readonly streams = new Map<number, { info: StreamInfo; close: () => void }>();

  add(info: Omit<StreamInfo, 'id'>, close: () => void): StreamInfo {
    const full = { ...info, id: this.nextId++ };
    this.streams.set(full.id, { info: full, close });
    return full;
  }

  remove(id: number): void {
    this.streams.delete(id);
  }

  closeAll(): void {
    for (const s of [...this.streams.values()]) s.close();
  }
}

type Machine = { onRequest(r: unknown): (SotwAction | DeltaAction)[]; onChange(): (SotwAction | DeltaAction)[] };

const namesIn = (req: DiscoveryRequest & DeltaDiscoveryRequest) =>
  (req.resource_names?.length ?? 0) + (req.resource_names_subscribe?.length ?? 0) + (req.resource_names_unsubscribe?.length ?? 0);

/**
 * Drives one SotW or delta stream: authenticates on the first request (node id + bearer token),
 * runs the pure state machine on each request and on each change of a watched cache entry, and
 * executes its actions on the gRPC call.
 */
export function handleStream(
  call: grpc.ServerDuplexStream<DiscoveryRequest & DeltaDiscoveryRequest, unknown>,
  mode: 'sotw' | 'delta',
  api: StreamApi,
  deps: StreamDeps,
): void {
  const { log, metrics } = deps;
  const queued: (DiscoveryRequest & DeltaDiscoveryRequest)[] = [];
  let state: 'new' | 'authenticating' | 'waiting' | 'open' | 'closed' = 'new';
  let machine: Machine | undefined;
  let pk = '';
  let info: StreamInfo | undefined;
  let cancelWatch: (() => void) | undefined;
  let watched: readonly string[] = [];
  let lastWatchKeys: string[] = [];

  const finish = (status?: { code: grpc.status; details: string }) => {
    if (state === 'closed') return;
    const wasOpen = state === 'open' || state === 'waiting';
    state = 'closed';
    stopWaiting?.();
    cancelWatch?.();
    if (wasOpen) {
      metrics.streams.dec({ api });
      deps.svids.detach(pk);
      if (info) deps.registry.remove(info.id);
    }
    if (status) call.emit('error', Object.assign(new Error(status.details), status));
    else if (call.writable) call.end();
  };

  const rewatch = () => {
    if (state !== 'open' || sameKeys(lastWatchKeys, watched)) return;
    cancelWatch?.();
    watched = lastWatchKeys;
    cancelWatch = deps.cache.watch(lastWatchKeys, () => run(machine!.onChange()));
  };

  const run = (actions: (SotwAction | DeltaAction)[]) => {
    if (state !== 'open') return;
    for (const a of actions) {
      switch (a.type) {
        case 'send':
          call.write(a.response);
          metrics.pushes.inc();
          info!.pushes++;
          break;
        case 'fail':
          log.warn({ proxy: pk, api, reason: a.message }, 'stream refused');
          return finish({ code: grpc.status.INVALID_ARGUMENT, details: a.message });
        case 'nack':
          metrics.nacks.inc();
          info!.nacks++;
          info!.lastNack = a.detail.message;
          log.warn({ proxy: pk, api, nonce: a.nonce, version: a.version_info, detail: a.detail.message }, 'proxy rejected a secret (NACK); keeping its last accepted version');
          break;
        case 'ack':
          metrics.acks.inc();
          break;
        case 'subscribe':
          info!.subscription = a.subscription;
          break;
        case 'ignore':
          log.debug({ proxy: pk, api, reason: a.reason, nonce: a.nonce }, 'request ignored');
          break;
      }
    }
    rewatch();
  };

  const onRequest = (req: DiscoveryRequest & DeltaDiscoveryRequest) => {
    if (namesIn(req) > deps.maxNamesPerRequest) {
      return finish({ code: grpc.status.INVALID_ARGUMENT, details: `too many resource names in one request (limit ${deps.maxNamesPerRequest})` });
    }
    run(machine!.onRequest(req));
  };

  const open = (principal: ProxyPrincipal) => {
    if (state === 'closed') return;
    state = 'open';
    pk = deps.svids.attach(principal);
    metrics.streams.inc({ api });
    info = deps.registry.add(
      { api, proxy: pk, peer: call.getPeer(), subscription: undefined, opened: new Date(), pushes: 0, nacks: 0 },
      () => finish(),
    );
    const resolver = deps.publisher.resolverFor(pk, principal.mesh);
    const resolve: Resolver = (sub) => {
      const r = resolver.resolve(sub);
      lastWatchKeys = resolver.watchKeys();
      return r;
    };
    const ctx = { resolve, allowEmptyTypeUrl: api !== 'ads' };
    machine = mode === 'sotw' ? (new SotwStream(ctx) as Machine) : (new DeltaStream(ctx) as Machine);
    // A proxy that just connected usually gets its SVID within milliseconds: wait for that (bounded)
    // before the first answer, so it gets one complete response instead of a partial one and a push.
    if (!isUndecided(deps.svids.get(pk))) return start();
    state = 'waiting';
    const cancelWait = deps.cache.watch([proxyMetaKey(pk)], () => {
      if (!isUndecided(deps.svids.get(pk))) start();
    });
    const timer = setTimeout(() => start(), deps.identityWaitMs);
    stopWaiting = () => {
      cancelWait();
      clearTimeout(timer);
    };
  };

  let stopWaiting: (() => void) | undefined;
  const start = () => {
    stopWaiting?.();
    stopWaiting = undefined;
    if (state !== 'waiting' && state !== 'open') return;
    state = 'open';
    for (const req of queued.splice(0)) onRequest(req);
  };

  call.on('data', (req: DiscoveryRequest & DeltaDiscoveryRequest) => {
    if (state === 'closed') return;
    if (state === 'open') return onRequest(req);
    queued.push(req);
    if (state === 'authenticating' || state === 'waiting') return;
    state = 'authenticating';
    deps.authenticate(call.metadata, req.node?.id ?? undefined).then(open, (err: Error & { code?: grpc.status }) => {
      metrics.streamAuthFailures.inc();
      log.warn({ api, peer: call.getPeer(), node: req.node?.id, reason: err.message }, 'stream authentication failed');
      finish({ code: err.code ?? grpc.status.UNAUTHENTICATED, details: err.message });
    });
  });
  call.on('end', () => finish());
  call.on('cancelled', () => finish());
  call.on('error', () => {
    if (state !== 'closed') finish();
  });
}

/** FetchSecrets: one answer built like a SotW response; waits briefly for names still being issued. */
export function handleFetch(
  call: grpc.ServerUnaryCall<DiscoveryRequest, DiscoveryResponse>,
  callback: grpc.sendUnaryData<DiscoveryResponse>,
  deps: StreamDeps,
): void {
  const req = call.request;
  if ((req.resource_names?.length ?? 0) > deps.maxNamesPerRequest) {
    return callback({ code: grpc.status.INVALID_ARGUMENT, details: `too many resource names (limit ${deps.maxNamesPerRequest})` });
  }
  deps.authenticate(call.metadata, req.node?.id ?? undefined).then(
    (principal) => {
      if (call.cancelled) return;
      const pk = deps.svids.attach(principal);
      const names = (req.resource_names ?? []).filter((n) => n !== '');
      const wildcard = names.length === 0 || names.includes('*');
      let watchKeys: string[] = [];
      const resolver = deps.publisher.resolverFor(pk, principal.mesh);
      const resolve: Resolver = (sub) => {
        const r = resolver.resolve(sub);
        watchKeys = resolver.watchKeys();
        return r;
      };
      let finished = false;
      let cancelWatch: (() => void) | undefined;
      // Releases the watch, the timer and the proxy reference exactly once.
      const release = (): boolean => {
        if (finished) return false;
        finished = true;
        cancelWatch?.();
        clearTimeout(timer);
        deps.svids.detach(pk);
        return true;
      };
      const done = (err: { code: grpc.status; details: string } | null, res?: DiscoveryResponse) => {
        if (!release()) return;
        if (err) callback(err);
        else callback(null, res);
      };
      const attempt = (final: boolean) => {
        if (finished) return;
        const result = fetchResponse(req, resolve);
        if (result.type === 'fail') return done({ code: grpc.status.INVALID_ARGUMENT, details: result.message });
        // A one-shot wildcard must not answer before the proxy's identity is known: it would never
        // learn about the SVID being issued right now (streams get it pushed; a fetch does not).
        const waitForIdentity = wildcard && isUndecided(deps.svids.get(pk));
        if ((result.held.length === 0 && !waitForIdentity) || final) {
          if (result.held.length > 0 && result.resources.length === 0) {
            const why = deps.svids.get(pk);
            const reason = why && 'reason' in why ? `: ${why.reason}` : '';
            return done({ code: grpc.status.UNAVAILABLE, details: `secret ${result.held.map((n) => JSON.stringify(n)).join(', ')} not available${reason}` });
          }
          return done(null, result.response);
        }
        cancelWatch?.();
        cancelWatch = deps.cache.watch(watchKeys, () => attempt(false));
      };
      const timer = setTimeout(() => attempt(true), deps.fetchWaitMs);
      // A client that gives up must not keep its proxy attached until the wait times out.
      call.on('cancelled', release);
      attempt(false);
    },
    (err: Error & { code?: grpc.status }) => {
      deps.metrics.streamAuthFailures.inc();
      callback({ code: err.code ?? grpc.status.UNAUTHENTICATED, details: err.message });
    },
  );
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
