// Fetching and following a remote trust domain's bundle over real HTTPS with real certificates
// (SPEC §10): endpoint authentication, acceptance rules, last-good on failure, persistence, timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { FederationFollower, type FederatedDomain, type FederationState } from '../../src/federation/follower.js';
import { federationStateKey } from '../../src/federation/record.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { encodeSpiffeBundle } from '../../src/federation/bundle.js';
import { makeExpiredCa } from '../helpers/openssl.js';
import { X509Certificate } from 'node:crypto';
import { bundleOf, cftd, endpointId, fakeEndpoint, ManualTimers, newCa, newIntermediateCa } from './remote.js';

const TD = 'zone-b.test';

async function setup(opts: { registry?: Registry; minRefreshMs?: number; random?: () => number } = {}) {
  const caB = newCa(TD);
  const ep = await fakeEndpoint(caB, endpointId(TD), bundleOf([caB], 5, 120));
  const state = new MemoryStateStore();
  const timers = new ManualTimers();
  const follower = new FederationFollower({ state, timers, registry: opts.registry, minRefreshMs: opts.minRefreshMs, random: opts.random ?? (() => 1) });
  await follower.setResources([cftd('zone-b', TD, ep.url, caB.trustPem)]);
  const domain = (): FederatedDomain => follower.current.domains.get('zone-b')!;
  return { caB, ep, state, timers, follower, domain, async done() { await follower.close(); await ep.close(); } };
}

test('before any fetch the bootstrap bundle is trusted; a fetch authenticated by it replaces it and is persisted', async () => {
  const s = await setup();
  try {
    assert.equal(s.domain().source, 'bootstrap');
    assert.deepEqual(s.domain().bundle?.caPems, [s.caB.trustPem]);
    await s.follower.refreshNow('zone-b');
    const d = s.domain();
    assert.equal(d.source, 'endpoint');
    assert.equal(d.bundle?.sequence, 5);
    assert.equal(d.bundle?.refreshHintSeconds, 120);
    assert.equal(d.lastError, undefined);
    assert.deepEqual(d.conditions.map((c) => [c.type, c.status, c.reason]), [['Fetched', 'True', 'Fetched'], ['Ready', 'True', 'Trusted']]);
    const stored = JSON.parse((await s.state.get(federationStateKey(TD)))!);
    assert.equal(stored.bundle.sequence, 5);
    assert.equal(stored.resource, 'zone-b');
  } finally {
    await s.done();
  }
});

test('an endpoint presenting another SPIFFE ID is refused and reported; the last good bundle stays', async () => {
  const registry = new Registry();
  const s = await setup({ registry });
  try {
    await s.follower.refreshNow('zone-b');
    s.ep.present(s.caB, `spiffe://${TD}/not-the-endpoint`);
    s.ep.serve(bundleOf([newCa(TD)], 6));
    await s.follower.refreshNow('zone-b');
    const d = s.domain();
    assert.equal(d.lastError?.reason, 'wrong_spiffe_id');
    assert.match(d.lastError!.message, /presented spiffe:\/\/zone-b\.test\/not-the-endpoint, expected spiffe:\/\/zone-b\.test\/mesh-sds\/bundle-endpoint/);
    assert.equal(d.bundle?.sequence, 5, 'still the last good bundle');
    assert.deepEqual(d.bundle?.caPems, [s.caB.trustPem]);
    const fetched = d.conditions.find((c) => c.type === 'Fetched')!;
    assert.equal(fetched.status, 'False');
    assert.equal(fetched.reason, 'WrongEndpointSpiffeId');
    assert.match(fetched.message, /keeping the last good bundle: fetched .* \(sequence 5, 1 CA\)/);
    assert.match(await registry.metrics(), /mesh_sds_federation_refresh_failures_total\{trust_domain="zone-b.test",reason="wrong_spiffe_id"\} 1/);
    assert.equal(JSON.parse((await s.state.get(federationStateKey(TD)))!).lastError.reason, 'wrong_spiffe_id');
  } finally {
    await s.done();
  }
});

test('an endpoint whose certificate does not chain to the last accepted bundle is refused (tls)', async () => {
  const s = await setup();
  try {
    const impostor = newCa(TD);
    s.ep.present(impostor, endpointId(TD));
    s.ep.serve(bundleOf([impostor], 9));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError?.reason, 'tls');
    assert.equal(s.domain().source, 'bootstrap');
    assert.deepEqual(s.domain().bundle?.caPems, [s.caB.trustPem]);
  } finally {
    await s.done();
  }
});

