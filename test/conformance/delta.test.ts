// Incremental SDS (DeltaSecrets) conformance over real gRPC on loopback (SPEC §4; go-control-plane#615).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { DeltaDiscoveryResponse } from '../../src/xds/messages.js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { DeltaClient, deltaSecretsOf, spiffeTrustDomains } from './envoy-client.js';
import { ALPHA_TD, KRI_IDENTITY, WEB_SPIFFE, meshTrustYaml } from './world.js';
import { serverFixture } from './fixture.js';
import { PATHS, SECRET_TYPE, deltaRequest, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const f = serverFixture();

function stream(node = 'default.web'): DeltaClient {
  const c = new DeltaClient(f.server.address, { node, client: f.channel });
  f.open.push(c);
  return c;
}

/** Reads responses (ACKing each) until the client holds every name in `names`; returns name → version. */
async function collect(c: DeltaClient, names: string[], timeoutMs = 10000): Promise<{ have: Map<string, string>; responses: DeltaDiscoveryResponse[] }> {
  const have = new Map<string, string>();
  const responses: DeltaDiscoveryResponse[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!names.every((n) => have.has(n))) {
    const r = await c.next(Math.max(1, deadline - Date.now()));
    responses.push(r);
    c.ack(r);
    for (const [n, sec] of deltaSecretsOf(r)) have.set(n, sec.version);
    for (const n of r.removed_resources) have.delete(n);
  }
  return { have, responses };
}



describe('DeltaSecrets', () => {
  it('answers a subscribe with the named secrets (version + nonce), nothing on ACK, nothing on unsubscribe, and answers a resubscribe', async () => {
    const c = stream();
    c.subscribe(['default', 'ROOTCA']);
    const { have, responses } = await collect(c, ['default', 'ROOTCA']);
    for (const r of responses) {
      assert.ok(r.nonce !== '');
      assert.equal(r.type_url, SECRET_TYPE_URL);
      for (const res of r.resources) assert.ok(res.version !== '');
    }
    assert.deepEqual([...have.keys()].sort(), ['ROOTCA', 'default']);
    await c.expectNothing(300);
    c.unsubscribe(['ROOTCA']);
    await c.expectNothing(300);
    c.subscribe(['ROOTCA']);
    const again = await c.next();
    assert.deepEqual([...deltaSecretsOf(again).keys()], ['ROOTCA']);
  });

  it('honours initial_resource_versions: a new stream claiming current versions gets nothing; a stale claim gets the new version', async () => {
    const names = ['default', 'ROOTCA', 'system_trust_bundle'];
    const first = stream();
    first.subscribe(names);
    const { have } = await collect(first, names);

    const resumed = stream();
    resumed.subscribe(names, { initial_resource_versions: Object.fromEntries(have) });
    await resumed.expectNothing(400);

    const stale = stream();
    stale.subscribe(names, { initial_resource_versions: { ...Object.fromEntries(have), system_trust_bundle: 'stale-version' } });
    const r = await stale.next();
    const got = deltaSecretsOf(r);
    assert.deepEqual([...got.keys()], ['system_trust_bundle']);
    assert.equal(got.get('system_trust_bundle')!.version, have.get('system_trust_bundle'));
  });

  it('sends removed_resources when a subscribed secret goes away (MeshTrust deleted), and the secret again when it returns', async () => {
    const name = `spiffe://${ALPHA_TD}`;
    const c = stream();
    c.subscribe([name, 'system_trust_bundle']);
    await collect(c, [name, 'system_trust_bundle']);
    const alphaYaml = meshTrustYaml('zz-alpha', ALPHA_TD, [f.world.cas.alpha.certPem]);
    f.world.remove('zz-alpha.yaml');
    try {
      let removed: DeltaDiscoveryResponse | undefined;
      let bundles = 0;
      const deadline = Date.now() + 4000;
      while (!removed) {
        const r = await c.next(Math.max(1, deadline - Date.now()));
        c.ack(r);
        if (r.removed_resources.includes(name)) removed = r;
        // The aggregate bundle changes in the same update: it must not list alpha any more.
        const bundle = deltaSecretsOf(r).get('system_trust_bundle');
        if (bundle) {
          bundles++;
          assert.ok(!spiffeTrustDomains(bundle).some((t) => t.name === ALPHA_TD));
        }
      }
      assert.ok(bundles > 0, 'the updated system_trust_bundle was pushed');
      assert.ok(!deltaSecretsOf(removed).has(name));
    } finally {
      f.world.write('zz-alpha.yaml', alphaYaml);
    }
    await collect(c, [name], 4000);
  });

  it('a secret unsubscribed before its response was answered, deleted, then subscribed again is said removed: the unanswered response must not leave the client holding it', async () => {
    const name = `spiffe://${ALPHA_TD}`;
    const c = stream();
    c.subscribe([name]);
    const carrying = await c.next();
    assert.ok(deltaSecretsOf(carrying).has(name));
    // Not ACKed: for all the server knows, this response is still on its way to the client.
    c.unsubscribe([name]);
    const watcher = stream();
    watcher.subscribe([name]);
    await collect(watcher, [name]);
    const alphaYaml = meshTrustYaml('zz-alpha', ALPHA_TD, [f.world.cas.alpha.certPem]);
    f.world.remove('zz-alpha.yaml');
    try {
      // The watcher's removal says the server no longer has it.
      for (;;) {
        const r = await watcher.next(4000);
        watcher.ack(r);
        if (r.removed_resources.includes(name)) break;
      }
      c.subscribe([name]);
      // Before: nothing (the name held), and the client kept the secret that response carried.
      const answer = await c.next(4000);
      assert.deepEqual(answer.removed_resources, [name]);
      assert.equal(answer.resources.length, 0);
      c.ack(carrying);
      c.ack(answer);
    } finally {
      f.world.write('zz-alpha.yaml', alphaYaml);
    }
    await collect(c, [name], 4000);
  });

  it('counts a NACK and does not resend the rejected version; a later change is still pushed', async () => {
    const c = stream('default.pay');
    c.subscribe(['default']);
    const { have } = await collect(c, ['default']);
    f.server.svids.rotate('default.pay');
    const pushed = await c.next();
    assert.notEqual(deltaSecretsOf(pushed).get('default')!.version, have.get('default'));
    const before = await f.nackCount();
    c.nack(pushed, 'rejected by test');
    await c.expectNothing(500);
    assert.equal(await f.nackCount(), before + 1);
    f.server.svids.rotate('default.pay');
    const next = await c.next();
    assert.ok(deltaSecretsOf(next).has('default'));
  });

  it('gives a wildcard stream (no names on the first request) every secret the proxy may have', async () => {
    const c = stream();
    c.subscribe([]);
    const { have } = await collect(c, ['default', WEB_SPIFFE, KRI_IDENTITY, 'ROOTCA', 'system_trust_bundle', 'ALL', `spiffe://${ALPHA_TD}`]);
    assert.ok(have.size >= 10);
  });

  it('fails the stream with INVALID_ARGUMENT naming an unknown-shape name', async () => {
    const c = stream();
    c.subscribe(['default', 'what-is-this']);
    const end = await c.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /what-is-this/);
    assert.equal(c.received.length, 0);
  });

  it('fails a stream subscribing to the empty-string name with INVALID_ARGUMENT: [""] is a name that can never exist, not a wildcard', async () => {
    for (const names of [[''], ['default', '']]) {
      const c = stream();
      c.subscribe(names);
      // Bounded: before the fix the stream was served and stayed open.
      const end = await Promise.race([c.ended, new Promise<{ code: number; details: string }>((r) => setTimeout(() => r({ code: -1, details: 'still open after 3 s' }), 3000))]);
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(names)}: ${end.details}`);
      assert.match(end.details, /unknown resource name ""/);
      assert.equal(c.received.length, 0, JSON.stringify(names));
    }
  });

  it('fails a stream asking for a 70,000-character invalid name with INVALID_ARGUMENT naming its start (the status is cut to fit a header)', async () => {
    const c = stream();
    c.subscribe([`what-is-this-${'x'.repeat(70_000)}`]);
    const end = await c.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT, end.details);
    assert.match(end.details, /^unknown resource name "what-is-this-x+"\.\.\. \(\d+ more characters\)/);
    assert.ok(end.details.length < 4096, `${end.details.length} characters`);
  });

  it('fails a stream subscribing to a well-formed KRI longer than any can be (1 MiB) with INVALID_ARGUMENT, instead of holding it for good', async () => {
    const c = stream();
    c.subscribe(['default']);
    c.ack(await c.next());
    // Its mesh and zone are the proxy's: only its length says it can never exist.
    c.subscribe([`kri_mid_default_default_kuma-system_${'a'.repeat(1000 * 1000)}_`]);
    const end = await Promise.race([c.ended, new Promise<{ code: number; details: string }>((r) => setTimeout(() => r({ code: -1, details: 'still open after 5 s' }), 5000))]);
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT, end.details);
    assert.match(end.details, /^unknown resource name "kri_mid_default_default_kuma-system_a+"\.\.\. \(\d+ more characters\)/);
  });

  for (const api of ['sds', 'ads'] as const) {
    it(`${api}: the name limit bounds the whole subscription, not only each request (one stream cannot grow past it request by request)`, async () => {
      const c = new DeltaClient(f.server.address, { node: 'default.web', client: api === 'ads' ? undefined : f.channel, api });
      f.open.push(c);
      c.subscribe(['default']);
      c.ack(await c.next());
      // Each request is within the per-request limit (1000); the third takes the stream to 2,101.
      for (let round = 0; round < 3; round++) c.subscribe(Array.from({ length: 700 }, (_, i) => `spiffe://td-${round}-${i}.example`));
      const end = await Promise.race([c.ended, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the stream was not ended')), 10_000).unref())]);
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
      assert.match(end.details, /too many resource names subscribed on one stream \(limit 1000\)/);
    });
  }

  it('initial_resource_versions count toward the per-request name limit: a reconnect naming 1,001 resources is refused, names unread', async () => {
    const c = new DeltaClient(f.server.address, { node: 'default.web', client: f.channel });
    f.open.push(c);
    const initial = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`spiffe://td-${i}.example`, 'v1']));
    c.subscribe(['*'], { initial_resource_versions: initial });
    const end = await Promise.race([c.ended, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the stream was not ended')), 10_000).unref())]);
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /too many resource names in one request \(limit 1000\)/);
    assert.equal(c.received.length, 0, 'no removed_resources list of 1,001 names was sent back');
  });

  it('a client that does not read while it re-subscribes is not answered without bound: its requests wait, and once it reads it gets its answers', async () => {
    const session = rawConnect(f.server.address);
    try {
      const call = rawCall(session, PATHS.DeltaSecrets);
      call.stream.pause();
      const names = ['default', 'ROOTCA', 'system_trust_bundle', WEB_SPIFFE];
      call.stream.write(grpcFrame(deltaRequest({ node: 'default.raw-reader', typeUrl: SECRET_TYPE, names })));
      // Each re-subscribe makes the server resend all four secrets.
      const again = grpcFrame(deltaRequest({ typeUrl: SECRET_TYPE, names }));
      const total = 20_000;
      let written = 0;
      while (written < total) {
        written++;
        if (!call.stream.write(again)) {
          const drained = await new Promise<boolean>((resolve) => {
            const t = setTimeout(() => resolve(false), 1500);
            call.stream.once('drain', () => (clearTimeout(t), resolve(true)));
          });
          if (!drained) break;
        }
      }
      const pushes = [...f.server.registry.streams.values()].find((s) => s.info.proxy === 'default.raw-reader')?.info.pushes ?? 0;
      assert.ok(written < total, 'the client is held back');
      assert.ok(pushes < total / 4, `${pushes} responses written to a client that reads none`);
      call.stream.resume();
      assert.ok((await call.waitForMessages(pushes + 1, 20_000)) > pushes, 'answered again once it reads');
    } finally {
      session.destroy();
    }
  });

  it('never sends a secret it was not asked for', async () => {
    const names = ['default', 'ROOTCA', WEB_SPIFFE];
    const c = stream();
    c.subscribe(names);
    await collect(c, names);
    f.server.svids.rotate('default.web');
    const r = await c.next();
    c.ack(r);
    for (const res of c.received) for (const n of deltaSecretsOf(res).keys()) assert.ok(names.includes(n), `unrequested ${n}`);
  });
});
