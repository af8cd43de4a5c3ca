// The Secret type on AggregatedDiscoveryService, unary FetchSecrets, and stream churn that must
// leave no watches or proxy references behind (go-control-plane#597/#882).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { RunningServer } from '../../src/server/serve.js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { DeltaClient, SotwClient, deltaSecretsOf, fetchSecrets, makeClient, nodeOf, secretsOf, tlsCertificate } from './envoy-client.js';
import { KRI_PAYMENTS, PAY_SPIFFE, WEB_SPIFFE, makeWorld, startWorldServer, waitFor, type World } from './world.js';

const CLUSTER_TYPE_URL = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

let world: World;
let s: RunningServer;

before(async () => {
  world = makeWorld();
  s = await startWorldServer(world);
});

after(async () => {
  await s.close();
  world.cleanup();
});

describe('AggregatedDiscoveryService', () => {
  it('serves the Secret type on StreamAggregatedResources', async () => {
    const c = new SotwClient(s.address, { node: 'default.web', api: 'ads' });
    try {
      c.request(['default', 'ROOTCA']);
      const r = await c.next(5000);
      assert.equal(r.type_url, SECRET_TYPE_URL);
      assert.deepEqual([...secretsOf(r).keys()].sort(), ['ROOTCA', 'default']);
      c.ack(r);
      await c.expectNothing(200);
    } finally {
      c.close();
    }
  });

  it('serves the Secret type on DeltaAggregatedResources', async () => {
    const c = new DeltaClient(s.address, { node: 'default.web', api: 'ads' });
    try {
      c.subscribe(['default']);
      const r = await c.next(5000);
      assert.equal(r.type_url, SECRET_TYPE_URL);
      assert.deepEqual([...deltaSecretsOf(r).keys()], ['default']);
    } finally {
      c.close();
    }
  });

  it('fails another type_url with INVALID_ARGUMENT (SotW and delta)', async () => {
    const c = new SotwClient(s.address, { node: 'default.web', api: 'ads' });
    c.request(['my-cluster'], { type_url: CLUSTER_TYPE_URL });
    const end = await c.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /envoy\.config\.cluster\.v3\.Cluster/);
    assert.equal(c.received.length, 0);
    c.close();

    const d = new DeltaClient(s.address, { node: 'default.web', api: 'ads' });
    d.subscribe(['my-cluster'], { type_url: CLUSTER_TYPE_URL });
    const endD = await d.ended;
    assert.equal(endD.code, grpc.status.INVALID_ARGUMENT);
    d.close();
  });
});

