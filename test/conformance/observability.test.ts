// SPEC §7 metrics, /debug/proxies and log lines, read from the real admin endpoint of a server
// with real streams (nothing here fills a metric or a debug view itself).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '../../src/server/logger.js';
import { DeltaClient, SotwClient } from './envoy-client.js';
import { KRI_IDENTITY, KRI_PAYMENTS, PAY_SPIFFE, WEB_SPIFFE, waitFor } from './world.js';
import { serverFixture } from './fixture.js';

const lines: Record<string, unknown>[] = [];
const capture = new Writable({
  write(chunk: Buffer, _e, cb) {
    for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  },
});
const f = serverFixture({ server: { logger: createLogger('info', { destination: capture }) } });
const logged = (msg: string, pred: (l: Record<string, unknown>) => boolean = () => true) => lines.filter((l) => l.msg === msg && pred(l));

interface DebugStream {
  id: number;
  api: string;
  mesh: string;
  names: string[];
  held: string[];
  lastSent?: { version: string; nonce: string; secrets: { name: string; version: string }[] };
  lastAcked?: { version: string; nonce: string };
  lastNack?: { version: string; detail: string; nonce: string };
}
interface DebugProxy {
  node: string;
  identity?: string;
  spiffeId?: string;
  state: string;
  streams: DebugStream[];
}

