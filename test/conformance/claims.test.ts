// Token claims never leak between streams (SPEC §5), on SotW, delta, ADS and FetchSecrets:
// - with a Dataplane, claims are constraints (a mismatch is UNAUTHENTICATED naming the claim) and
//   the identity comes from the Dataplane alone;
// - without one, each claim set of a node id is its own proxy with its own SVID, and a revoked or
//   expired claim set is forgotten: no later response to anyone carries it, not even after a
//   forced rotation.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { DeltaClient, SotwClient, deltaSecretsOf, fetchSecrets, nodeOf, secretsOf, tlsCertificate, type DecodedSecret, type StreamEnd } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { DEFAULT_TD, PAY_LABELS, PAY_SPIFFE, WEB_SPIFFE, leafInfo } from './world.js';
import { dataplaneYaml, meshIdentityYaml } from '../helpers/yaml.js';

const f = serverFixture({ server: { auth: 'token', admin: '127.0.0.1:0', credentialRecheckMs: 200 } });
const HOUR = 3600_000;

/** Claims of a gateway without a Dataplane that select the catch-all identity. */
const EDGE_LABELS = { 'k8s.kuma.io/namespace': 'edge', 'k8s.kuma.io/service-account': 'gw' };
const EDGE_SPIFFE = `spiffe://${DEFAULT_TD}/ns/edge/sa/gw`;

type Variant = 'sotw' | 'delta' | 'ads' | 'ads-delta';
const VARIANTS: Variant[] = ['sotw', 'delta', 'ads', 'ads-delta'];

interface Served {
  uri: string;
  serial: string;
  keyPem: string;
}

function served(s: DecodedSecret | undefined): Served | undefined {
  if (!s) return undefined;
  const tc = tlsCertificate(s);
  return { ...leafInfo(tc.certChainPem), keyPem: tc.keyPem };
}

/** A stream subscribed to `default` that ACKs everything and remembers every identity it was sent. */
class IdentityStream {
  readonly seen: Served[] = [];
  private readonly sotw?: SotwClient;
  private readonly delta?: DeltaClient;

  constructor(v: Variant, node: string, token: string) {
    const api = v.startsWith('ads') ? 'ads' : 'sds';
    if (v === 'sotw' || v === 'ads') {
      this.sotw = new SotwClient(f.server.address, { node, token, api });
      this.sotw.request(['default']);
    } else {
      this.delta = new DeltaClient(f.server.address, { node, token, api });
      this.delta.subscribe(['default']);
    }
  }

  get ended(): Promise<StreamEnd> {
    return (this.sotw ?? this.delta)!.ended;
  }

  get responses(): number {
    return (this.sotw ?? this.delta)!.received.length;
  }

  /** The next identity sent (responses without one are ACKed and skipped). */
  async next(timeoutMs = 20_000): Promise<Served> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      let id: Served | undefined;
      if (this.sotw) {
        const res = await this.sotw.next(Math.max(1, until - Date.now()));
        this.sotw.ack(res);
        id = served(secretsOf(res).get('default'));
      } else {
        const res = await this.delta!.next(Math.max(1, until - Date.now()));
        this.delta!.ack(res);
        id = served(deltaSecretsOf(res).get('default'));
      }
      if (id) {
        this.seen.push(id);
        return id;
      }
    }
  }

  close(): void {
    (this.sotw ?? this.delta)!.close();
  }
}

function open(v: Variant, node: string, token: string): IdentityStream {
  const s = new IdentityStream(v, node, token);
  f.open.push(s);
  return s;
}

const token = (name: string, claims: { labels?: Record<string, string>; workload?: string } = {}, validForMs = HOUR) =>
  f.server.tokens!.generate({ mesh: 'default', name, validForMs, ...claims });

/** The stream ends UNAUTHENTICATED; `fresh`: it was refused at once, with nothing sent. */
async function refused(s: IdentityStream, why: RegExp, fresh = true): Promise<void> {
  const end = await Promise.race([s.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 20_000))]);
  assert.notEqual(end, 'open', 'the stream must be refused');
  if (end === 'open') return;
  assert.equal(end.code, grpc.status.UNAUTHENTICATED, `${grpc.status[end.code]}: ${end.details}`);
  assert.match(end.details, why);
  if (fresh) assert.equal(s.responses, 0, 'nothing is sent on a refused stream');
}