test('bundles for another trust domain, without a CA, malformed, or with a lower sequence are refused', async () => {
  const s = await setup();
  try {
    await s.follower.refreshNow('zone-b');
    const cases: [string, string][] = [
      [bundleOf([newCa('zone-c.test')], 7), 'wrong_trust_domain'],
      [JSON.stringify({ keys: [], spiffe_sequence: 7 }), 'no_ca'],
      ['{"keys": [', 'malformed'],
      [bundleOf([s.caB, newCa(TD)], 4), 'sequence_regressed'],
    ];
    for (const [body, reason] of cases) {
      s.ep.serve(body);
      await s.follower.refreshNow('zone-b');
      assert.equal(s.domain().lastError?.reason, reason, body.slice(0, 60));
      assert.equal(s.domain().bundle?.sequence, 5);
    }
    assert.match(s.domain().lastError!.message, /spiffe_sequence 4 is lower than the last accepted 5/);
    s.ep.serve('nope', 404);
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError?.reason, 'http_status');
  } finally {
    await s.done();
  }
});

test('a CA roll is followed: the new bundle is authenticated by the previous one, then the endpoint moves to the new CA', async () => {
  const s = await setup();
  try {
    await s.follower.refreshNow('zone-b');
    const caB2 = newCa(TD);
    // The endpoint publishes old+new while it still presents an SVID of the old CA …
    s.ep.serve(bundleOf([s.caB, caB2], 6));
    await s.follower.refreshNow('zone-b');
    assert.deepEqual(s.domain().bundle?.caPems, [s.caB.trustPem, caB2.trustPem]);
    // … then presents an SVID of the new CA and drops the old one.
    s.ep.present(caB2, endpointId(TD));
    s.ep.serve(bundleOf([caB2], 7));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError, undefined);
    assert.deepEqual(s.domain().bundle?.caPems, [caB2.trustPem]);
    assert.equal(s.domain().bundle?.sequence, 7);
  } finally {
    await s.done();
  }
});

test('endpoint down: the last good bundle stays, retries back off with jitter up to the refresh interval, success returns to the hint', async () => {
  let r = 1;
  const s = await setup({ random: () => r });
  try {
    await s.follower.refreshNow('zone-b');
    assert.equal(s.timers.delays.at(-1), 120_000, 'refresh at the hint');
    await s.ep.stop();
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) {
      r = i % 2 === 0 ? 1 : 0;
      await s.follower.refreshNow('zone-b');
      delays.push(s.timers.delays.at(-1)!);
      assert.equal(s.domain().lastError?.reason, 'unreachable');
      assert.equal(s.domain().bundle?.sequence, 5);
    }
    // base 1 s doubling, jitter factor 1 (even) or 0.5 (odd), capped at the 120 s interval.
    assert.deepEqual(delays, [1000, 1000, 4000, 4000, 16_000, 16_000, 64_000, 60_000, 120_000]);
    await s.ep.start();
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError, undefined);
    assert.equal(s.timers.delays.at(-1), 120_000);
  } finally {
    await s.done();
  }
});

test('the refresh hint is bounded to 30 s – 1 h (the lower bound can be lowered for tests)', async () => {
  const s = await setup();
  try {
    s.ep.serve(bundleOf([s.caB], 6, 1));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.timers.delays.at(-1), 30_000);
    s.ep.serve(bundleOf([s.caB], 7, 86_400));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.timers.delays.at(-1), 3_600_000);
  } finally {
    await s.done();
  }
  const t = await setup({ minRefreshMs: 500 });
  try {
    t.ep.serve(bundleOf([t.caB], 6, 1));
    await t.follower.refreshNow('zone-b');
    assert.equal(t.timers.delays.at(-1), 1000);
  } finally {
    await t.done();
  }
});

