// Token authentication on real streams (SPEC §5): a bad token gets UNAUTHENTICATED and nothing else.
// The world's Dataplanes are namespaced (web of shop): tokens and node ids name them in full.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import type { RunningServer } from '../../src/server/serve.js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { DeltaClient, SotwClient, fetchSecrets, nodeOf, secretsOf } from './envoy-client.js';
import { makeWorld, sleep, startWorldServer, type World } from './world.js';

let world: World;
let other: World;
let s: RunningServer;
let forger: RunningServer;

before(async () => {
  world = makeWorld();
  other = makeWorld();
  [s, forger] = await Promise.all([startWorldServer(world, { auth: 'token', credentialRecheckMs: 200 }), startWorldServer(other, { auth: 'token' })]);
});

after(async () => {
  await Promise.all([s.close(), forger.close()]);
  world.cleanup();
  other.cleanup();
});

/** Opens a SotW stream asking for `default`; resolves with its end status, or 'served' when answered. */
async function attempt(node: string, token: string | undefined): Promise<{ code: grpc.status; details: string } | 'served'> {
  const c = new SotwClient(s.address, { node, token });
  try {
    c.request(['default']);
    const outcome = await Promise.race([c.ended, c.next(5000).then(() => 'served' as const)]);
    if (outcome !== 'served') {
      // Nothing may have been sent before the refusal.
      await sleep(50);
      assert.equal(c.received.length, 0, 'no response on a refused stream');
    }
    return outcome;
  } finally {
    c.close();
  }
}

/** The server's registered streams. */
const registeredStreams = (server: RunningServer) => [...server.registry.streams.values()];

function assertUnauthenticated(outcome: Awaited<ReturnType<typeof attempt>>, why: RegExp): void {
  assert.notEqual(outcome, 'served', 'stream must be refused');
  if (outcome === 'served') return;
  assert.equal(outcome.code, grpc.status.UNAUTHENTICATED, `${grpc.status[outcome.code]}: ${outcome.details}`);
  assert.match(outcome.details, why);
}