async function admin(path: string, method = 'GET'): Promise<any> {
  const res = await fetch(`${f.server.admin!.url}${path}`, { method });
  assert.ok(res.ok || method === 'POST', `${method} ${path}: ${res.status}`);
  return res.json();
}

/** /debug/proxies entries of a node id (one per claim set). */
async function debugEntries(node: string): Promise<{ proxy: string; spiffeId?: string; serial?: string }[]> {
  return ((await admin('/debug/proxies')) as { proxy: string; node?: string }[]).filter((p) => p.proxy === node || p.proxy.startsWith(`${node}#`));
}

async function fetchDefault(node: string, tok: string): Promise<Served> {
  const res = await fetchSecrets(f.server.address, { node: nodeOf(node), resource_names: ['default'], type_url: SECRET_TYPE_URL }, tok);
  const id = served(secretsOf(res).get('default'));
  assert.ok(id, 'FetchSecrets returns the identity');
  return id;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('with a Dataplane, token claims are constraints and the identity comes from the Dataplane', () => {
  for (const v of VARIANTS) {
    it(`${v}: a labelled or workload token that differs from the Dataplane is refused naming the claim; other streams keep their identity`, async () => {
      const a = open(v, 'default.web.shop', await token('web.shop'));
      assert.equal((await a.next()).uri, WEB_SPIFFE);

      await refused(open(v, 'default.web.shop', await token('web.shop', { labels: { app: 'payments' } })), /label "app"="payments" does not match Dataplane default\.web\.shop \("web"\)/);
      await refused(open(v, 'default.web.shop', await token('web.shop', { labels: PAY_LABELS })), /token claim label "app"/);
      await refused(open(v, 'default.web.shop', await token('web.shop', { labels: { team: 'x' } })), /label "team"="x" .*no such label/);
      await refused(open(v, 'default.web.shop', await token('web.shop', { workload: 'pay' })), /workload "pay"/);

      // Claims that equal the Dataplane's are fine; the identity is still the Dataplane's.
      const c = open(v, 'default.web.shop', await token('web.shop', { labels: { app: 'web' } }));
      assert.equal((await c.next()).uri, WEB_SPIFFE);

      await sleep(500);
      assert.deepEqual(a.seen.map((x) => x.uri), [WEB_SPIFFE], 'the plain stream got exactly its own identity, once');
      a.close();
      c.close();
    });
  }

  it('FetchSecrets: a mismatching claim is UNAUTHENTICATED naming it; a plain token gets the Dataplane identity', async () => {
    await assert.rejects(fetchDefault('default.web.shop', await token('web.shop', { labels: { app: 'payments' } })), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.UNAUTHENTICATED);
      assert.match(e.details, /label "app"="payments"/);
      return true;
    });
    assert.equal((await fetchDefault('default.web.shop', await token('web.shop'))).uri, WEB_SPIFFE);
  });
});

