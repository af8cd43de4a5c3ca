import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { UNDECIDED_REASON, isUndecided, type Issuer, type ProxyIdentity } from '../../src/identity/svids.js';
import { dataplane, meshIdentity } from '../helpers/resources.js';
import { makeIntermediateCa, makeRootCa, tempDir } from '../pki/helpers.js';
import { setup } from './svid-harness.js';

const web = { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web', app: 'web' };

const issued = (p: ProxyIdentity) => p.state === 'issued';

test('an attached proxy gets an SVID with the SPIFFE ID rendered from its Dataplane labels', async () => {
  const h = await setup();
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const p = await h.until(key, issued);
    assert.equal(p.state === 'issued' && p.spiffeId, 'spiffe://default.default.mesh.local/ns/shop/sa/web');
    assert.equal(p.state === 'issued' && p.svid.spiffeId, p.state === 'issued' && p.spiffeId);
  } finally {
    await h.close();
  }
});

for (const [random, fraction] of [
  [0, 0.7],
  [0.5, 0.8],
  [1 - 1e-9, 0.9],
] as const) {
  test(`rotation is at ${fraction * 100} % of the lifetime from issuance when the jitter source gives ${random} (the 70–90 % window, pinned clock)`, async () => {
    const issuedAt = new Date('2030-01-01T00:00:00Z');
    const h = await setup({ random: () => random, now: () => issuedAt });
    try {
      await h.push(meshIdentity('identity', { expiry: '10m', expiryMs: 600_000 }), dataplane('web-1', web));
      const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
      const p = await h.until(key, issued);
      assert.ok(p.state === 'issued');
      assert.equal(p.svid.notAfter.getTime(), issuedAt.getTime() + 600_000, 'NotAfter counts from the injected clock');
      assert.ok(Math.abs(p.rotateAt.getTime() - (issuedAt.getTime() + 600_000 * fraction)) <= 1, `rotateAt ${p.rotateAt.toISOString()}`);
    } finally {
      await h.close();
    }
  });
}

