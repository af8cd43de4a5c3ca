// A damaged `federation/<td>` record (a truncated write, a hand edit) in a real directory state:
// read around the damage, reported naming its key, and never the end of federation for the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { FederationFollower, loadFederationState, type FederationState } from '../../src/federation/follower.js';
import { federationStateKey } from '../../src/federation/record.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import { bundleOf, cftd, endpointId, fakeEndpoint, ManualTimers, newCa, unreadableTimesCa } from './remote.js';

const A = 'aaa.test';
const Z = 'zzz.test';

async function twoPeers() {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-fedrec-'));
  const state = await FileStateStore.open(dir);
  const caA = newCa(A);
  const caZ = newCa(Z);
  const epA = await fakeEndpoint(caA, endpointId(A), bundleOf([caA], 5, 120));
  const epZ = await fakeEndpoint(caZ, endpointId(Z), bundleOf([caZ], 7, 120));
  const resources = [cftd('a-peer', A, epA.url, caA.trustPem), cftd('z-peer', Z, epZ.url, caZ.trustPem)];
  // Both fetched once, so both have a stored record with a bundle from the endpoint.
  const first = new FederationFollower({ state, timers: new ManualTimers() });
  await first.setResources(resources);
  await first.refreshNow('a-peer');
  await first.refreshNow('z-peer');
  await first.close();
  const good = JSON.parse((await state.get(federationStateKey(A)))!) as Record<string, unknown>;
  return {
    state,
    caA,
    resources,
    good,
    async done() {
      await epA.close();
      await epZ.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function logger() {
  const warnings: { o: Record<string, unknown>; m: string }[] = [];
  return { warnings, log: { info: () => undefined, warn: (o: object, m: string) => warnings.push({ o: o as Record<string, unknown>, m }) } };
}

test('a damaged field of one stored federation record is dropped and reported naming its state key; every trust domain is still published and refreshed', async () => {
  const p = await twoPeers();
  try {
    const bundle = p.good.bundle as Record<string, unknown>;
    // What each damage leaves of aaa.test: its bundle from the endpoint, or (bundle unusable) the bootstrap one.
    const cases: [string, string, 'endpoint' | 'bootstrap'][] = [
      ['fetchedAt "yesterday"', JSON.stringify({ ...p.good, fetchedAt: 'yesterday' }), 'endpoint'],
      ['lastAttemptAt a number', JSON.stringify({ ...p.good, lastAttemptAt: 12 }), 'endpoint'],
      ['lastError.at garbage', JSON.stringify({ ...p.good, lastError: { reason: 'tls', message: 'm', at: 'garbage' } }), 'endpoint'],
      ['lastError.reason unknown', JSON.stringify({ ...p.good, lastError: { reason: 'gremlins', message: 'm', at: new Date().toISOString() } }), 'endpoint'],
      ['bundle.sequence "x"', JSON.stringify({ ...p.good, bundle: { ...bundle, sequence: 'x' } }), 'endpoint'],
      ['bundle.sequence -1', JSON.stringify({ ...p.good, bundle: { ...bundle, sequence: -1 } }), 'endpoint'],
      ['bundle.caPems a string', JSON.stringify({ ...p.good, bundle: { ...bundle, caPems: 'abc' } }), 'bootstrap'],
      ['bundle.caPems [7]', JSON.stringify({ ...p.good, bundle: { ...bundle, caPems: [7] } }), 'bootstrap'],
      ['endpointURL a number', JSON.stringify({ ...p.good, endpointURL: 5 }), 'bootstrap'],
      ['bootstrapDigest a number', JSON.stringify({ ...p.good, bootstrapDigest: 5 }), 'bootstrap'],
      ['truncated JSON', JSON.stringify(p.good).slice(0, 100), 'bootstrap'],
      ['null', 'null', 'bootstrap'],
    ];
    for (const [what, text, source] of cases) {
      await p.state.put(federationStateKey(A), text);
      const { warnings, log } = logger();
      const registry = new Registry(); // metrics too: a sequence that is not a number threw from Gauge.set
      const follower = new FederationFollower({ state: p.state, timers: new ManualTimers(), log, registry });
      const published: FederationState[] = [];
      const sub = follower.state$.subscribe((s) => published.push(s));
      try {
        await follower.setResources(p.resources);
        const last = published.at(-1)!;
        assert.deepEqual([...last.domains.keys()].sort(), ['a-peer', 'z-peer'], `${what}: both trust domains are published`);
        assert.equal(last.domains.get('z-peer')!.source, 'endpoint', `${what}: the undamaged domain keeps its bundle`);
        assert.equal(last.domains.get('a-peer')!.source, source, `${what}: what is intact of the damaged record is used`);
        const damage = warnings.filter((w) => w.o.stateKey === federationStateKey(A));
        assert.equal(damage.length, 1, `${what}: one warning naming the state key, got ${JSON.stringify(warnings)}`);
        // Both are refreshed, and the refresh writes the record again, undamaged (and warns no more).
        await follower.refreshNow('a-peer');
        await follower.refreshNow('z-peer');
        assert.equal(follower.current.domains.get('a-peer')!.source, 'endpoint', `${what}: refreshed`);
        assert.equal(follower.current.domains.get('a-peer')!.bundle?.sequence, 5);
        assert.equal(follower.current.domains.get('a-peer')!.lastError, undefined);
        const rewritten = JSON.parse((await p.state.get(federationStateKey(A)))!) as { fetchedAt: string; bundle: { sequence: number } };
        assert.ok(!Number.isNaN(Date.parse(rewritten.fetchedAt)));
        assert.equal(rewritten.bundle.sequence, 5);
        assert.equal(warnings.filter((w) => w.o.stateKey === federationStateKey(A)).length, 1, `${what}: warned once`);
      } finally {
        sub.unsubscribe();
        await follower.close();
      }
    }
  } finally {
    await p.done();
  }
});

test('get and inspect read a damaged stored federation record without failing: both trust domains are shown and the damage is reported', async () => {
  const p = await twoPeers();
  try {
    for (const [what, record] of [
      ['fetchedAt "yesterday"', { ...p.good, fetchedAt: 'yesterday' }],
      ['lastError.at garbage', { ...p.good, lastError: { reason: 'tls', message: 'm', at: 'garbage' } }],
    ] as const) {
      await p.state.put(federationStateKey(A), JSON.stringify(record));
      const damaged: string[] = [];
      const fed = await loadFederationState(p.state, p.resources, (key, problems) => damaged.push(`${key}: ${problems.join('; ')}`));
      assert.deepEqual([...fed.domains.keys()].sort(), ['a-peer', 'z-peer'], what);
      assert.equal(fed.domains.get('a-peer')!.source, 'endpoint', what);
      assert.equal(damaged.length, 1, what);
      assert.match(damaged[0]!, /^federation\/aaa\.test: /, what);
    }
  } finally {
    await p.done();
  }
});

test('a stored bundle whose CA is not a parseable CA certificate falls back to the bootstrap bundle, reported naming the state key, and the next refresh recovers', async () => {
  const p = await twoPeers();
  try {
    const bundle = p.good.bundle as { caPems: string[] };
    const pem = bundle.caPems[0]!;
    const leaf = issueSvidSync(p.caA, 'spiffe://aaa.test/workload', 3600_000).certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0];
    const cases: [string, string[]][] = [
      ['garbage', ['garbage']],
      ['a truncated PEM', [`${pem.slice(0, 300)}\n-----END CERTIFICATE-----\n`]],
      ['a good CA and a garbage one', [pem, 'garbage']],
      ['a certificate that is not a CA', [leaf]],
    ];
    for (const [what, caPems] of cases) {
      await p.state.put(federationStateKey(A), JSON.stringify({ ...p.good, bundle: { ...bundle, caPems } }));
      const { warnings, log } = logger();
      const follower = new FederationFollower({ state: p.state, timers: new ManualTimers(), log });
      try {
        await follower.setResources(p.resources);
        const d = follower.current.domains.get('a-peer')!;
        assert.equal(d.source, 'bootstrap', `${what}: the bootstrap bundle is trusted, not the damaged one`);
        assert.deepEqual(d.bundle?.caPems, [p.caA.trustPem], what);
        assert.equal(d.conditions.find((c) => c.type === 'Ready')?.reason, 'BootstrapBundle', `${what}: not reported as Trusted`);
        const damage = warnings.filter((w) => w.o.stateKey === federationStateKey(A));
        assert.equal(damage.length, 1, what);
        assert.match(String(damage[0]!.o.problems), /bundle: caPems\[\d\]/, what);
        // The bootstrap bundle authenticates the endpoint: the refresh succeeds (it failed as 'tls' for good).
        await follower.refreshNow('a-peer');
        const after = follower.current.domains.get('a-peer')!;
        assert.equal(after.lastError, undefined, `${what}: ${after.lastError?.message}`);
        assert.equal(after.source, 'endpoint');
        assert.equal(after.bundle?.sequence, 5);
      } finally {
        await follower.close();
      }
    }
  } finally {
    await p.done();
  }
});

test('a stored bundle with a CA whose validity cannot be read (accepted before such bundles were refused) falls back to the bootstrap bundle and is reported naming the CA', async () => {
  const p = await twoPeers();
  try {
    const bundle = p.good.bundle as { caPems: string[] };
    await p.state.put(federationStateKey(A), JSON.stringify({ ...p.good, bundle: { ...bundle, caPems: [bundle.caPems[0]!, await unreadableTimesCa('aaa-unreadable')] } }));
    const { warnings, log } = logger();
    const follower = new FederationFollower({ state: p.state, timers: new ManualTimers(), log });
    try {
      await follower.setResources(p.resources);
      const d = follower.current.domains.get('a-peer')!;
      assert.equal(d.source, 'bootstrap');
      assert.deepEqual(d.bundle?.caPems, [p.caA.trustPem]);
      const damage = warnings.filter((w) => w.o.stateKey === federationStateKey(A));
      assert.equal(damage.length, 1);
      assert.match(String(damage[0]!.o.problems), /bundle: caPems\[1\] has a validity that cannot be read/);
    } finally {
      await follower.close();
    }
  } finally {
    await p.done();
  }
});
