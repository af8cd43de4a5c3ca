import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Issuer, ProxyIdentity } from '../../src/identity/svids.js';
import type { IssuedSvid } from '../../src/pki/types.js';
import { dataplane, meshIdentity } from '../helpers/resources.js';
import { PreparedSvids, RSA_PREPARATION_WEIGHT } from '../../src/identity/prepared-svids.js';
import { setup as setupManager } from './svid-harness.js';

const web = { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web', app: 'web' };
const api = { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'api', app: 'api' };

/** Holds every issuance until `release()` while `held` is set; counts what it was asked for. */
class CountingIssuer implements Issuer {
  readonly spiffeIds: string[] = [];
  held = false;
  fail?: Error;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly real: Issuer) {}
  issue(...args: Parameters<Issuer['issue']>): Promise<IssuedSvid> {
    this.spiffeIds.push(args[1]);
    const go = () => (this.fail ? Promise.reject(this.fail) : this.real.issue(...args));
    if (!this.held) return go();
    return new Promise<void>((r) => this.waiting.push(r)).then(go);
  }
  release(): void {
    this.held = false;
    for (const r of this.waiting.splice(0)) r();
  }
}

async function setup(opts: { limit?: number; now?: () => Date; detachGraceMs?: number; clockCheckMs?: number } = {}) {
  let issuer!: CountingIssuer;
  const full: number[] = [];
  const { svids, push, until, close } = await setupManager({
    issuer: (real) => (issuer = new CountingIssuer(real)),
    prepareLimit: opts.limit ?? 100,
    onPrepareFull: (limit) => full.push(limit),
    now: opts.now,
    authoritiesNow: opts.now,
    detachGraceMs: opts.detachGraceMs,
    clockCheckMs: opts.clockCheckMs,
  });
  /** Waits until nothing is queued or being issued and `held` SVIDs are ready. */
  const prepared = async (held: number) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const s = svids.preparedStats();
      if (s.held === held && s.issuing === 0 && s.queued === 0) return;
      if (Date.now() > deadline) assert.fail(`prepared SVIDs ${JSON.stringify(s)}, expected ${held} held`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { svids, issuer, full, push, until, prepared, close };
}

const issued = (p: ProxyIdentity) => p.state === 'issued';
/** An SVID (no certificate behind it) valid from a second ago for ten minutes: what the pool's own tests hand it. */
const tenMinuteSvid = (): IssuedSvid => {
  const now = Date.now();
  return { spiffeId: 'spiffe://td/a', certChainPem: '', keyPem: '', notBefore: new Date(now - 1000), notAfter: new Date(now + 600_000), serialHex: '01', caFingerprint: 'fp' };
};
const serial = (p: ProxyIdentity) => (p.state === 'issued' ? p.svid.serialHex : undefined);

test('every Dataplane without a proxy gets an SVID prepared, and a proxy that attaches is served it at once, without a new issuance', async () => {
  const h = await setup();
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web), dataplane('api-1', api));
    await h.prepared(2);
    assert.equal(h.issuer.spiffeIds.length, 2);
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    // Issued already: served in the tick the proxy attaches, so its stream answers without waiting.
    const p = h.svids.get(key)!;
    assert.ok(issued(p), `served when attach returns, not ${p.state}`);
    assert.equal(p.state === 'issued' && p.spiffeId, 'spiffe://default.default.mesh.local/ns/shop/sa/web');
    assert.equal(h.issuer.spiffeIds.length, 2, 'no issuance on attach');
    assert.equal(h.svids.preparedStats().held, 1, "web-1's SVID is no longer held: it was handed out");
  } finally {
    await h.close();
  }
});

test('a prepared SVID is handed out once: the proxy that comes back after its SVID was dropped gets a new key', async () => {
  const h = await setup({ detachGraceMs: 10 });
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    await h.prepared(1);
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const first = serial(await h.until(key, issued));
    h.svids.detach(key);
    // Dropped after the grace period; its Dataplane has no proxy again: a new SVID is prepared.
    await h.prepared(1);
    assert.equal(h.svids.get(key), undefined);
    const again = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const second = serial(await h.until(again, issued));
    assert.ok(first && second && first !== second, `serials ${first} and ${second}`);
    assert.equal(h.issuer.spiffeIds.length, 2, 'the second proxy took the SVID prepared after the drop');
  } finally {
    await h.close();
  }
});