test('a short-lived SVID is reissued by itself before it expires, even at the late end of the jitter window', async () => {
  const h = await setup({ random: () => 1 - 1e-9 });
  try {
    // 6 s (NotAfter in whole seconds: 5-6 s from issuance): 90 % leaves at least 0.5 s before
    // expiry. With 2 s the margin was 0.1 s, and a loaded machine's timers missed it.
    await h.push(meshIdentity('identity', { expiry: '6s', expiryMs: 6000 }), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    const second = await h.until(key, (p) => issued(p) && p !== first, 10_000);
    const reissuedAt = Date.now();
    assert.ok(first.state === 'issued' && second.state === 'issued');
    assert.ok(reissuedAt < first.svid.notAfter.getTime(), `reissued ${reissuedAt - first.svid.notAfter.getTime()} ms relative to NotAfter`);
    assert.notEqual(second.svid.serialHex, first.svid.serialHex);
    assert.ok(second.svid.notAfter > first.svid.notAfter);
  } finally {
    await h.close();
  }
});

test('a leaf whose lifetime rounds to nothing is re-issued at most once a second, not in a loop', async () => {
  const h = await setup();
  try {
    // What validation now refuses (expiry under 5s), as a store that skipped it could still hold.
    await h.push(meshIdentity('identity', { expiry: '1ms', expiryMs: 1 }), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const serials = new Set<string>();
    const start = Date.now();
    while (Date.now() - start < 2500) {
      const p = h.svids.get(key);
      if (p && issued(p) && p.state === 'issued') serials.add(p.svid.serialHex);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(serials.size >= 2 && serials.size <= 4, `${serials.size} leaves in 2.5 s`);
  } finally {
    await h.close();
  }
});

test('a wall clock that jumps forward past a leaf\'s rotation time (a suspended VM, an NTP step) reissues it at the next clock check, not when the timer set before the jump fires', async () => {
  let clock = Date.now();
  const h = await setup({ now: () => new Date(clock), clockCheckMs: 100 });
  try {
    await h.push(meshIdentity('identity', { expiry: '1h', expiryMs: 3600_000 }), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    assert.ok(first.state === 'issued');
    // Monotonic timers did not count the jump: the one set at issuance would fire 42–54 min from now.
    clock = first.svid.notAfter.getTime() + 60_000;
    const second = await h.until(key, (p) => issued(p) && p !== first);
    assert.ok(second.state === 'issued');
    assert.ok(second.svid.notAfter.getTime() > clock, 'the new leaf is valid at the clock after the jump');
  } finally {
    await h.close();
  }
});

test('a wall clock stepped back past a leaf\'s NotBefore (an NTP correction of a fast clock) reissues it: peers would refuse it as not valid yet', async () => {
  let clock = Date.now();
  const h = await setup({ now: () => new Date(clock), clockCheckMs: 100 });
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    assert.ok(first.state === 'issued');
    clock = first.svid.notBefore.getTime() - 60_000;
    const second = await h.until(key, (p) => issued(p) && p !== first);
    assert.ok(second.state === 'issued');
    assert.ok(second.svid.notBefore.getTime() <= clock, `NotBefore ${second.svid.notBefore.toISOString()} is valid at ${new Date(clock).toISOString()}`);
  } finally {
    await h.close();
  }
});

test('a 90-day leaf, whose rotation is further off than setTimeout can wait (2^31-1 ms, about 24.8 days), is issued once: no TimeoutOverflowWarning and no reissue loop', async () => {
  let issues = 0;
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  const h = await setup({ issuer: (real) => ({ issue: (...args: Parameters<Issuer['issue']>) => (issues++, real.issue(...args)) }) });
  try {
    await h.push(meshIdentity('identity', { expiry: '2160h', expiryMs: 90 * 24 * 3600_000 }), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const p = await h.until(key, issued);
    assert.ok(p.state === 'issued' && p.rotateAt.getTime() - Date.now() > 2 ** 31);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(issues, 1);
    assert.equal(h.svids.get(key), p);
    assert.deepEqual(warnings.filter((w) => /TimeoutOverflow/.test(w)), []);
  } finally {
    process.off('warning', onWarning);
    await h.close();
  }
});

test('a label change that changes the SPIFFE ID reissues; a change that does not keeps the SVID', async () => {
  const h = await setup();
  try {
    const mi = meshIdentity('identity');
    await h.push(mi, dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    await h.push(mi, dataplane('web-1', { ...web, unrelated: 'x' }));
    assert.equal(h.svids.get(key)!.state === 'issued' && (h.svids.get(key) as { svid: unknown }).svid, first.state === 'issued' && first.svid);
    await h.push(mi, dataplane('web-1', { ...web, 'k8s.kuma.io/service-account': 'admin' }));
    const moved = await h.until(key, (p) => p.state === 'issued' && p.spiffeId.endsWith('/sa/admin'));
    assert.ok(moved.state === 'issued');
  } finally {
    await h.close();
  }
});

test('a more specific MeshIdentity moves the proxy to its trust domain', async () => {
  const h = await setup();
  try {
    const broad = meshIdentity('broad');
    await h.push(broad, dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    await h.until(key, issued);
    await h.push(broad, meshIdentity('web-only', { matchLabels: { app: 'web' }, trustDomain: 'web.example' }), dataplane('web-1', web));
    const p = await h.until(key, (x) => x.state === 'issued' && x.trustDomain === 'web.example');
    assert.ok(p.state === 'issued' && p.identity.identity.name === 'web-only');
  } finally {
    await h.close();
  }
});

test('a winning identity that is not ready does not fall back to a lower-precedence one', async () => {
  const h = await setup();
  try {
    const broad = meshIdentity('broad');
    const broken = meshIdentity('specific', { matchLabels: { app: 'web' } });
    if (broken.spec.provider.type === 'Bundled') broken.spec.provider.bundled.insecureAllowSelfSigned = false;
    await h.push(broad, broken, dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const p = await h.until(key, (x) => x.state === 'pending');
    assert.match((p as { reason: string }).reason, /MeshIdentity "specific" is not ready/);
  } finally {
    await h.close();
  }
});

test('a new winning identity that is not ready leaves a served proxy its SVID (and rotation) until it is ready; a new proxy waits for it', async () => {
  const h = await setup();
  try {
    const broad = meshIdentity('broad');
    await h.push(broad, dataplane('web-1', web), dataplane('web-2', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    const broken = meshIdentity('specific', { matchLabels: { app: 'web' }, trustDomain: 'specific.example' });
    if (broken.spec.provider.type === 'Bundled') broken.spec.provider.bundled.insecureAllowSelfSigned = false;
    await h.push(broad, broken, dataplane('web-1', web), dataplane('web-2', web));
    const kept = h.svids.get(key)!;
    assert.equal(kept.state, 'issued');
    assert.equal(kept.state === 'issued' && kept.svid, first.state === 'issued' && first.svid, 'the same SVID, not re-issued');
    assert.equal(kept.state === 'issued' && kept.identity.identity.name, 'broad');
    const fresh = h.svids.attach({ mesh: 'default', name: 'web-2', source: 'none' });
    const waiting = await h.until(fresh, (x) => x.state === 'pending');
    assert.match((waiting as { reason: string }).reason, /MeshIdentity "specific" is not ready/);
    // Once the winner can issue, the served proxy moves to it.
    const fixed = meshIdentity('specific', { matchLabels: { app: 'web' }, trustDomain: 'specific.example' });
    await h.push(broad, fixed, dataplane('web-1', web), dataplane('web-2', web));
    const moved = await h.until(key, (x) => x.state === 'issued' && x.spiffeId.startsWith('spiffe://specific.example/'));
    assert.equal(moved.state === 'issued' && moved.identity.identity.name, 'specific');
  } finally {
    await h.close();
  }
});

test('a proxy without a Dataplane, or that no identity matches, stays pending with a reason', async () => {
  const h = await setup();
  try {
    await h.push(meshIdentity('only-api', { matchLabels: { app: 'api' } }), dataplane('web-1', web));
    const ghost = h.svids.attach({ mesh: 'default', name: 'ghost', source: 'none' });
    assert.match((h.svids.get(ghost) as { reason: string }).reason, /no Dataplane "ghost"/);
    const k = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    assert.match((h.svids.get(k) as { reason: string }).reason, /no MeshIdentity matches/);
  } finally {
    await h.close();
  }
});

test('token labels and workload feed the templates when there is no Dataplane resource', async () => {
  const h = await setup();
  try {
    await h.push(meshIdentity('wl', { path: '/workload/{{ .Workload }}' }));
    const key = h.svids.attach({ mesh: 'default', name: 'tok-1', source: 'token', workload: 'billing', labels: { app: 'b' } });
    const p = await h.until(key, issued);
    assert.equal(p.state === 'issued' && p.spiffeId, 'spiffe://default.default.mesh.local/workload/billing');
    const missing = h.svids.attach({ mesh: 'default', name: 'tok-2', source: 'token' });
    const r = await h.until(missing, (x) => x.state === 'rejected');
    assert.match((r as { reason: string }).reason, /workload not found/);
  } finally {
    await h.close();
  }
});

test('a Dataplane change re-evaluates only the proxy of that Dataplane', async () => {
  const h = await setup();
  try {
    const id = meshIdentity('identity');
    const dp2 = dataplane('web-2', { ...web, 'k8s.kuma.io/service-account': 'web-2' });
    await h.push(id, dataplane('web-1', web), dp2);
    const k1 = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const k2 = h.svids.attach({ mesh: 'default', name: 'web-2', source: 'none' });
    await h.until(k1, issued);
    const before2 = await h.until(k2, issued);
    const changed: string[] = [];
    const sub = h.svids.changes$.subscribe((k) => changed.push(k));
    await h.push(id, dataplane('web-1', { ...web, 'k8s.kuma.io/service-account': 'web-1b' }), dp2);
    const after1 = await h.until(k1, (p) => p.state === 'issued' && p.spiffeId.endsWith('/sa/web-1b'));
    sub.unsubscribe();
    assert.ok(after1.state === 'issued');
    assert.deepEqual(changed, [k1]);
    assert.equal(h.svids.get(k2), before2);
  } finally {
    await h.close();
  }
});

/** A gateway's claim-set principal authenticated by token `jti`, valid for an hour. */
const far = Date.now() + 3600_000;
const gateway = (jti: string) => ({ mesh: 'default', name: 'gw', source: 'token' as const, workload: 'a', credential: { jti, expiresAtMs: far } });

/** Svids with a long detach grace and one identity for workload claims. */
async function gatewaySetup() {
  const h = await setup({ detachGraceMs: 60_000 });
  await h.push(meshIdentity('wl', { path: '/workload/{{ .Workload }}' }));
  return h;
}

test('claim sets: a dead token drops its proxy at once, and a late detach of it never takes a reference from a newer proxy of that key', async () => {
  const h = await gatewaySetup();
  try {
    const key = h.svids.attach(gateway('t1'));
    assert.match(key, /^default\.gw#/);
    await h.until(key, issued);
    // A dead token drops the proxy even though a stream (about to be denied) still holds it.
    assert.deepEqual(h.svids.forgetCredentials((jti) => jti === 't1'), [key]);
    assert.equal(h.svids.get(key), undefined);
    assert.equal(h.svids.rotate(key), false, 'a forced rotation cannot bring it back');
    const again = h.svids.attach(gateway('t2'));
    assert.equal(again, key);
    h.svids.detach(key, 't1'); // the old stream goes away late
    assert.ok(h.svids.get(key), 'the late detach of the forgotten token did not release the new attachment');
    // Two tokens on one claim set: revoking one keeps the proxy for the other, with a new SVID
    // (the revoked holder has the key of the one it was served); one that merely expires does not.
    h.svids.attach(gateway('t3'));
    const serialOf = () => { const id = h.svids.get(key); return id?.state === 'issued' ? id.svid.serialHex : undefined; };
    await h.until(key, issued);
    const before = serialOf();
    assert.ok(before);
    assert.deepEqual(h.svids.forgetCredentials((jti) => jti === 't2'), []);
    assert.ok(h.svids.get(key));
    await h.until(key, (id) => id?.state === 'issued' && id.svid.serialHex !== before);
    h.svids.attach(gateway('t4'));
    const afterRevoke = serialOf();
    assert.deepEqual(h.svids.forgetCredentials((jti) => (jti === 't3' ? 'expired' : false)), []);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(serialOf(), afterRevoke, 'an expired token is no reason to reissue');
    // Expiry counts as dead too (the caller decides by expiresAtMs).
    assert.deepEqual(h.svids.forgetCredentials((_jti, exp) => exp <= far), [key]);
  } finally {
    await h.close();
  }
});

test('a proxy that reconnects with a fresh token each time (one stream always open, or none between reconnects) keeps only the token in use (it kept every one until it expired)', async () => {
  const h = await gatewaySetup();
  try {
    const key = h.svids.attach(gateway('t0'));
    await h.until(key, issued);
    for (let i = 1; i <= 50; i++) {
      h.svids.attach(gateway(`t${i}`));
      h.svids.detach(key, `t${i - 1}`);
    }
    const entry = [...h.svids.entries()].find(([k]) => k === key)![1];
    assert.deepEqual([...entry.credentials!.keys()], ['t50']);
    // Every stream gone before each reconnect (the grace period keeps the proxy): the same.
    for (let i = 51; i <= 60; i++) {
      h.svids.detach(key, `t${i - 1}`);
      h.svids.attach(gateway(`t${i}`));
    }
    assert.deepEqual([...entry.credentials!.keys()], ['t60']);
    // The token still in use keeps the proxy; its death drops it.
    assert.deepEqual(h.svids.forgetCredentials((jti) => jti === 't59'), []);
    assert.deepEqual(h.svids.forgetCredentials((jti) => jti === 't60'), [key]);
  } finally {
    await h.close();
  }
});

test('with a Dataplane the identity comes from its labels alone, and a proxy whose claims no longer match gets none', async () => {
  const h = await setup();
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    const plain = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'token' });
    const p = await h.until(plain, issued);
    assert.equal(p.state === 'issued' && p.spiffeId, 'spiffe://default.default.mesh.local/ns/shop/sa/web');
    const claimed = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'token', labels: { app: 'web' } });
    assert.notEqual(claimed, plain);
    const c = await h.until(claimed, issued);
    assert.equal(c.state === 'issued' && c.spiffeId, 'spiffe://default.default.mesh.local/ns/shop/sa/web');
    // The Dataplane changes under an open stream: its claims no longer hold.
    await h.push(meshIdentity('identity'), dataplane('web-1', { ...web, app: 'other' }));
    const r = await h.until(claimed, (x) => x.state === 'pending');
    assert.match((r as { reason: string }).reason, /label "app"="web" does not match/);
    assert.equal(h.svids.get(plain)!.state, 'issued');
  } finally {
    await h.close();
  }
});

test('--auth none: a short node id whose only Kubernetes Dataplane is replaced by another namespace\'s of that name gets the new one\'s identity, and says so', async () => {
  const warned: { o: object; m: string }[] = [];
  const h = await setup({ log: { warn: (o, m) => warned.push({ o, m }), info: () => undefined } });
  try {
    const id = meshIdentity('identity');
    const inNs = (ns: string) => ({ ...dataplane('db-0', { ...web, 'k8s.kuma.io/namespace': ns }), namespace: ns });
    await h.push(id, inNs('team-a'));
    const key = h.svids.attach({ mesh: 'default', name: 'db-0', source: 'none' });
    await h.until(key, (p) => p.state === 'issued' && p.spiffeId.includes('/ns/team-a/'));
    assert.equal(warned.length, 0);
    await h.push(id, inNs('team-b'));
    await h.until(key, (p) => p.state === 'issued' && p.spiffeId.includes('/ns/team-b/'));
    assert.deepEqual(warned.map((w) => [w.m, w.o]), [['node id now names another Dataplane', { proxy: key, from: 'Dataplane/default/team-a/db-0', to: 'Dataplane/default/team-b/db-0' }]]);
  } finally {
    await h.close();
  }
});

test('a token proxy is not served through a short node id: a namespaced Dataplane that appears under it, or takes its name over from another namespace, denies it naming the full name; a token naming it in full is served', async () => {
  const h = await setup();
  try {
    const id = meshIdentity('identity');
    const inNs = (ns: string) => ({ ...dataplane('db-0', { ...web, 'k8s.kuma.io/namespace': ns, 'k8s.kuma.io/service-account': `db-${ns}` }), namespace: ns });
    await h.push(id);
    // No Dataplane of that name yet: a gateway without claims (no SPIFFE ID renders from none).
    const short = h.svids.attach({ mesh: 'default', name: 'db-0', source: 'token' });
    await h.until(short, (p) => p.state === 'rejected');
    // team-a's db-0 appears: the short name reaches it only through the alias (before, it was issued team-a's identity).
    await h.push(id, inNs('team-a'));
    const denied = await h.until(short, (p) => p.state !== 'rejected');
    assert.ok(denied.state === 'pending' && denied.denied, `denied: its streams end (${denied.state})`);
    assert.match((denied as { reason: string }).reason, /token generate --mesh default --name db-0\.team-a\) and Envoy connect as default\.db-0\.team-a/);

    const full = h.svids.attach({ mesh: 'default', name: 'db-0.team-a', source: 'token' });
    await h.until(full, (p) => p.state === 'issued' && p.spiffeId.endsWith('/ns/team-a/sa/db-team-a'));

    // Two namespaces hold db-0: the short node id names neither, as before (pending, not denied).
    await h.push(id, inNs('team-a'), inNs('team-b'));
    const ambiguous = await h.until(short, (p) => p.state === 'pending' && /ambiguous/.test(p.reason));
    assert.ok(ambiguous.state === 'pending' && !ambiguous.denied);
    // team-a's is deleted: the name now reaches team-b's alone, which a token never follows.
    await h.push(id, inNs('team-b'));
    const takeover = await h.until(short, (p) => p.state === 'pending' && !!p.denied);
    assert.match((takeover as { reason: string }).reason, /--name db-0\.team-b\b/);
    // The full name has no Dataplane now: a gateway without claims (no SPIFFE ID renders), never team-b's identity.
    const gone = await h.until(full, (p) => p.state !== 'issued');
    assert.equal(gone.state, 'rejected');
  } finally {
    await h.close();
  }
});

test('a failing issuance is retried with a doubling wait (Kuma backs off 5 s to 5 min), and a success starts the wait over', async () => {
  let failNext = 3;
  const calls: number[] = [];
  const h = await setup({
    retryBaseMs: 40,
    issuer: (real) => ({
      issue: (...args: Parameters<Issuer['issue']>) => {
        calls.push(performance.now());
        if (failNext > 0) {
          failNext--;
          return Promise.reject(new Error('the CA key is on a token that is not plugged in'));
        }
        return real.issue(...args);
      },
    }),
  });
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    assert.equal(calls.length, 4, 'three failures, then the issuance that worked');
    const gaps = calls.slice(1).map((t, i) => t - calls[i]!);
    gaps.forEach((gap, i) => assert.ok(gap >= 40 * 2 ** i - 5, `wait ${i + 1} was ${gap.toFixed(0)} ms, expected about ${40 * 2 ** i}`));
    // After a success the next failure waits the first step again, not the fourth.
    failNext = 1;
    const before = calls.length;
    h.svids.rotate(key);
    await h.until(key, (p) => issued(p) && p.svid.serialHex !== (first.state === 'issued' ? first.svid.serialHex : ''));
    assert.equal(calls.length, before + 2);
    const again = calls.at(-1)! - calls.at(-2)!;
    assert.ok(again >= 35 && again < 250, `the wait after a success was ${again.toFixed(0)} ms, expected about 40`);
  } finally {
    await h.close();
  }
});

test('proxies whose issuance failed together do not all try again at the same instant: each wait is spread by up to half again', async () => {
  const waits: number[] = [];
  const draws = [0, 0.999];
  let n = 0;
  const h = await setup({
    retryBaseMs: 60_000,
    random: () => draws[n++ % draws.length]!,
    log: { info: () => undefined, warn: (o, m) => void (m === 'SVID issuance failed; retrying' && waits.push((o as { retryInMs: number }).retryInMs)) },
    issuer: () => ({ issue: () => Promise.reject(new Error('the CA key is on a token that is not plugged in')) }),
  });
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web), dataplane('web-2', web));
    const a = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const b = h.svids.attach({ mesh: 'default', name: 'web-2', source: 'none' });
    await h.until(a, (p) => p.state === 'pending');
    await h.until(b, (p) => p.state === 'pending');
    assert.deepEqual(waits.sort((x, y) => x - y), [60_000, 89_970]);
  } finally {
    await h.close();
  }
});