describe('token authentication (--auth token)', () => {
  it('serves a stream with a valid token for its node', async () => {
    const token = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    assert.equal(await attempt('default.web.shop', token), 'served');
  });

  it('refuses a stream without a token', async () => {
    assertUnauthenticated(await attempt('default.web.shop', undefined), /authorization/);
  });

  it('refuses a token signed by another server (forged)', async () => {
    const token = await forger.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    assertUnauthenticated(await attempt('default.web.shop', token), /signature/);
  });

  it('refuses an expired token', async () => {
    const token = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000, now: new Date(Date.now() - 2 * 3600_000) });
    assertUnauthenticated(await attempt('default.web.shop', token), /expired/);
  });

  it('refuses a token bound to another dataplane (mismatched node id)', async () => {
    const token = await s.tokens!.generate({ mesh: 'default', name: 'pay.billing', validForMs: 3600_000 });
    assertUnauthenticated(await attempt('default.web.shop', token), /not valid for node/);
  });

  it('refuses a garbage token, on delta streams and FetchSecrets too', async () => {
    assertUnauthenticated(await attempt('default.web.shop', 'not-a-jwt'), /malformed|token/);
    const d = new DeltaClient(s.address, { node: 'default.web.shop' });
    d.subscribe(['default']);
    const end = await d.ended;
    assert.equal(end.code, grpc.status.UNAUTHENTICATED);
    assert.equal(d.received.length, 0);
    d.close();
    await assert.rejects(
      fetchSecrets(s.address, { node: nodeOf('default.web.shop'), resource_names: ['default'], type_url: SECRET_TYPE_URL }),
      (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED,
    );
  });

  it('refuses a call without a valid token as it opens, before any request: a peer that never sends one holds nothing', async () => {
    // A hostile peer opening streams (with large headers) and never sending a request used to keep
    // each one, headers and all, until its first message: 3,000 such streams held 145 MB.
    const session = http2.connect(`http://${s.address}`);
    session.on('error', () => undefined);
    const open = (path: string, authorization?: string) =>
      new Promise<{ grpcStatus?: string; message?: string; ms: number; state: string }>((resolve) => {
        const t0 = Date.now();
        const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'x-pad': 'p'.repeat(32_000) };
        if (authorization) headers.authorization = authorization;
        const st = session.request(headers); // no DATA frame: no request, ever
        let trailers: http2.IncomingHttpHeaders = {};
        st.on('response', (h) => (trailers = h));
        st.on('trailers', (h) => (trailers = h));
        st.on('error', () => undefined);
        // Closed: the server answered and reset the stream, so nothing of it is left on either side.
        st.on('close', () => resolve({ grpcStatus: trailers['grpc-status'] as string | undefined, message: trailers['grpc-message'] as string | undefined, ms: Date.now() - t0, state: 'closed' }));
        setTimeout(() => {
          resolve({ ms: Date.now() - t0, state: 'open' });
          st.close();
        }, 1500);
      });
    try {
      const forged = await forger.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
      const paths = ['/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', '/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets', '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets'];
      for (const path of paths) {
        for (const [authorization, why] of [[undefined, /authorization/], ['Bearer not-a-jwt', /malformed/], [`Bearer ${forged}`, /signature/]] as const) {
          const r = await open(path, authorization);
          assert.equal(r.state, 'closed', `${path} with ${authorization ?? 'no token'}: still open without a request`);
          assert.equal(r.grpcStatus, String(grpc.status.UNAUTHENTICATED), path);
          assert.match(decodeURIComponent(r.message ?? ''), why);
          assert.ok(r.ms < 1000, `refused after ${r.ms} ms`);
        }
      }
      // A valid token is admitted and waits for its request (Envoy sends it at once; a test client may not).
      const token = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
      assert.equal((await open(paths[0]!, `Bearer ${token}`)).state, 'open');
    } finally {
      session.destroy();
    }
  });

  it('refuses new streams with a revoked token (within the 1 s revocation refresh)', async () => {
    const token = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    const c = new SotwClient(s.address, { node: 'default.web.shop', token });
    c.request(['default']);
    assert.ok(secretsOf(await c.next(5000)).has('default'));
    c.close();
    await s.tokens!.revokeToken(token);
    const deadline = Date.now() + 1500;
    let outcome = await attempt('default.web.shop', token);
    while (outcome === 'served' && Date.now() < deadline) {
      await sleep(100);
      outcome = await attempt('default.web.shop', token);
    }
    assertUnauthenticated(outcome, /revoked/);
  });

  it('closes an already open stream with UNAUTHENTICATED once its token is revoked', async () => {
    const token = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    const c = new SotwClient(s.address, { node: 'default.web.shop', token });
    try {
      c.request(['default']);
      const res = await c.next(5000);
      c.ack(res);
      await s.tokens!.revokeToken(token);
      const end = await Promise.race([c.ended, sleep(5000).then(() => 'still open' as const)]);
      assert.notEqual(end, 'still open', 'a revoked token must not keep receiving secrets');
      if (end !== 'still open') {
        assert.equal(end.code, grpc.status.UNAUTHENTICATED);
        assert.match(end.details, /token revoked/);
      }
    } finally {
      c.close();
    }
  });

  it('a revoked token ends every stream that uses it, together, and no stream of another token', async () => {
    const revoked = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    const kept = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    const open = (token: string, names: string[]) => {
      const c = new SotwClient(s.address, { node: 'default.web.shop', token });
      c.request(names);
      return c;
    };
    const doomed = [open(revoked, ['default']), open(revoked, ['system_trust_bundle']), open(revoked, ['default']), open(revoked, ['system_trust_bundle'])];
    const survivors = [open(kept, ['default']), open(kept, ['system_trust_bundle'])];
    try {
      for (const c of [...doomed, ...survivors]) c.ack(await c.next(5000));
      await s.tokens!.revokeToken(revoked);
      for (const c of doomed) {
        const end = await Promise.race([c.ended, sleep(5000).then(() => 'still open' as const)]);
        assert.notEqual(end, 'still open', 'every stream of a revoked token is closed');
        if (end !== 'still open') assert.match(end.details, /token revoked/);
      }
      // Several rechecks later (every 200 ms here) the other token's streams are still served.
      await sleep(600);
      for (const c of survivors) assert.equal(await Promise.race([c.ended.then(() => 'ended'), sleep(10).then(() => 'open')]), 'open');
      assert.ok(registeredStreams(s).some((st) => st.credential && !s.tokens!.isRevoked(st.credential.jti)), 'the other token\'s streams stay registered');
    } finally {
      for (const c of [...doomed, ...survivors]) c.close();
    }
  });

  it('closes an open stream when its token expires', async () => {
    const token = await s.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 1500 });
    const c = new SotwClient(s.address, { node: 'default.web.shop', token });
    try {
      c.request(['default']);
      c.ack(await c.next(5000));
      const end = await Promise.race([c.ended, sleep(6000).then(() => 'still open' as const)]);
      assert.notEqual(end, 'still open');
      if (end !== 'still open') assert.match(end.details, /token expired/);
    } finally {
      c.close();
    }
  });
});
