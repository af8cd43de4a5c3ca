import { existsSync } from 'node:fs';
import { filter, firstValueFrom, shareReplay, type Subscription } from 'rxjs';
import { readFlagFileSync } from '../api/flag-file.js';
import { splitPemCertificates } from '../api/pem.js';
import { FlagFileError, fsErrorReason, pathForMessage } from '../api/secret-text.js';
import { IdentityAuthorities, type AuthorityView } from '../identity/authorities.js';
import { FederationFollower, type FollowerOptions } from '../federation/follower.js';
import { federatedViews } from '../federation/view.js';
import type { FederatedView } from '../federation/mesh-trusts.js';
import { SvidManager } from '../identity/svids.js';
import { ServingZones } from '../identity/serving-zones.js';
import { flatKey } from '../api/flat-key.js';
import { expiredCas } from '../trust/aggregate.js';
import { SvidIssuer } from '../pki/issuer.js';
import { openStore } from '../store/open.js';
import type { ResourceStore } from '../store/types.js';
import { loadStateKeys, openSealedState } from '../store/state-setup.js';
import { SecretCache } from '../xds/cache.js';
import type { BundleEndpoint } from '../federation/endpoint.js';
import { startAdminServer, type AdminServer } from './admin.js';
import { checkBundleEndpointConfig, startServerBundleEndpoint, type BundleEndpointConfig } from './bundle-endpoint.js';
import { admitStream, authenticateStream, type AuthOptions } from './auth.js';
import { bounded, drainStreams, type DrainHandle } from './drain.js';
import { debugIdentities, debugProxies, debugSecrets } from './debug.js';
import { bindServer, checkSocketFolder, groupId, listenCredentials, ListenError, listensLocally, tcpTarget, unixPath } from './listen.js';
import { parseHostPort } from '../api/host-port.js';
import { parseEndpointListen } from '../federation/endpoint.js';
import { routeGrpcLogs } from './grpc-logging.js';
import { GrpcServer, type TlsKeyPair } from './grpc-h2/server.js';
import { defaultMaxConnections } from './fd-limit.js';
import { createLogger, limitedWarn, peerSource, WarnLimiter, type Logger } from './logger.js';
import { IdentityChangeLog } from './identity-log.js';
import { registerLiveMetrics, registerReadinessMetric } from './live-metrics.js';
import { createMetrics, type Metrics } from './metrics.js';
import type { Readiness } from './readiness.js';
import { serverReadiness } from './server-readiness.js';
import { SecretPublisher } from './publisher.js';
import { REVOKED_STATE_KEY, TokenAuthority } from './tokens.js';
import { recheckCredentials, StreamRegistry, type StreamDeps } from './xds-streams.js';
import { registerServices } from './xds-routes.js';
import { watchTlsKeyPair, type TlsReloader } from './tls-reload.js';

/**
 * SVIDs held ready at most for Dataplanes without a proxy: a held P-256 SVID took 3.5 KB of RSS in
 * the benchmark (10,000: +34 MB), so about 70 MB at most, what ~1,900 connected proxies take.
 */
export const DEFAULT_PREPARED_SVIDS = 20_000;