test("a prepared SVID whose Dataplane's labels changed is not handed out: the proxy gets the SPIFFE ID of the labels now", async () => {
  const h = await setup();
  try {
    const mi = meshIdentity('identity');
    await h.push(mi, dataplane('web-1', web));
    await h.prepared(1);
    // The same Dataplane now runs as another service account: the SVID prepared for `web` is let go.
    await h.push(mi, dataplane('web-1', api));
    await h.prepared(1);
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const p = await h.until(key, issued);
    assert.equal(p.state === 'issued' && p.svid.spiffeId, 'spiffe://default.default.mesh.local/ns/shop/sa/api');
    assert.deepEqual(h.issuer.spiffeIds, ['spiffe://default.default.mesh.local/ns/shop/sa/web', 'spiffe://default.default.mesh.local/ns/shop/sa/api']);
  } finally {
    await h.close();
  }
});

test('a prepared SVID past half its lifetime is not handed out: the proxy is issued a fresh one, and the sweep prepares anew', async () => {
  let nowMs = Date.parse('2030-01-01T00:00:00Z');
  const h = await setup({ now: () => new Date(nowMs), clockCheckMs: 20 });
  try {
    await h.push(meshIdentity('identity', { expiry: '10m', expiryMs: 600_000 }), dataplane('web-1', web), dataplane('api-1', api));
    await h.prepared(2);
    nowMs += 310_000;
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const p = await h.until(key, issued);
    assert.ok(p.state === 'issued');
    assert.equal(p.svid.notAfter.getTime(), nowMs + 600_000, 'issued now, not 310 s ago');
    // api-1's held SVID is past half its life too: the sweep issues it again.
    const deadline = Date.now() + 5000;
    while (h.issuer.spiffeIds.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(h.issuer.spiffeIds.slice(2).sort(), ['spiffe://default.default.mesh.local/ns/shop/sa/api', 'spiffe://default.default.mesh.local/ns/shop/sa/web']);
  } finally {
    await h.close();
  }
});

test('a proxy that attaches while its SVID is being prepared joins that issuance (one leaf, not two)', async () => {
  const h = await setup();
  try {
    h.issuer.held = true;
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(h.svids.preparedStats(), { held: 1, issuing: 1, queued: 0, waiting: 0 });
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    h.issuer.release();
    await h.until(key, issued);
    assert.equal(h.issuer.spiffeIds.length, 1);
  } finally {
    await h.close();
  }
});

test('a preparation that fails leaves the joined proxy pending with the reason, and it retries on its own', async () => {
  const h = await setup();
  try {
    h.issuer.held = true;
    h.issuer.fail = new Error('CA key refused');
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    h.issuer.release();
    const p = await h.until(key, (x) => x.state === 'pending' && x.reason.includes('CA key refused'));
    assert.match(p.state === 'pending' ? p.reason : '', /SVID could not be issued from MeshIdentity "identity" \(retrying\): CA key refused/);
    await h.prepared(0);
  } finally {
    await h.close();
  }
});

test('no SVID is prepared for a Dataplane a proxy is attached to, nor one that is removed', async () => {
  const h = await setup();
  try {
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    const mi = meshIdentity('identity');
    await h.push(mi, dataplane('web-1', web), dataplane('api-1', api));
    await h.until(key, issued);
    await h.prepared(1);
    assert.equal(h.issuer.spiffeIds.length, 2, "one for the proxy, one prepared for api-1");
    await h.push(mi, dataplane('web-1', web));
    await h.prepared(0);
  } finally {
    await h.close();
  }
});

test('at most the limit is prepared, reaching it is reported once, and a place handed out goes to a Dataplane the limit left without one', async () => {
  const h = await setup({ limit: 2 });
  try {
    const mi = meshIdentity('identity');
    await h.push(mi, dataplane('a', web), dataplane('b', web), dataplane('c', web), dataplane('d', web));
    await h.prepared(2);
    assert.equal(h.issuer.spiffeIds.length, 2);
    assert.deepEqual(h.full, [2]);
    // a and b, planned first, are held; a proxy of a takes its SVID and c gets the place.
    const a = h.svids.attach({ mesh: 'default', name: 'a', source: 'none' });
    assert.ok(issued(h.svids.get(a)!), 'a was prepared');
    await h.prepared(2);
    assert.equal(h.issuer.spiffeIds.length, 3, 'one more prepared, for c');
    assert.equal(h.svids.preparedStats().waiting, 1, 'd');
    // d, still waiting for a place, is removed: it leaves the line, and nothing is prepared for it when one frees.
    await h.push(mi, dataplane('a', web), dataplane('b', web), dataplane('c', web));
    await h.prepared(2);
    assert.equal(h.svids.preparedStats().waiting, 0);
    const c = h.svids.attach({ mesh: 'default', name: 'c', source: 'none' });
    assert.ok(issued(h.svids.get(c)!), 'c was prepared when a took its SVID');
    await h.prepared(1);
    assert.equal(h.issuer.spiffeIds.length, 3, 'nothing for the removed d');
    assert.deepEqual(h.full, [2]);
  } finally {
    await h.close();
  }
});

test('nothing is prepared when the limit is 0', async () => {
  const h = await setup({ limit: 0 });
  try {
    await h.push(meshIdentity('identity'), dataplane('web-1', web));
    await h.prepared(0);
    assert.equal(h.issuer.spiffeIds.length, 0);
    const key = h.svids.attach({ mesh: 'default', name: 'web-1', source: 'none' });
    await h.until(key, issued);
    assert.equal(h.issuer.spiffeIds.length, 1);
  } finally {
    await h.close();
  }
});

test('the pool hands out an SVID only for the inputs it was prepared from, and lets it go either way', async () => {
  const inputs = { identity: 'mi', ca: 'fp', chain: '', spiffeId: 'spiffe://td/a', expiryMs: 600_000 };
  const svid = tenMinuteSvid();
  const pool = new PreparedSvids({ limit: 10, plan: () => ({ inputs, issue: () => Promise.resolve(svid), weight: 1 }) });
  try {
    pool.request('default.a');
    await new Promise((r) => setImmediate(r));
    assert.equal(pool.take('default.a', { ...inputs, spiffeId: 'spiffe://td/b' }), undefined, 'another SPIFFE ID');
    assert.equal(pool.stats().held, 0, 'let go: it fits nothing the Dataplane needs now');
    pool.request('default.a');
    await new Promise((r) => setImmediate(r));
    assert.equal(pool.take('default.a', { ...inputs, chain: 'another chain' }), undefined, 'the CA given with another chain');
    pool.request('default.a');
    await new Promise((r) => setImmediate(r));
    assert.equal(await pool.take('default.a', { ...inputs })?.svid, svid);
  } finally {
    pool.close();
  }
});

test('a full pool plans no Dataplane; those it left without one get places in the order they were left out, ahead of newer ones', async () => {
  const inputs = { identity: 'mi', ca: 'fp', chain: '', spiffeId: 'spiffe://td/a', expiryMs: 600_000 };
  const svid = tenMinuteSvid();
  const planned: string[] = [];
  const gone = new Set<string>();
  const pool = new PreparedSvids({
    limit: 1,
    plan: (dk) => (planned.push(dk), { inputs, issue: () => Promise.resolve(svid), weight: 1 }),
    wanted: (dk) => !gone.has(dk),
  });
  const turn = () => new Promise((r) => setImmediate(r));
  try {
    for (const dk of ['default.a', 'default.b', 'default.c']) pool.request(dk);
    await turn();
    assert.deepEqual(planned, ['default.a'], 'b and c wait for a place, not planned');
    assert.equal(pool.stats().waiting, 2);
    pool.request('default.b'); // asked again while waiting: keeps its place in the line
    assert.ok(pool.take('default.a', inputs));
    assert.deepEqual(planned, ['default.a'], 'nothing planned inside take()');
    pool.request('default.d'); // a newer one, asked in the same turn as the place freed
    await turn();
    assert.deepEqual(planned, ['default.a', 'default.b'], "a's place goes to b, the first left out, not to d");
    assert.equal(pool.stats().waiting, 2, 'c, then d');
    gone.add('default.c');
    pool.request('default.c'); // removed while it waits: it leaves the line
    await turn();
    assert.equal(pool.stats().waiting, 1);
    assert.ok(pool.take('default.b', inputs));
    await turn();
    assert.deepEqual(planned, ['default.a', 'default.b', 'default.d']);
    assert.deepEqual(pool.stats(), { held: 1, issuing: 0, queued: 0, waiting: 0 });
  } finally {
    pool.close();
  }
});

test('a place freed while newer Dataplanes are queued goes to the one waiting longest', async () => {
  let ca = 'fp-1';
  const gone = new Set<string>();
  const pending: ((s: IssuedSvid) => void)[] = [];
  const planned: string[] = [];
  const svid = tenMinuteSvid();
  const pool = new PreparedSvids({
    limit: 1,
    concurrency: 1,
    plan: (dk) => {
      planned.push(dk);
      if (gone.has(dk)) return undefined;
      return { inputs: { identity: 'mi', ca, chain: '', spiffeId: `spiffe://td/${dk}`, expiryMs: 600_000 }, issue: () => new Promise((r) => pending.push(r)), weight: 1 };
    },
    wanted: (dk) => !gone.has(dk),
  });
  const turn = () => new Promise((r) => setImmediate(r));
  try {
    pool.request('default.a');
    pool.request('default.c');
    await turn();
    pending.shift()!(svid);
    await turn();
    assert.deepEqual(pool.stats(), { held: 1, issuing: 0, queued: 0, waiting: 1 }, 'a held, c waiting');
    // a is prepared again (its CA rolled) and fills the concurrency; then it goes, and d is asked for.
    ca = 'fp-2';
    pool.request('default.a');
    await turn();
    gone.add('default.a');
    pool.request('default.a');
    pool.request('default.d');
    await turn();
    assert.equal(pool.stats().queued, 2, 'both wait behind the running issuance');
    planned.length = 0;
    pending.shift()!(svid);
    await turn();
    await turn();
    assert.deepEqual(planned, ['default.a', 'default.c'], "a's place goes to c, waiting since before d was asked for");
    assert.deepEqual(pool.stats(), { held: 1, issuing: 1, queued: 0, waiting: 1 }, 'c issuing, d waiting');
  } finally {
    pool.close();
  }
});

test('preparations run a few at a time by weight: 64 EC leaves at once, RSA ones about one per worker', async () => {
  for (const [weight, most] of [
    [1, 64],
    [RSA_PREPARATION_WEIGHT, 2],
  ] as const) {
    const pending: ((s: IssuedSvid) => void)[] = [];
    const svid = tenMinuteSvid();
    const pool = new PreparedSvids({
      limit: 1000,
      plan: (dk) => ({ inputs: { identity: 'mi', ca: 'fp', chain: '', spiffeId: `spiffe://td/${dk}`, expiryMs: 600_000 }, issue: () => new Promise((r) => pending.push(r)), weight }),
    });
    try {
      for (let i = 0; i < 100; i++) pool.request(`default.dp-${i}`);
      assert.equal(pending.length, 0, 'planned in a later turn, not inside request()');
      await new Promise((r) => setImmediate(r));
      assert.equal(pending.length, most, `weight ${weight}`);
      assert.deepEqual(pool.stats(), { held: most, issuing: most, queued: 100 - most, waiting: 0 });
      pending.shift()!(svid);
      await new Promise((r) => setImmediate(r));
      assert.equal(pool.stats().issuing, most, 'one done, the next started');
    } finally {
      pool.close();
    }
  }
});