test('a proxy whose first SVID cannot be issued (its CA expired by the clock before the identity is recomputed) is pending with the issuer\'s reason, not left "not computed yet"; a served proxy keeps its SVID while a rotation fails', async () => {
  let clock = Date.now();
  const h = await setup({ now: () => new Date(clock), retryBaseMs: 60_000 });
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web), dataplane('web-2', web));
    const served = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(served, issued);
    assert.ok(first.state === 'issued');
    clock = Date.parse('2200-01-01T00:00:00Z'); // past the autogenerated CA's ten years
    const fresh = h.svids.attach({ mesh: 'default', name: 'web-2', source: 'none' });
    const pending = await h.until(fresh, (p) => p.state === 'pending' && p.reason !== UNDECIDED_REASON);
    assert.ok(pending.state === 'pending');
    assert.match(pending.reason, /SVID could not be issued.*CA certificate expired at/);
    assert.equal(isUndecided(pending), false, 'its streams need not wait for an SVID that is not coming');
    h.svids.rotate(served);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(h.svids.get(served), first, 'the served SVID is kept');
  } finally {
    await h.close();
  }
});

test('a CA whose chain changes (an intermediate added) reissues: the served certificate_chain follows the CA chain, not only its key', async () => {
  const pki = tempDir();
  const h = await setup();
  try {
    const root = makeRootCa(pki, 'chain-root');
    const mid = makeIntermediateCa(pki, 'chain-mid', root);
    const ca = makeIntermediateCa(pki, 'chain-ca', mid);
    const withCa = (certPem: string) => {
      const mi = meshIdentity('identity');
      const inline = (value: string) => ({ type: 'InsecureInline' as const, insecureInline: { value } });
      if (mi.spec.provider.type === 'Bundled') {
        mi.spec.provider.bundled = { ...mi.spec.provider.bundled, autogenerate: { enabled: false }, ca: { certificate: inline(certPem), privateKey: inline(ca.keyPem) } };
      }
      return mi;
    };
    const blocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    await h.push(withCa(ca.certPem), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = await h.until(key, issued);
    assert.ok(first.state === 'issued');
    assert.equal(blocks(first.svid.certChainPem).length, 2, 'leaf + the CA');
    // The operator completes the chain: same CA (same key and certificate), now with its parent and root.
    await h.push(withCa(ca.certPem + mid.certPem + root.certPem), dataplane('web-1', web));
    const second = await h.until(key, (p) => p.state === 'issued' && blocks(p.svid.certChainPem).length === 3);
    assert.ok(second.state === 'issued');
    assert.notEqual(second.svid.serialHex, first.svid.serialHex, 'a new version, so every stream is sent it');
    assert.equal(blocks(second.svid.certChainPem)[2], blocks(mid.certPem)[0]);
  } finally {
    await h.close();
    pki.cleanup();
  }
});

// Every proxy of a mesh is evaluated again when one of its identities changes: each evaluation
// copied all identities of every mesh and sorted its mesh's (4,000 proxies × 1,000 identities: 1.6 s).
test('a MeshIdentity change re-evaluates its mesh\'s proxies without reading every other mesh\'s identities for each', async () => {
  const h = await setup();
  try {
    let reads = 0;
    const others = Array.from({ length: 30 }, (_, i) => {
      const mi = meshIdentity(`other-${i}`, { mesh: 'other' });
      return Object.defineProperty(mi, 'mesh', { get: () => (reads++, 'other'), enumerable: true });
    });
    const dps = Array.from({ length: 30 }, (_, i) => dataplane(`web-${i}`, web));
    await h.push(meshIdentity('identity'), ...others, ...dps);
    const keys = dps.map((d) => h.svids.attach({ mesh: 'default', name: d.name, source: 'none' }));
    const serials = new Map<string, string>();
    for (const k of keys) {
      const p = await h.until(k, issued);
      if (p.state === 'issued') serials.set(k, p.svid.serialHex);
    }
    reads = 0;
    await h.push(meshIdentity('identity', { expiry: '2h', expiryMs: 2 * 3600_000 }), ...others, ...dps);
    for (const k of keys) await h.until(k, (p) => p.state === 'issued' && p.svid.serialHex !== serials.get(k));
    assert.ok(reads < 30 * 30, `${reads} reads of other meshes' identities for 30 proxies re-evaluated`);
  } finally {
    await h.close();
  }
});

test('an SVID plan kept for a Dataplane does not keep the identities it was made from (every CA and its key) alive once a later view replaces them', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const h = await setup();
  try {
    const mi = meshIdentity('identity');
    const dp = dataplane('web-1', web);
    const first = new WeakRef((await h.push(mi, dp)).identities);
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    await h.until(key, issued);
    // Another mesh's identity: a new identities map, and nothing of mesh default to plan again.
    const second = await h.push(mi, dp, meshIdentity('other', { mesh: 'other' }));
    assert.notEqual(second.identities, first.deref());
    await new Promise((r) => setTimeout(r, 10));
    gc();
    assert.equal(first.deref(), undefined, 'the first view\'s identities are still reachable');
  } finally {
    await h.close();
  }
});