test('a restart starts from the persisted bundle without the remote; a replica adopts the newer bundle another accepted', async () => {
  const s = await setup();
  // A second replica on the same state store, started before anything was fetched.
  const replica = new FederationFollower({ state: s.state, timers: new ManualTimers() });
  try {
    await replica.setResources([cftd('zone-b', TD, s.ep.url, s.caB.trustPem)]);
    assert.equal(replica.current.domains.get('zone-b')!.source, 'bootstrap');
    const caB2 = newCa(TD);
    s.ep.serve(bundleOf([s.caB, caB2], 8));
    await s.follower.refreshNow('zone-b');
    await s.ep.stop();
    await replica.refreshNow('zone-b'); // the remote is down, but the shared state has sequence 8
    assert.equal(replica.current.domains.get('zone-b')!.bundle?.sequence, 8);
    assert.equal(replica.current.domains.get('zone-b')!.lastError?.reason, 'unreachable');

    const restarted = new FederationFollower({ state: s.state, timers: new ManualTimers() });
    await restarted.setResources([cftd('zone-b', TD, s.ep.url, s.caB.trustPem)]);
    const d = restarted.current.domains.get('zone-b')!;
    assert.equal(d.source, 'endpoint');
    assert.equal(d.bundle?.sequence, 8);
    assert.deepEqual(d.bundle?.caPems, [s.caB.trustPem, caB2.trustPem]);
    await restarted.close();
  } finally {
    await replica.close();
    await s.done();
  }
});

test('removing the resource stops following it; a changed spec restarts it', async () => {
  const s = await setup();
  try {
    await s.follower.refreshNow('zone-b');
    await s.follower.setResources([]);
    assert.equal(s.follower.current.domains.size, 0);
    assert.equal(s.timers.count, 0, 'no timer left behind');
    // Same bootstrap bundle and endpoint: the persisted bundle is kept for the trust domain.
    await s.follower.setResources([cftd('zone-b', TD, s.ep.url, s.caB.trustPem)]);
    assert.equal(s.follower.current.domains.get('zone-b')!.source, 'endpoint');
    // Another endpoint is another relationship: it starts from the bootstrap bundle.
    await s.follower.setResources([cftd('zone-b', TD, s.ep.url.replace('/zone-b', '/other'), s.caB.trustPem)]);
    assert.equal(s.follower.current.domains.get('zone-b')!.endpointURL, s.ep.url.replace('/zone-b', '/other'));
    assert.equal(s.follower.current.domains.get('zone-b')!.source, 'bootstrap');
  } finally {
    await s.done();
  }
});

test('a remote whose CA is an intermediate published without its root is authenticated (the bundle CA is the anchor)', async () => {
  const caB = newIntermediateCa(TD);
  assert.notEqual(new X509Certificate(caB.trustPem).issuer, new X509Certificate(caB.trustPem).subject, 'not self-signed');
  const ep = await fakeEndpoint(caB, endpointId(TD), bundleOf([caB], 3));
  const follower = new FederationFollower({ state: new MemoryStateStore(), timers: new ManualTimers() });
  try {
    await follower.setResources([cftd('zone-b', TD, ep.url, caB.trustPem)]);
    await follower.refreshNow('zone-b');
    const d = follower.current.domains.get('zone-b')!;
    assert.equal(d.lastError, undefined, d.lastError?.message);
    assert.equal(d.source, 'endpoint');
    assert.equal(d.bundle?.sequence, 3);
    // Still only that anchor: an endpoint from another intermediate of the same name is refused.
    ep.present(newIntermediateCa(TD), endpointId(TD));
    await follower.refreshNow('zone-b');
    assert.equal(follower.current.domains.get('zone-b')!.lastError?.reason, 'tls');
  } finally {
    await follower.close();
    await ep.close();
  }
});