export interface ServeConfig extends BundleEndpointConfig {
  resourcesDir?: string;
  store?: string;
  stateDir: string;
  /** Seals private keys in the state (SPEC §6); see src/store/state-setup.ts. */
  stateKeyFile?: string;
  stateOldKeyFile?: string;
  insecurePlaintextState?: boolean;
  /** Directory store: larger files are refused (default 4 MiB). */
  maxFileSize?: number;
  /** Postgres: how often the change feed's connection is checked (default 10 s; lower only for tests). */
  postgresHeartbeatMs?: number;
  listen: string;
  auth: 'token' | 'none';
  zone: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
  socketGroup?: string;
  admin?: string;
  /** /rotate and /debug/* of the admin server answer other hosts too (else loopback clients only). */
  adminRemoteDebug?: boolean;
  logLevel?: string;
  flatTrust?: boolean;
  issuerWorkers?: number;
  /**
   * SVIDs issued ahead for Dataplanes no proxy is attached to, so a proxy that connects is answered
   * without waiting for issuance (20,000; 0: none).
   */
  prepareSvids?: number;
  /** How often --tls-cert/--tls-key are compared with what is served (5 s). */
  tlsReloadMs?: number;
  maxNamesPerRequest?: number;
  /** How often open streams' tokens are re-checked for revocation and expiry. */
  credentialRecheckMs?: number;
  /** How often served trust bundles are checked for CAs that expired since (30 s). */
  trustExpiryCheckMs?: number;
  /** How often CAs are read from the state again and judged anew although nothing changed (30 s). */
  stateResyncMs?: number;
  /**
   * gRPC connections held at once; more are closed as they arrive (default: the soft open-file
   * limit minus 1,024, or a quarter of it, reserved for everything else; 0: no limit).
   */
  maxConnections?: number;
  /** A stream that sends no request this long after opening is ended (30 s). */
  firstRequestTimeoutMs?: number;
  /** How often the token revocation list is re-read from the store in the background (1000 ms). */
  revocationRefreshMs?: number;
  logger?: Logger;
  /** PEM CAs trusted (besides the system roots) for https_web bundle endpoints. */
  federationCaFile?: string;
  /** Federation follower overrides (tests: refresh bounds, clock). */
  federation?: Partial<Omit<FollowerOptions, 'state' | 'log' | 'registry'>>;
}

export interface RunningServer {
  address: string;
  port?: number;
  admin?: AdminServer;
  bundleEndpoint?: BundleEndpoint;
  metrics: Metrics;
  store: ResourceStore;
  tokens?: TokenAuthority;
  svids: SvidManager;
  authorities: IdentityAuthorities;
  /** Follows ClusterFederatedTrustDomains (SPEC §10). */
  federation: FederationFollower;
  /** The latest trust view, federated MeshTrusts included. */
  view(): FederatedView | undefined;
  publisher: SecretPublisher;
  registry: StreamRegistry;
  /** The checks behind /readyz (SPEC §6). */
  readiness: Readiness;
  log: Logger;
  /** Resolves once the first resource snapshot has been turned into secrets. */
  ready: Promise<void>;
  /**
   * Shuts down. With `drainMs` > 0 (SIGTERM): readiness turns 503 at once, streams keep being
   * served and are ended connection by connection spread over `drainMs`; then everything is
   * closed with bounded waits. A later call without `drainMs` ends the drain at once.
   */
  close(drainMs?: number): Promise<void>;
}