describe('without a Dataplane, each claim set is its own proxy and a revoked one is forgotten', () => {
  for (const v of VARIANTS) {
    it(`${v}: two claim sets of one node id get their own SVIDs; after revocation and a forced rotation nobody gets the revoked one`, async () => {
      const node = `default.gw-${v}`;
      const name = node.slice('default.'.length);
      const edgeToken = await token(name, { labels: EDGE_LABELS });
      const payToken = await token(name, { labels: PAY_LABELS });
      const a = open(v, node, edgeToken);
      const a1 = await a.next();
      assert.equal(a1.uri, EDGE_SPIFFE);
      const b = open(v, node, payToken);
      const b1 = await b.next();
      assert.equal(b1.uri, PAY_SPIFFE);
      assert.notEqual(b1.serial, a1.serial);

      // Neither overwrites the other (the old code pushed the other claim set's SVID within ~1.5 s).
      await sleep(1500);
      const c = open(v, node, await token(name, { labels: EDGE_LABELS }));
      assert.deepEqual(await c.next(), a1, 'a new stream of the same claim set shares its SVID');
      const entries = await debugEntries(node);
      assert.deepEqual(entries.map((e) => e.spiffeId).sort(), [EDGE_SPIFFE, PAY_SPIFFE].sort(), 'one debug entry per claim set');

      await f.server.tokens!.revokeToken(payToken);
      await refused(b, /token revoked/, false);
      assert.deepEqual((await debugEntries(node)).map((e) => e.spiffeId), [EDGE_SPIFFE], 'the revoked claim set is dropped at once');

      // A forced rotation (all proxies, then this node) must not bring the revoked claim set back.
      await admin('/rotate', 'POST');
      const a2 = await a.next();
      assert.equal(a2.uri, EDGE_SPIFFE);
      assert.notEqual(a2.serial, a1.serial, 'rotated');
      await admin(`/rotate?proxy=${node}`, 'POST');
      assert.equal((await a.next()).uri, EDGE_SPIFFE);
      assert.deepEqual((await debugEntries(node)).map((e) => e.spiffeId), [EDGE_SPIFFE]);
      await refused(open(v, node, payToken), /token revoked/);

      // The same claims with a new token are a new proxy with a new key: the old SVID is gone for good.
      const d = open(v, node, await token(name, { labels: PAY_LABELS }));
      const d1 = await d.next();
      assert.equal(d1.uri, PAY_SPIFFE);
      assert.notEqual(d1.serial, b1.serial);
      assert.notEqual(d1.keyPem, b1.keyPem);

      await sleep(300);
      for (const s of [a, c]) assert.ok(s.seen.every((x) => x.uri === EDGE_SPIFFE), 'the edge streams never saw the payments identity');
      for (const s of [a, b, c, d]) s.close();
    });
  }

  it('sotw: two tokens of one claim set share its SVID; revoking one ends its stream and reissues the SVID to the other (the revoked holder has its key)', async () => {
    const node = 'default.gw-two-tokens';
    const keep = open('sotw', node, await token('gw-two-tokens', { labels: EDGE_LABELS }));
    const first = await keep.next();
    assert.equal(first.uri, EDGE_SPIFFE);
    const revokedToken = await token('gw-two-tokens', { labels: EDGE_LABELS });
    const gone = open('sotw', node, revokedToken);
    assert.deepEqual(await gone.next(), first, 'one claim set, one SVID');
    await f.server.tokens!.revokeToken(revokedToken);
    await refused(gone, /token revoked/, false);
    // The stream left was served the key the revoked token's holder still has: a new one replaces it.
    const next = await keep.next(5000).catch(() => undefined);
    assert.ok(next, 'no new SVID was sent to the stream left: the revoked holder keeps a key that is still served');
    assert.equal(next.uri, EDGE_SPIFFE);
    assert.notEqual(next.keyPem, first.keyPem);
    keep.close();
  });

  it('sotw: a token that held a proxy\'s SVID and disconnected, then is revoked, still gets that SVID reissued to the stream of the other token', async () => {
    const node = 'default.gw-gone-token';
    const keep = open('sotw', node, await token('gw-gone-token', { labels: EDGE_LABELS }));
    const first = await keep.next();
    const goneToken = await token('gw-gone-token', { labels: EDGE_LABELS });
    const gone = open('sotw', node, goneToken);
    assert.deepEqual(await gone.next(), first, 'one claim set, one SVID: the holder of the second token has its key');
    gone.close();
    await sleep(300);
    await f.server.tokens!.revokeToken(goneToken);
    const next = await keep.next(5000).catch(() => undefined);
    assert.ok(next, 'no new SVID after the revocation: the revoked holder keeps a key that is still served');
    assert.notEqual(next.keyPem, first.keyPem);
    keep.close();
  });

  it('sotw: an expired claim set is forgotten as soon as its token expires', async () => {
    const node = 'default.gw-expiring';
    const short = await token('gw-expiring', { labels: PAY_LABELS }, 2000);
    const s = open('sotw', node, short);
    const first = await s.next();
    assert.equal(first.uri, PAY_SPIFFE);
    await refused(s, /token expired/, false);
    assert.deepEqual(await debugEntries(node), [], 'dropped without a grace period');
    await admin('/rotate', 'POST');
    const again = open('sotw', node, await token('gw-expiring', { labels: PAY_LABELS }));
    assert.notEqual((await again.next()).serial, first.serial);
    again.close();
  });

  it('FetchSecrets: claim sets do not share SVIDs, and a revoked one is not served again after a forced rotation', async () => {
    const node = 'default.gw-fetch';
    const edgeToken = await token('gw-fetch', { labels: EDGE_LABELS });
    const payToken = await token('gw-fetch', { labels: PAY_LABELS });
    const e1 = await fetchDefault(node, edgeToken);
    const p1 = await fetchDefault(node, payToken);
    assert.equal(e1.uri, EDGE_SPIFFE);
    assert.equal(p1.uri, PAY_SPIFFE);
    assert.deepEqual(await fetchDefault(node, edgeToken), e1, 'a repeated fetch reuses the claim set SVID');
    assert.deepEqual(await fetchDefault(node, payToken), p1);

    await f.server.tokens!.revokeToken(payToken);
    await admin('/rotate', 'POST');
    await assert.rejects(fetchDefault(node, payToken), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED && /revoked/.test(e.details));
    assert.deepEqual((await debugEntries(node)).map((e) => e.spiffeId), [EDGE_SPIFFE]);
    const p2 = await fetchDefault(node, await token('gw-fetch', { labels: PAY_LABELS }));
    assert.equal(p2.uri, PAY_SPIFFE);
    assert.notEqual(p2.serial, p1.serial);
    assert.equal((await fetchDefault(node, edgeToken)).uri, EDGE_SPIFFE);
  });
});