describe('FetchSecrets', () => {
  it('returns exactly the requested secrets', async () => {
    const res = await fetchSecrets(s.address, { node: nodeOf('default.web'), resource_names: ['default', WEB_SPIFFE, 'ROOTCA'], type_url: SECRET_TYPE_URL });
    const secrets = secretsOf({ ...res, resources: res.resources ?? [] });
    assert.deepEqual([...secrets.keys()].sort(), ['ROOTCA', 'default', WEB_SPIFFE].sort());
    assert.equal(tlsCertificate(secrets.get('default')!).certChainPem, tlsCertificate(secrets.get(WEB_SPIFFE)!).certChainPem);
  });

  it('answers a wildcard fetch for a proxy not seen before with its identity too, not only the trust bundles', async () => {
    // `pay` has no stream open in this file before: its SVID is issued during this very call.
    const res = await fetchSecrets(s.address, { node: nodeOf('default.pay'), resource_names: [], type_url: SECRET_TYPE_URL });
    const names = [...secretsOf({ ...res, resources: res.resources ?? [] }).keys()];
    for (const n of ['default', 'ROOTCA', KRI_PAYMENTS, PAY_SPIFFE, 'system_trust_bundle', 'ALL']) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  });

  it('answers a wildcard fetch for a proxy that can have no identity at once, with the trust bundles', async () => {
    const t0 = Date.now();
    const res = await fetchSecrets(s.address, { node: nodeOf('default.ghost'), resource_names: [], type_url: SECRET_TYPE_URL });
    assert.ok(Date.now() - t0 < 1000, 'not held until the fetch timeout');
    const names = [...secretsOf({ ...res, resources: res.resources ?? [] }).keys()];
    assert.ok(names.includes('system_trust_bundle'));
    assert.ok(!names.includes('default'));
  });

  it('says why a fetch of another identity\'s SPIFFE ID or KRI gets nothing: it is not this proxy\'s identity, which it names', async () => {
    // web's own identity is `identity` (WEB_SPIFFE): pay's names can never be served to it as they stand.
    const wait = await fetchSecrets(s.address, { node: nodeOf('default.web'), resource_names: ['default'], type_url: SECRET_TYPE_URL });
    assert.equal(wait.resources?.length, 1);
    await assert.rejects(
      fetchSecrets(s.address, { node: nodeOf('default.web'), resource_names: [PAY_SPIFFE, KRI_PAYMENTS], type_url: SECRET_TYPE_URL }),
      (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.UNAVAILABLE);
        assert.match(e.details, /not this proxy's identity/);
        assert.ok(e.details.includes(WEB_SPIFFE), e.details);
        assert.ok(e.details.includes(PAY_SPIFFE), e.details);
        return true;
      },
    );
  });

  it('says that a trust domain the mesh does not have is not one of its trust domains, not what the proxy\'s identity lacks', async () => {
    // ghost has no Dataplane (so no identity, with a reason); nope.example is no trust domain of the mesh.
    await assert.rejects(
      fetchSecrets(s.address, { node: nodeOf('default.ghost'), resource_names: ['spiffe://nope.example', 'default'], type_url: SECRET_TYPE_URL }),
      (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.UNAVAILABLE);
        assert.match(e.details, /"spiffe:\/\/nope\.example" is not a trust domain of mesh "default"/);
        assert.match(e.details, /"default" is the proxy's own: no Dataplane "ghost"/);
        return true;
      },
    );
  });

  it('fails an unknown-shape name with INVALID_ARGUMENT naming it', async () => {
    await assert.rejects(
      fetchSecrets(s.address, { node: nodeOf('default.web'), resource_names: ['default', 'nonsense-name'], type_url: SECRET_TYPE_URL }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /nonsense-name/.test(e.details),
    );
  });

  it('fails the empty-string name with INVALID_ARGUMENT instead of answering it as a wildcard', async () => {
    await assert.rejects(
      fetchSecrets(s.address, { node: nodeOf('default.web'), resource_names: [''], type_url: SECRET_TYPE_URL }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /unknown resource name ""/.test(e.details),
    );
  });
});

describe('stream churn', () => {
  it('releases the watch and the proxy of a FetchSecrets its client abandoned, without waiting for the fetch timeout', async () => {
    const watchesBefore = s.publisher.watchCount;
    await assert.rejects(
      fetchSecrets(s.address, { node: nodeOf('default.web'), resource_names: ['spiffe://never.example'], type_url: SECRET_TYPE_URL }, undefined, 300),
      (e: grpc.ServiceError) => e.code === grpc.status.DEADLINE_EXCEEDED,
    );
    // The server waits up to 5 s for a held name; an abandoned call must be released well before.
    await waitFor('the abandoned fetch to release its watch', () => s.publisher.watchCount === watchesBefore, 1500);
    const web = [...s.svids.entries()].find(([k]) => k === 'default.web')?.[1] as unknown as { refs: number } | undefined;
    assert.equal(web?.refs ?? 0, 0);
  });

  it('leaves no streams, watches or proxy references behind after 1000 open/close cycles', async () => {
    const watchesBefore = s.publisher.watchCount;
    const channels = Array.from({ length: 4 }, () => makeClient(s.address));
    const cycle = async (i: number) => {
      const c = new SotwClient(s.address, { node: i % 2 === 0 ? 'default.web' : 'default.pay', client: channels[i % channels.length] });
      switch (i % 4) {
        case 0: // served then closed by the client
        case 1:
          c.request(['default', 'system_trust_bundle']);
          await c.next(5000);
          c.close();
          break;
        case 2: // closed before anything was answered
          c.request(['spiffe://never.example']);
          await new Promise((r) => setImmediate(r));
          c.close();
          break;
        case 3: // failed by the server
          c.request(['bogus-name']);
          await c.ended;
          c.close();
          break;
      }
    };
    const total = 1000;
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < total) await cycle(next++);
      }),
    );
    for (const ch of channels) ch.close();
    await waitFor('every stream to be gone', () => s.registry.streams.size === 0, 5000);
    await waitFor('every watch to be cancelled', () => s.publisher.watchCount === watchesBefore, 5000);
    const refs = [...s.svids.entries()].map(([k, e]) => [k, (e as unknown as { refs: number }).refs] as const);
    for (const [k, r] of refs) assert.equal(r, 0, `proxy ${k} still referenced ${r} times`);
    const open = (await s.metrics.streams.get()).values.reduce((n, v) => n + v.value, 0);
    assert.equal(open, 0, 'mesh_sds_streams back to 0');
  });
});