export async function startServer(cfg: ServeConfig): Promise<RunningServer> {
  const log = cfg.logger ?? createLogger(cfg.logLevel ?? 'info');
  routeGrpcLogs(log);
  if (cfg.auth === 'none') {
    if (!listensLocally(cfg.listen)) {
      throw new ListenError(`--auth none is only allowed on a loopback address or a unix socket, not ${cfg.listen}`);
    }
    log.warn({ listen: cfg.listen }, 'AUTHENTICATION DISABLED (--auth none): any local process can obtain any proxy identity by naming it. Development only.');
  }
  // Refuse a bad address/TLS combination before opening the store or starting workers: a typo in
  // an address must not leave a migrated schema or CA keys in a new --state-dir behind.
  listenCredentials(cfg);
  const socketPath = unixPath(cfg.listen);
  const addresses: [string, string, { host: string; port: number }][] = [];
  if (socketPath === undefined) addresses.push(['--listen', cfg.listen, tcpTarget(cfg.listen)]);
  else {
    checkSocketFolder(socketPath);
    if (cfg.socketGroup) groupId(cfg.socketGroup);
  }
  if (cfg.admin !== undefined) addresses.push(['--admin', cfg.admin, parseHostPort(cfg.admin, '--admin')]);
  if (cfg.bundleEndpoint !== undefined) addresses.push(['--bundle-endpoint', cfg.bundleEndpoint, parseEndpointListen(cfg.bundleEndpoint)]);
  refuseSharedAddress(addresses);
  checkBundleEndpointConfig(cfg);
  const federationCaPem = cfg.federationCaFile ? readFederationCaFile(cfg.federationCaFile) : undefined;
  // Read before the store opens (and handed to openSealedState): opening the Postgres store
  // migrates its schema, which a missing or malformed key file must not leave behind.
  const stateKeys = await loadStateKeys(cfg);
  // The directory store creates a missing resource folder: a mistyped --resources served nothing, silently.
  const resourcesCreated = !cfg.store && cfg.resourcesDir !== undefined && !existsSync(cfg.resourcesDir);
  const metrics = createMetrics();
  const store = await openStore(cfg, log);
  // Refuses start-up (wrong or missing state key) before anything reads a key or serves.
  const state = await openSealedState(store.state, { ...cfg, postgres: !!cfg.store, keys: stateKeys }, log).catch(async (e: unknown) => {
    await store.close();
    // A state dir that is a file or cannot be listed (another user's): the system's words
    // ("ENOTDIR: not a directory, scandir '…'") said neither which flag nor what it is for. Its
    // reason only, not node's message or error: they quote the path, which may be a key given by mistake.
    const errno = e as NodeJS.ErrnoException;
    if (!cfg.store && typeof errno.syscall === 'string') throw new Error(`--state-dir ${pathForMessage(cfg.stateDir)} cannot be used as the state directory: ${fsErrorReason(e)}`);
    throw e;
  });
  // Revocations are re-read in the background; a new one closes streams and forgets claim sets at once.
  let onRevoked: () => void = () => undefined;
  // Read every second: a damaged record or a store that is down would otherwise log every second, or
  // (at debug, as before) never. Warned at once for each reason, then summarised once a minute while it lasts.
  const revocationWarnings = new WarnLimiter(log, { windowMs: 60_000 });
  const revocationReadFailed = (reason: string): void =>
    revocationWarnings.warn(reason, { stateKey: REVOKED_STATE_KEY, err: reason }, 're-reading token revocations failed; the last list read stays in force (revocations made since are not seen)');
  const tokens =
    cfg.auth === 'token'
      ? await TokenAuthority.open(state, {
          revocationRefreshMs: cfg.revocationRefreshMs ?? 1000,
          onRevoked: () => onRevoked(),
          onRevocationRefreshError: (err) => revocationReadFailed(err instanceof Error ? err.message : String(err)),
        })
      : undefined;
  const authorities = new IdentityAuthorities({ zone: cfg.zone, state, log, stateResyncMs: cfg.stateResyncMs });
  // Warns when a replica of this state serves another zone (other trust domains); never refuses.
  const servingZones = new ServingZones({ state, zone: cfg.zone, log });
  await servingZones.start();
  const issuer = new SvidIssuer({ workers: cfg.issuerWorkers });
  // Workers boot while the store loads; readiness waits for them (below).
  const issuerWarm = issuer.warmUp();
  const cache = new SecretCache({ onError: (err) => log.error({ err: String(err) }, 'stream watcher failed') });
  const svids = new SvidManager({
    issuer,
    log,
    prepareLimit: cfg.prepareSvids ?? DEFAULT_PREPARED_SVIDS,
    onPrepareFull: (limit) =>
      log.warn({ limit }, 'SVIDs are prepared for at most --prepare-svids Dataplanes without a proxy: the others get places as prepared ones are handed out, and a proxy of one still without is issued its SVID when it connects'),
    onIssued: ({ mesh, identity, seconds, svid }) => {
      metrics.svidIssued.inc({ mesh, identity });
      issuedSeries.set(flatKey(mesh, '/', identity), { mesh, identity });
      metrics.svidIssueSeconds.observe(seconds);
      log.debug({ spiffeId: svid.spiffeId, serial: svid.serialHex, notAfter: svid.notAfter }, 'SVID issued');
    },
    onDropped: (pk) => {
      identityLog.gone(pk);
      pub.proxyGone(pk);
    },
  });
  metrics.prepared.read = () => svids.preparedStats();
  const pub = new SecretPublisher(cache, svids, { zone: cfg.zone, flatTrust: cfg.flatTrust, log });
  const subs: Subscription[] = [];
  let expiredReported = '';
  let trustView: AuthorityView | undefined;
  /**
   * An expired CA stays in its bundle (it validates nothing) but is reported, once per change of the
   * expired set: judged on every view and every 30 s, since a partner's CA expires while nothing changes.
   */
  const reportExpiredTrust = (view: AuthorityView) => {
    const now = new Date();
    const expired = [...new Set(view.trusts.map((t) => t.mesh))].flatMap((mesh) => {
      const bundle = pub.bundle(mesh);
      return bundle ? expiredCas(bundle, now).map((e) => ({ mesh, ...e })) : [];
    });
    const signature = JSON.stringify(expired);
    if (signature === expiredReported) return;
    expiredReported = signature;
    for (const e of expired) log.warn({ mesh: e.mesh, trustDomain: e.trustDomain, meshTrust: e.source, subject: e.subject, notAfter: e.notAfter }, 'MeshTrust carries an expired CA');
  };
  const trustExpiryCheck = setInterval(() => trustView && reportExpiredTrust(trustView), cfg.trustExpiryCheckMs ?? 30_000);
  trustExpiryCheck.unref();
  /** The labels of every svid_issued_total series, by `<mesh>/<identity name>`: one whose identity is gone loses it. */
  const issuedSeries = new Map<string, { mesh: string; identity: string }>();
  /** Identity KRIs with a CA expiry series, and its value: one whose identity is gone loses its series. */
  let caExpirySeries = new Map<string, number>();
  const onView = (view: AuthorityView) => {
    pub.setView(view);
    svids.setView(view);
    trustView = view;
    reportExpiredTrust(view);
    metrics.resourceErrors.set(view.snapshot.errors.length);
    const withCa = new Map<string, number>();
    for (const st of view.identities.values()) {
      // An identity whose CA expired keeps that CA's end, a time in the past, so an expiry alert
      // keeps firing rather than resolving the moment every leaf is dead: the refused CA's own end
      // (after a restart too), else the last one reported.
      const end = st.ca ? st.ca.notAfter.getTime() / 1000 : st.refusedCaEnd ? st.refusedCaEnd.getTime() / 1000 : caExpirySeries.get(st.kri);
      if (end === undefined) continue;
      metrics.certificateExpiry.set({ kind: 'ca', name: st.kri }, end);
      withCa.set(st.kri, end);
    }
    // A deleted MeshIdentity's CA is served no more: its series would alert on it until a restart.
    for (const kri of caExpirySeries.keys()) if (!withCa.has(kri)) metrics.certificateExpiry.remove({ kind: 'ca', name: kri });
    caExpirySeries = withCa;
    // Nor does it issue: a server whose identities come and go must not keep a series for each one.
    if (issuedSeries.size > 0) {
      const live = new Set([...view.identities.values()].map((st) => flatKey(st.identity.mesh, '/', st.identity.name)));
      for (const [key, labels] of issuedSeries) {
        if (live.has(key)) continue;
        metrics.svidIssued.remove(labels);
        issuedSeries.delete(key);
      }
    }
  };
  const federation = new FederationFollower({
    state,
    log,
    registry: metrics.registry,
    ...cfg.federation,
    fetch: { ...cfg.federation?.fetch, webCaPem: federationCaPem },
  });
  const views$ = federatedViews(authorities.views$, federation).pipe(shareReplay(1));
  let latestView: FederatedView | undefined;
  // A federated trust domain the server issues from is trusted nowhere: said once per change.
  let ownDomainsReported = '';
  const reportOwnDomains = (v: FederatedView) => {
    const refused = v.federation.filter((f) => f.conditions.some((c) => c.type === 'MeshTrustCreated' && c.reason === 'LocalTrustDomain'));
    const signature = refused.map((f) => `${f.resource}>${f.trustDomain}`).join();
    if (signature === ownDomainsReported) return;
    ownDomainsReported = signature;
    for (const f of refused) {
      const why = f.conditions.find((c) => c.type === 'MeshTrustCreated')?.message;
      log.warn({ resource: f.resource, trustDomain: f.trustDomain, reason: why }, 'ClusterFederatedTrustDomain names a trust domain this server issues from; its CAs are trusted in no mesh');
    }
  };
  subs.push(
    views$.subscribe((v) => {
      reportOwnDomains(v);
      onView((latestView = v));
    }),
  );
  const identityLog = new IdentityChangeLog(log);
  subs.push(
    svids.changes$.subscribe((pk) => {
      pub.proxyChanged(pk);
      identityLog.changed(pk, svids.get(pk));
    }),
  );
  const storeSource = cfg.store ? 'postgres' : 'directory';
  metrics.storeErrors.set({ source: storeSource }, 0);
  subs.push(store.snapshots$.subscribe((snap) => metrics.storeErrors.set({ source: storeSource }, snap.errors.length)));
  authorities.start(store.snapshots$);
  await store.start();
  // The field as the message: a key set as --resources by mistake is described, not logged.
  if (resourcesCreated) log.warn({ resources: pathForMessage(cfg.resourcesDir!) }, `--resources ${pathForMessage(cfg.resourcesDir!)} did not exist: created it empty, so no resources are served until files are put there (a mistyped path?)`);

  const registry = new StreamRegistry();
  registerLiveMetrics(metrics, { svids, registry });
  // A Dataplane added or changed under a proxy whose token claims now contradict it: what the proxy
  // was given from those claims must stop now (SPEC §5: a mismatch is UNAUTHENTICATED), not linger
  // on streams opened before.
  subs.push(
    svids.changes$.subscribe((pk) => {
      const id = svids.get(pk);
      if (id?.state !== 'pending' || !id.denied) return;
      for (const s of registry.streams.values()) if (s.info.proxy === pk) s.deny(id.reason);
    }),
  );
  // Built once: a function made per stream costs an allocation (and, under tsx, a defineProperty for its name).
  const authOptions: AuthOptions = { mode: cfg.auth, tokens, dataplaneOf: (mesh, name) => svids.dataplane(mesh, name) };
  const deps: StreamDeps = {
    draining: () => draining,
    cache,
    publisher: pub,
    svids,
    admit: (md) => admitStream(md, authOptions),
    authenticate: (md, nodeId) => authenticateStream(md, nodeId, authOptions),
    metrics,
    log,
    maxNamesPerRequest: cfg.maxNamesPerRequest ?? 1000,
    fetchWaitMs: 5000,
    identityWaitMs: 1000,
    registry,
  };
  const server = new GrpcServer({
    firstRequestTimeoutMs: cfg.firstRequestTimeoutMs,
    keepaliveTimeMs: 60_000,
    keepaliveTimeoutMs: 20_000,
    maxMessageBytes: 1024 * 1024,
    // As grpc-js did: the value is dropped (the stream then lacks it) and never logged.
    maxConnections: cfg.maxConnections === 0 ? undefined : (cfg.maxConnections ?? defaultMaxConnections()),
    onConnectionLimit: (peer, limit) => {
      metrics.connectionsOverLimit.inc();
      limitedWarn(log, 'max-connections', { component: 'grpc', peer, limit }, `connection closed: ${limit} gRPC connections open, the limit (--max-connections; default from the open-file limit)`);
    },
    onTooManyRefusedStreams: (peer, refused) =>
      limitedWarn(log, peerSource(peer), { component: 'grpc', peer, refused }, 'connection sent away (GOAWAY ENHANCE_YOUR_CALM): too many of its streams refused (authentication failed, unknown method or over a limit) or reset for its protocol errors within 10 s'),
    onRefusedConnection: (peer, reason) => limitedWarn(log, peer, { component: 'grpc', peer, reason }, 'connection refused before any gRPC'),
    onFloodedConnection: (peer, reason) => limitedWarn(log, peerSource(peer), { component: 'grpc', peer, reason }, 'connection closed (GOAWAY): the peer flooded it'),
    onRefusedHeader: (name, peer) =>
      limitedWarn(log, peerSource(peer), { component: 'grpc', peer }, `gRPC dropped metadata entry "${name}": it contains characters outside printable ASCII (value not logged)`),
  });
  /** The gRPC health service's SERVING: from the first view until shutdown begins. */
  let serving = false;
  /** The first view was computed (stays true while draining: /readyz then fails on `draining` alone). */
  let loaded = false;
  let draining = false;
  const readiness = serverReadiness({ store, loaded: () => loaded, authorities, tokens, state, draining: () => draining });
  registerReadinessMetric(metrics, readiness);
  const health = registerServices(server, deps, () => serving);

  const ready = firstValueFrom(views$.pipe(filter(() => true))).then(() => {
    serving = true;
    loaded = true;
    health.servingChanged();
  });
  let bound: { address: string; port?: number; tls?: TlsKeyPair };
  let bundles: Awaited<ReturnType<typeof startServerBundleEndpoint>>;
  // Until the listener is bound nothing may be holding the event loop (the issuer's workers are
  // unref'd): without this a starting process can run out of work and exit silently, mid-start.
  const startingUp = setInterval(() => undefined, 60_000);
  try {
    // Accept proxies only once the first snapshot has become secrets: a reconnecting delta client
    // must not be told that the secrets it holds were removed just because they are not built yet.
    await Promise.all([ready, issuerWarm]);
    bundles = await startServerBundleEndpoint(cfg, { authorities, state, issuer, log, registry: metrics.registry });
    bound = await bindServer(server, cfg).catch(async (e: unknown) => {
      await bundles?.close();
      throw e;
    });
  } catch (e) {
    for (const sub of subs) sub.unsubscribe();
    authorities.stop();
    servingZones.stop();
    await federation.close();
    svids.close();
    await issuer.close();
    await store.close();
    throw e;
  } finally {
    clearInterval(startingUp);
  }
  const admin = cfg.admin
    ? await startAdminServer({
        listen: cfg.admin,
        metrics,
        readiness: () => readiness.evaluate(),
        debug: {
          proxies: () => debugProxies(svids, registry),
          secrets: () => debugSecrets(svids, pub),
          identities: () => debugIdentities(authorities.current),
        },
        rotate: (proxy) => {
          // A node id rotates every claim set of that node; a full proxy key just that one.
          const keys = proxy ? svids.keysFor(proxy) : [...svids.entries()].map(([k]) => k);
          let n = 0;
          for (const k of keys) if (svids.rotate(k)) n++;
          return n;
        },
        remoteDebug: cfg.adminRemoteDebug,
        logger: log,
        // Name the flag, as the gRPC listener's error does: "listen EADDRINUSE" alone does not say which.
      }).catch((e: Error) => {
        throw new ListenError(`--admin: cannot listen on ${cfg.admin}: ${e.message}`);
      })
    : undefined;
  log.info({ listen: bound.address, admin: admin?.url, bundleEndpoint: bundles?.endpoint.url, auth: cfg.auth, zone: cfg.zone, store: cfg.store ? 'postgres' : cfg.resourcesDir && pathForMessage(cfg.resourcesDir) }, 'mesh-sds serving');
  const tlsReload = cfg.tlsCert && cfg.tlsKey && bound.tls ? watchListenerKeyPair(cfg.tlsCert, cfg.tlsKey, bound.tls, server, metrics, log, cfg.tlsReloadMs) : undefined;
  if (tlsReload) readiness.add('listener-tls', () => tlsReload.health());

  const recheckNow = () => tokens && recheckCredentials(registry, svids, (jti) => tokens.isRevoked(jti));
  onRevoked = recheckNow;
  const recheck = tokens ? setInterval(recheckNow, cfg.credentialRecheckMs ?? 5000) : undefined;
  recheck?.unref();
  // Streams that never send their first request are ended (they are on no list an operator sees).
  const silentSweep = setInterval(() => registry.endSilent(cfg.firstRequestTimeoutMs ?? 30_000), Math.min(5000, cfg.firstRequestTimeoutMs ?? 30_000));
  silentSweep.unref();

  let closing: Promise<void> | undefined;
  let drain: DrainHandle | undefined;
  const close = (drainMs = 0): Promise<void> => {
    // A second call without a drain period (a second signal) cuts a running drain short.
    if (closing && drainMs === 0) drain?.finishNow();
    return (closing ??= (async () => {
      // The shutdown waits below use unref'd timers; hold the process until it is done, or it can
      // run out of work and exit in the middle of closing (once the listener is gone).
      const closingUp = setInterval(() => undefined, 60_000);
      try {
        await shutdown(drainMs);
      } finally {
        clearInterval(closingUp);
      }
    })());
  };
  const shutdown = async (drainMs: number): Promise<void> => {
    {
      // Not ready first, so load balancers and health checks stop sending proxies here.
      serving = false;
      draining = true;
      // Watchers (load balancers, probes) hear of it at once, as Check callers do.
      health.servingChanged();
      if (drainMs > 0) {
        drain = drainStreams(registry.streams.values(), { periodMs: drainMs, log });
        // A stream that still arrives here is sent on its way at once.
        registry.onAdd = (s) => queueMicrotask(() => drain?.refuse(s));
        await drain.done;
      }
      clearInterval(recheck);
      clearInterval(silentSweep);
      clearInterval(trustExpiryCheck);
      tlsReload?.close();
      tokens?.close();
      registry.closeAll();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await bounded('bundle endpoint', bundles?.close() ?? Promise.resolve(), 2000, log);
      for (const s of subs) s.unsubscribe();
      authorities.stop();
      servingZones.stop();
      await federation.close();
      svids.close();
      // Every wait is bounded: a hung database or worker must not hold the process past drain + 5 s.
      await Promise.all([
        bounded('issuer workers', issuer.close(), 2000, log),
        bounded('admin server', admin?.close() ?? Promise.resolve(), 2000, log),
        bounded('store', store.close(), 2000, log),
      ]);
    }
  };
  return { address: bound.address, port: bound.port, admin, bundleEndpoint: bundles?.endpoint, metrics, store, tokens, svids, authorities, federation, view: () => latestView, publisher: pub, registry, readiness, log, ready, close };
}