describe('a gateway whose claims stop holding, and its workload claim', () => {
  for (const v of VARIANTS) {
    it(`${v}: a Dataplane added under an open gateway stream with claims it contradicts ends that stream UNAUTHENTICATED naming the claim; a stream of a claim set it agrees with goes on`, async () => {
      // The Dataplane is team edge's (EDGE_LABELS name the namespace): its node id and tokens name it in full.
      const dp = `gw-dp-${v}`;
      const name = `${dp}.edge`;
      const node = `default.${name}`;
      const a = open(v, node, await token(name, { labels: PAY_LABELS }));
      assert.equal((await a.next()).uri, PAY_SPIFFE);
      const agreeing = open(v, node, await token(name, { labels: EDGE_LABELS }));
      assert.equal((await agreeing.next()).uri, EDGE_SPIFFE);
      f.world.write(`${dp}.yaml`, dataplaneYaml(dp, EDGE_LABELS));
      try {
        await refused(a, /token claim label "app"="payments" does not match Dataplane default\.gw-dp-[a-z-]+\.edge \(no such label\)/, false);
        const still = await Promise.race([agreeing.ended, sleep(500).then(() => 'open' as const)]);
        assert.equal(still, 'open', 'the claim set the Dataplane agrees with keeps its stream');
        await refused(open(v, node, await token(name, { labels: PAY_LABELS })), /token claim label "app"="payments"/);
      } finally {
        f.world.remove(`${dp}.yaml`);
        agreeing.close();
      }
    });
  }

  it('a workload claim is the gateway\'s kuma.io/workload label: selectors match it and .Workload renders it', async () => {
    f.world.write(
      'by-workload.yaml',
      meshIdentityYaml('by-workload', { namespace: 'kuma-system', matchLabels: { 'kuma.io/workload': 'billing' }, trustDomain: 'workload.example', path: '/workload/{{ .Workload }}' }),
    );
    try {
      for (let i = 0; !(await f.debug<{ kri: string; ca?: object }[]>('identities')).some((x) => x.kri.includes('_by-workload_') && x.ca); i++) {
        assert.ok(i < 150, 'the by-workload identity becomes ready');
        await sleep(100);
      }
      const s = open('sotw', 'default.gw-workload', await token('gw-workload', { workload: 'billing' }));
      assert.equal((await s.next()).uri, 'spiffe://workload.example/workload/billing');
      s.close();
    } finally {
      f.world.remove('by-workload.yaml');
    }
  });
});

describe('auth failures are counted under the reason they were refused for', () => {
  it('a valid token used with another node id counts as node-mismatch, even when that node id reads "expired", "revoked" or "Bearer"', async () => {
    const series = (reason: string) => `mesh_sds_stream_auth_failures_total{reason="${reason}"}`;
    const reasons = ['node-mismatch', 'expired', 'revoked', 'no-token'];
    const before = Object.fromEntries(await Promise.all(reasons.map(async (r) => [r, (await f.metric(series(r))) ?? 0] as const)));
    const tok = await token('web');
    for (const node of ['default.expired-db', 'default.revoked-x', 'default.Bearer-gw']) {
      await refused(open('sotw', node, tok), /token is not valid for node id/);
    }
    assert.equal(await f.metric(series('node-mismatch')), before['node-mismatch']! + 3);
    for (const r of ['expired', 'revoked', 'no-token']) assert.equal((await f.metric(series(r))) ?? 0, before[r], `${r} must not move`);
  });
});