test('a new bootstrap bundle (the peer was re-installed) or a new endpoint starts a fresh relationship; the stored bundle no longer wins', async () => {
  const s = await setup();
  try {
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().bundle?.sequence, 5);
    // The peer is re-installed: a new CA, its sequence starts again at 1.
    const caNew = newCa(TD);
    s.ep.present(caNew, endpointId(TD));
    s.ep.serve(bundleOf([caNew], 1));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError?.reason, 'tls', 'the old bundle cannot authenticate it');
    // The operator gives its new bundle out of band, even under a new resource name.
    await s.follower.setResources([cftd('zone-b-again', TD, s.ep.url, caNew.trustPem)]);
    const fresh = (): FederatedDomain => s.follower.current.domains.get('zone-b-again')!;
    assert.equal(fresh().source, 'bootstrap');
    assert.deepEqual(fresh().bundle?.caPems, [caNew.trustPem]);
    await s.follower.refreshNow('zone-b-again');
    assert.equal(fresh().lastError, undefined, fresh().lastError?.message);
    assert.equal(fresh().bundle?.sequence, 1);
    // A restart keeps the new relationship (the record now descends from the new bootstrap).
    const restarted = new FederationFollower({ state: s.state, timers: new ManualTimers() });
    await restarted.setResources([cftd('zone-b-again', TD, s.ep.url, caNew.trustPem)]);
    assert.equal(restarted.current.domains.get('zone-b-again')!.bundle?.sequence, 1);
    assert.equal(restarted.current.domains.get('zone-b-again')!.source, 'endpoint');
    await restarted.close();

    // A move to another endpoint whose sequence starts lower is no regression.
    const other = await fakeEndpoint(caNew, endpointId(TD), bundleOf([caNew], 0));
    try {
      await s.follower.setResources([cftd('zone-b-again', TD, other.url, caNew.trustPem)]);
      await s.follower.refreshNow('zone-b-again');
      assert.equal(fresh().lastError, undefined, fresh().lastError?.message);
      assert.equal(fresh().bundle?.sequence, 0);
    } finally {
      await other.close();
    }
  } finally {
    await s.done();
  }
});

test('a record written before it named its bootstrap bundle is adopted, and stamped on the next write', async () => {
  const s = await setup();
  try {
    await s.follower.refreshNow('zone-b');
    const key = federationStateKey(TD);
    const legacy = JSON.parse((await s.state.get(key))!);
    delete legacy.bootstrapDigest;
    await s.state.put(key, JSON.stringify(legacy));
    const restarted = new FederationFollower({ state: s.state, timers: new ManualTimers() });
    await restarted.setResources([cftd('zone-b', TD, s.ep.url, s.caB.trustPem)]);
    assert.equal(restarted.current.domains.get('zone-b')!.source, 'endpoint');
    await restarted.refreshNow('zone-b');
    assert.equal(typeof JSON.parse((await s.state.get(key))!).bootstrapDigest, 'string');
    await restarted.close();
  } finally {
    await s.done();
  }
});

test('a bundle whose every CA is expired is refused (it could never authenticate the endpoint again); the last good bundle stays', async () => {
  const registry = new Registry();
  const s = await setup({ registry });
  try {
    await s.follower.refreshNow('zone-b');
    const expired = (await makeExpiredCa('expired')).certPem;
    s.ep.serve(encodeSpiffeBundle({ cas: [expired], sequence: 6 }));
    await s.follower.refreshNow('zone-b');
    const d = s.domain();
    assert.equal(d.lastError?.reason, 'no_valid_ca');
    assert.match(d.lastError!.message, /no CA of the bundle is valid now/);
    assert.equal(d.bundle?.sequence, 5);
    assert.deepEqual(d.bundle?.caPems, [s.caB.trustPem]);
    assert.equal(d.conditions.find((c) => c.type === 'Fetched')?.reason, 'NoValidCa');
    assert.match(await registry.metrics(), /mesh_sds_federation_refresh_failures_total\{trust_domain="zone-b.test",reason="no_valid_ca"\} 1/);
    assert.equal(JSON.parse((await s.state.get(federationStateKey(TD)))!).bundle.sequence, 5);
    // The endpoint can still be authenticated: the good bundle is accepted afterwards.
    s.ep.serve(bundleOf([s.caB], 7));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError, undefined);
    assert.equal(s.domain().bundle?.sequence, 7);
    // An expired CA beside a valid one is fine (a roll).
    s.ep.serve(encodeSpiffeBundle({ cas: [s.caB.trustPem, expired], sequence: 8 }));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError, undefined);
    assert.equal(s.domain().bundle?.caPems.length, 2);
  } finally {
    await s.done();
  }
});