/**
 * Whether a listener on host `w` takes the port of host `h` too: the same host, every host ('' and
 * '::', dual-stack), or 0.0.0.0 for an IPv4 address (not for an IPv6 one such as ::1).
 */
function coversHost(w: string, h: string): boolean {
  return w === h || w === '' || w === '::' || (w === '0.0.0.0' && /^\d+\.\d+\.\d+\.\d+$/.test(h));
}

/**
 * Two of the server's own listeners on one port of one host (or of every host): the second failed
 * with EADDRINUSE only after the first was bound and the store opened, in words that send an
 * operator looking for another process.
 */
function refuseSharedAddress(addresses: [string, string, { host: string; port: number }][]): void {
  for (let i = 0; i < addresses.length; i++) {
    for (let j = i + 1; j < addresses.length; j++) {
      const [flagA, textA, a] = addresses[i]!;
      const [flagB, textB, b] = addresses[j]!;
      if (a.port === 0 || a.port !== b.port) continue;
      const [hostA, hostB] = [a.host.toLowerCase(), b.host.toLowerCase()];
      if (!coversHost(hostA, hostB) && !coversHost(hostB, hostA)) continue;
      throw new ListenError(`${flagA} ${textA} and ${flagB} ${textB} are the same address: each listener needs a port of its own`);
    }
  }
}

/** Serves a rotated --tls-cert/--tls-key to new connections; its expiry is a metric (kind="listener"). */
function watchListenerKeyPair(certFile: string, keyFile: string, served: TlsKeyPair, server: GrpcServer, metrics: Metrics, log: Logger, intervalMs?: number): TlsReloader {
  return watchTlsKeyPair(
    {
      certFile,
      keyFile,
      intervalMs,
      apply: (pair) => server.setTlsKeyPair(pair),
      onServed: (notAfter) => metrics.certificateExpiry.set({ kind: 'listener', name: 'grpc' }, notAfter.getTime() / 1000),
      log,
    },
    served,
  );
}

/**
 * Read before the store opens; its error never quotes a PEM pasted in place of the path. Node's
 * TLS silently skips what is not a PEM certificate in a CA list, so a DER file, a key or a damaged
 * block used to start the server with that CA missing and every https_web fetch failing as 'tls'.
 */
function readFederationCaFile(file: string): string {
  const pem = readFlagFileSync('--federation-ca-file', file).toString('utf8');
  const { error } = splitPemCertificates(pem);
  if (error) throw new FlagFileError('--federation-ca-file', file, undefined, `it must hold the PEM CA certificates of https_web bundle endpoints: ${error}`);
  return pem;
}