describe('metrics, /debug/proxies and logs of a real server (SPEC §7)', () => {
  it('streams by mesh and protocol, pushes, ACKs, last sent/ACKed per stream, held names, stream opened/closed log lines', async () => {
    const web = new SotwClient(f.server.address, { node: 'default.web', client: f.channel });
    const pay = new DeltaClient(f.server.address, { node: 'default.pay', client: f.channel });
    f.open.push(web, pay);
    // `spiffe://later.example` is a valid name whose trust domain does not exist (yet): held.
    web.request(['default', 'spiffe://later.example']);
    const r1 = await web.next();
    web.ack(r1);
    pay.subscribe(['default', KRI_PAYMENTS]);
    const d1 = await pay.next();
    pay.ack(d1);

    const streams = await waitFor('both streams registered', () => (f.server.registry.streams.size >= 2 ? true : undefined));
    assert.ok(streams);
    assert.equal(await f.metric('mesh_sds_streams{mesh="default",api="sotw"}'), 1);
    assert.equal(await f.metric('mesh_sds_streams{mesh="default",api="delta"}'), 1);
    assert.ok(((await f.metric('mesh_sds_pushes_total')) ?? 0) >= 2);
    const acks = await pollMetric('mesh_sds_acks_total', (v) => v >= 2);
    assert.ok(acks >= 2);
    assert.equal(await f.metric('mesh_sds_held_names{mesh="default"}'), 1);
    assert.ok(((await f.metric('mesh_sds_svid_issued_total{mesh="default",identity="identity"}')) ?? 0) >= 1);
    assert.ok(((await f.metric('mesh_sds_svid_issue_seconds_count')) ?? 0) >= 2);
    const caExpiry = await f.metric(`mesh_sds_certificate_expiry_timestamp_seconds{kind="ca",name="${KRI_IDENTITY}"}`);
    assert.ok(caExpiry && caExpiry * 1000 > Date.now(), 'CA expiry is a future Unix time');
    const leafExpiry = await f.metric(`mesh_sds_svid_earliest_expiry_timestamp_seconds{identity="${KRI_PAYMENTS}"}`);
    assert.ok(leafExpiry && leafExpiry * 1000 > Date.now(), `leaf expiry is a future Unix time: ${leafExpiry}\n${(await f.scrape()).split('\n').filter((l) => l.includes('expiry')).join('\n')}`);
    assert.equal(await f.metric('mesh_sds_resource_errors'), 0);

    const proxies = await f.debug<DebugProxy[]>('proxies');
    const w = proxies.find((p) => p.node === 'default.web')!;
    assert.equal(w.spiffeId, WEB_SPIFFE);
    assert.equal(w.identity, KRI_IDENTITY);
    const ws = w.streams.find((s) => s.api === 'sotw')!;
    assert.deepEqual(ws.names, ['default', 'spiffe://later.example']);
    assert.deepEqual(ws.held, ['spiffe://later.example']);
    assert.equal(ws.lastSent?.version, r1.version_info);
    assert.equal(ws.lastSent?.nonce, r1.nonce);
    assert.deepEqual(ws.lastSent?.secrets.map((s) => s.name), ['default']);
    assert.equal(ws.lastAcked?.version, r1.version_info);
    const p = proxies.find((x) => x.node === 'default.pay')!;
    assert.equal(p.spiffeId, PAY_SPIFFE);
    const ps = p.streams.find((s) => s.api === 'delta')!;
    assert.equal(ps.lastSent?.nonce, d1.nonce);
    assert.equal(ps.lastSent?.version, d1.system_version_info);
    assert.equal(ps.lastAcked?.nonce, d1.nonce);
    assert.deepEqual(ps.lastSent?.secrets.map((s) => s.name).sort(), ['default', KRI_PAYMENTS].sort());

    assert.equal(logged('stream opened', (l) => l.proxy === 'default.web' && l.api === 'sotw').length, 1);
    assert.equal(logged('proxy identity changed', (l) => l.proxy === 'default.pay' && l.spiffeId === PAY_SPIFFE).length, 1);
    web.close();
    await waitFor('the sotw stream gone', () => (f.server.registry.streams.size === 1 ? true : undefined));
    assert.equal(await f.metric('mesh_sds_streams{mesh="default",api="sotw"}'), undefined, 'the series goes with the last stream of its mesh and API');
    assert.equal(await f.metric('mesh_sds_streams{mesh="default",api="delta"}'), 1);
    assert.equal(logged('stream closed', (l) => l.proxy === 'default.web' && l.api === 'sotw').length, 1);
  });

  it('a NACK is counted by secret name, shown with Envoy\'s detail in /debug/proxies and logged', async () => {
    const c = new SotwClient(f.server.address, { node: 'default.pay', client: f.channel });
    f.open.push(c);
    c.request(['default', 'ROOTCA']);
    const first = await c.next();
    c.ack(first);
    // The ACK must be in before the rotation: a response sent meanwhile would make it stale.
    const acked = () => [...f.server.registry.streams.values()].some((s) => s.info.proxy === 'default.pay' && s.info.api === 'sotw' && s.info.lastAcked?.nonce === first.nonce);
    await waitFor('the first response ACKed', acked);
    f.server.svids.rotate('default.pay');
    const second = await c.next();
    const nacks = (await f.metric('mesh_sds_nacks_total')) ?? 0;
    const rootca = (await f.metric('mesh_sds_nacked_secrets_total{name="ROOTCA"}')) ?? 0;
    c.nack(second, 'bad certificate: test says no');
    const after = await pollMetric('mesh_sds_nacks_total', (v) => v === nacks + 1);
    assert.equal(after, nacks + 1);
    assert.equal(await f.metric('mesh_sds_nacked_secrets_total{name="ROOTCA"}'), rootca + 1);
    assert.ok(((await f.metric('mesh_sds_nacked_secrets_total{name="default"}')) ?? 0) >= 1);
    const stream = (await f.debug<DebugProxy[]>('proxies')).find((p) => p.node === 'default.pay')!.streams.find((s) => s.api === 'sotw')!;
    assert.equal(stream.lastNack?.detail, 'bad certificate: test says no');
    assert.equal(stream.lastNack?.version, second.version_info);
    assert.equal(stream.lastAcked?.version, first.version_info, 'last ACKed stays the accepted version');
    assert.equal(stream.lastSent?.version, second.version_info);
    assert.equal(logged('proxy rejected a secret (NACK); keeping its last accepted version', (l) => l.detail === 'bad certificate: test says no').length, 1);
  });

  it('a log line and /debug keep only the start of what a client chose to send (a 100,000-character NACK detail)', async () => {
    const c = new SotwClient(f.server.address, { node: 'default.loud', client: f.channel });
    f.open.push(c);
    c.request(['system_trust_bundle']);
    const first = await c.next();
    const long = `bad certificate: ${'z'.repeat(100_000)}`;
    c.nack(first, long);
    const line = await waitFor('the NACK logged', () => logged('proxy rejected a secret (NACK); keeping its last accepted version', (l) => l.proxy === 'default.loud')[0], 5000);
    const detail = String(line.detail);
    assert.ok(detail.length < 2200, `${detail.length} characters logged`);
    assert.ok(detail.startsWith('bad certificate: zzz'));
    assert.match(detail, /\.\.\. \(\d+ more characters\)$/);
    const stream = (await f.debug<DebugProxy[]>('proxies')).find((p) => p.node === 'default.loud')!.streams[0]!;
    assert.equal(stream.lastNack?.detail, detail);
  });

  it('authentication failures are counted by reason', async () => {
    const before = (await f.metric('mesh_sds_stream_auth_failures_total{reason="bad-node-id"}')) ?? 0;
    const c = new SotwClient(f.server.address, { node: 'no-dot-in-this-node-id', client: f.channel });
    f.open.push(c);
    c.request(['default']);
    const end = await c.ended;
    assert.equal(end.code, grpc.status.UNAUTHENTICATED);
    assert.equal(await f.metric('mesh_sds_stream_auth_failures_total{reason="bad-node-id"}'), before + 1);
  });

  it('a rejected resource shows in the store-errors metric and is logged naming its file', async () => {
    f.world.write('broken.yaml', 'type: MeshTrust\nname: broken\nmesh: default\nspec: {}\n');
    try {
      assert.ok((await pollMetric('mesh_sds_resource_errors', (v) => v > 0)) > 0);
      await waitFor('the rejection logged', () => lines.some((l) => String(l.msg).startsWith('resource rejected:') && String(l.file).endsWith('broken.yaml')), 5000);
      assert.ok(((await f.metric('mesh_sds_store_errors{source="directory"}')) ?? 0) > 0);
    } finally {
      f.world.remove('broken.yaml');
    }
    assert.equal(await pollMetric('mesh_sds_resource_errors', (v) => v === 0), 0);
  });
});

async function pollMetric(series: string, ok: (v: number) => boolean, timeoutMs = 5000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = (await f.metric(series)) ?? NaN;
    if (ok(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}