test('deleting a ClusterFederatedTrustDomain removes its gauges and its failure counts', async () => {
  const registry = new Registry();
  const s = await setup({ registry });
  try {
    await s.follower.refreshNow('zone-b');
    const gauges = async () => (await registry.metrics()).split('\n').filter((l) => /^mesh_sds_federation_(last_success_timestamp_seconds|bundle_sequence)\{/.test(l));
    const failures = async () => (await registry.metrics()).split('\n').filter((l) => /^mesh_sds_federation_refresh_failures_total\{/.test(l));
    assert.equal((await gauges()).length, 2);
    s.ep.present(s.caB, `spiffe://${TD}/not-the-endpoint`);
    await s.follower.refreshNow('zone-b');
    assert.deepEqual(await failures(), [`mesh_sds_federation_refresh_failures_total{trust_domain="${TD}",reason="wrong_spiffe_id"} 1`]);
    await s.follower.setResources([]);
    assert.deepEqual(await gauges(), []);
    assert.deepEqual(await failures(), []);
    // Following it again (a persisted bundle) exports them again.
    await s.follower.setResources([cftd('zone-b', TD, s.ep.url, s.caB.trustPem)]);
    assert.equal((await gauges()).length, 2);
  } finally {
    await s.done();
  }
});

test('a refresh that changes nothing trusted publishes nothing (no new state, so no view rebuild); a failure updates the status only; a changed bundle is published', async () => {
  const s = await setup();
  try {
    const published: FederationState[] = [];
    const sub = s.follower.state$.subscribe((st) => published.push(st));
    published.length = 0; // the current state, replayed on subscribe
    // Bootstrap → the endpoint's bundle (same CA, now with a sequence and from the endpoint): published.
    await s.follower.refreshNow('zone-b');
    assert.equal(published.length, 1);
    assert.equal(published[0]!.domains.get('zone-b')!.source, 'endpoint');
    // The same document again, several times: nothing published.
    for (let i = 0; i < 3; i++) await s.follower.refreshNow('zone-b');
    assert.equal(published.length, 1, 'an unchanged bundle published a new state');
    // A failure: the status and metrics change, what is trusted does not: nothing published …
    await s.ep.stop();
    await s.follower.refreshNow('zone-b');
    assert.equal(published.length, 1, 'a failure that keeps the bundle published a new state');
    // … but the follower's status says so.
    assert.equal(s.domain().lastError?.reason, 'unreachable');
    assert.equal(s.domain().conditions.find((c) => c.type === 'Fetched')?.reason, 'EndpointUnreachable');
    await s.ep.start();
    await s.follower.refreshNow('zone-b');
    assert.equal(published.length, 1);
    assert.equal(s.domain().lastError, undefined);
    // A new CA: published, with it.
    const caB2 = newCa(TD);
    s.ep.serve(bundleOf([s.caB, caB2], 6, 120));
    await s.follower.refreshNow('zone-b');
    assert.equal(published.length, 2);
    assert.deepEqual(published[1]!.domains.get('zone-b')!.bundle?.caPems, [s.caB.trustPem, caB2.trustPem]);
    assert.ok(published[1]!.revision > published[0]!.revision);
    await s.follower.refreshNow('zone-b');
    assert.equal(published.length, 2);
    sub.unsubscribe();
  } finally {
    await s.done();
  }
});

test('a peer that re-keyed without overlap fails as tls with how many CAs are trusted for it, from which bundle, and where its current bundle goes', async () => {
  const s = await setup();
  try {
    const rekeyed = newCa(TD);
    s.ep.present(rekeyed, endpointId(TD));
    s.ep.serve(bundleOf([rekeyed], 9));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError?.reason, 'tls');
    assert.match(s.domain().lastError!.message, /TLS authentication failed: .*\(the endpoint's certificate does not chain to the 1 CA trusted for it, from the bootstrap bundle: if the peer changed its CA without publishing the new one first, put its current bundle in spec\.trustDomainBundle\)/);
    // After a first success the CAs are the last accepted bundle's.
    s.ep.present(s.caB, endpointId(TD));
    s.ep.serve(bundleOf([s.caB, newCa(TD)], 10));
    await s.follower.refreshNow('zone-b');
    assert.equal(s.domain().lastError, undefined);
    s.ep.present(rekeyed, endpointId(TD));
    await s.follower.refreshNow('zone-b');
    assert.match(s.domain().lastError!.message, /does not chain to the 2 CAs trusted for it, from the last accepted bundle \(sequence 10\): if the peer changed its CA/);
    assert.match(s.domain().conditions.find((c) => c.type === 'Fetched')!.message, /spec\.trustDomainBundle/);
  } finally {
    await s.done();
  }
});
