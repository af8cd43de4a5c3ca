// SVIDs prepared ahead (serve --prepare-svids, on by default): a proxy of a known Dataplane is
// answered with an SVID issued before it connected, a valid one for its own identity, and no key
// is handed to two proxies.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { SotwClient, secretsOf, tlsCertificate } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { leafInfo } from './world.js';

const f = serverFixture({
  world: { extraDataplanes: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`ahead-${i}`, { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': `ahead-${i}` }])) },
});

const prepared = async (state: string) => (await f.metric(`mesh_sds_prepared_svids{state="${state}"}`)) ?? NaN;

async function settled(): Promise<number> {
  const deadline = Date.now() + 10_000;
  while ((await prepared('issuing')) + (await prepared('queued')) > 0) {
    if (Date.now() > deadline) assert.fail('SVIDs still being prepared after 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  return prepared('held');
}

it('a proxy of a Dataplane known before it connected is served the SVID prepared for it: no issuance when it connects', async () => {
  const held = await settled();
  assert.equal(held, 7, 'web, pay and the five ahead-N Dataplanes');
  assert.equal(await prepared('waiting'), 0, 'none left out by the cap');
  const issued = await f.metric('mesh_sds_svid_issued_total');
  const c = new SotwClient(f.server.address, { node: 'default.ahead-0', client: f.channel });
  f.open.push(c);
  c.request(['default']);
  const res = await c.next(5_000);
  c.ack(res);
  const chain = tlsCertificate(secretsOf(res).get('default')!).certChainPem;
  assert.equal(leafInfo(chain).uri, 'spiffe://default.default.mesh.local/ns/shop/sa/ahead-0');
  const leaf = new X509Certificate(chain);
  assert.ok(Date.parse(leaf.validFrom) <= Date.now() && Date.now() < Date.parse(leaf.validTo), `${leaf.validFrom} – ${leaf.validTo}`);
  assert.equal(await f.metric('mesh_sds_svid_issued_total'), issued, 'served without a new issuance');
  assert.equal(await prepared('held'), held - 1);
});

it("two proxies get two prepared SVIDs' keys, and a proxy's second stream shares its own", async () => {
  await settled();
  const a = new SotwClient(f.server.address, { node: 'default.ahead-1', client: f.channel });
  const b = new SotwClient(f.server.address, { node: 'default.ahead-2', client: f.channel });
  f.open.push(a, b);
  a.request(['default']);
  b.request(['default']);
  const keys = await Promise.all(
    [a, b].map(async (c) => {
      const res = await c.next(5_000);
      c.ack(res);
      return tlsCertificate(secretsOf(res).get('default')!).keyPem;
    }),
  );
  assert.notEqual(keys[0], keys[1]);
  const again = new SotwClient(f.server.address, { node: 'default.ahead-1', client: f.channel });
  f.open.push(again);
  again.request(['default']);
  const res = await again.next(5_000);
  assert.equal(tlsCertificate(secretsOf(res).get('default')!).keyPem, keys[0], "the same proxy's second stream shares its SVID");
});
