// grpc.health.v1.Health on a real server: known and unknown service names, and a Watch told of
// the drain as it begins.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { field, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-health-'));
after(() => rm(root, { recursive: true, force: true }));
await cp('examples/quickstart', join(root, 'resources'), { recursive: true });
const start = () => startServer({ resourcesDir: join(root, 'resources'), stateDir: join(root, 'state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent') });
/** HealthCheckRequest { service }, gRPC-framed. */
const request = (service: string) => grpcFrame(service === '' ? Buffer.alloc(0) : field(1, service));
/** The status of each HealthCheckResponse in a response body. */
function statuses(body: Buffer): number[] {
  const out: number[] = [];
  for (let pos = 0; pos + 5 <= body.length; ) {
    const len = body.readUInt32BE(pos + 1);
    out.push(body[pos + 5 + 1]!);
    pos += 5 + len;
  }
  return out;
}

test('Check: the server ("") and the services it serves are SERVING; an unknown service is NOT_FOUND', async () => {
  const s = await start();
  const session = rawConnect(s.address);
  try {
    await s.ready;
    for (const service of ['', 'envoy.service.secret.v3.SecretDiscoveryService', 'envoy.service.discovery.v3.AggregatedDiscoveryService']) {
      const call = rawCall(session, '/grpc.health.v1.Health/Check', { body: [request(service)], endAfterBody: true });
      const bytes: Buffer[] = [];
      call.stream.on('data', (b: Buffer) => bytes.push(b));
      const end = await call.ended;
      assert.equal(end.code, 0, service);
      assert.deepEqual(statuses(Buffer.concat(bytes)), [1], `${service}: SERVING`);
    }
    const unknown = await rawCall(session, '/grpc.health.v1.Health/Check', { body: [request('no.such.Service')], endAfterBody: true }).ended;
    assert.equal(unknown.code, 5, 'NOT_FOUND');
    const watch = rawCall(session, '/grpc.health.v1.Health/Watch', { body: [request('no.such.Service')], endAfterBody: true });
    const bytes: Buffer[] = [];
    watch.stream.on('data', (b: Buffer) => bytes.push(b));
    await watch.waitForMessages(1, 5000);
    assert.deepEqual(statuses(Buffer.concat(bytes)), [3], 'Watch of an unknown service: SERVICE_UNKNOWN');
  } finally {
    session.destroy();
    await s.close();
  }
});

test('Watch is sent NOT_SERVING as soon as the drain begins, before its connection goes', async () => {
  const s = await start();
  const session = rawConnect(s.address);
  let closing: Promise<void> | undefined;
  try {
    await s.ready;
    const watch = rawCall(session, '/grpc.health.v1.Health/Watch', { body: [request('')], endAfterBody: true });
    const bytes: Buffer[] = [];
    watch.stream.on('data', (b: Buffer) => bytes.push(b));
    await watch.waitForMessages(1, 5000);
    closing = s.close(2000);
    await watch.waitForMessages(2, 5000);
    assert.deepEqual(statuses(Buffer.concat(bytes)), [1, 2], 'SERVING, then NOT_SERVING');
  } finally {
    session.destroy();
    await (closing ?? s.close());
  }
});

test('health calls, open to anyone, cannot take the unfinished-request budget proxies need: an oversized health request is refused from its prefix, and an SDS request split over frames is still read', async () => {
  const s = await start();
  const sessions = Array.from({ length: 5 }, () => rawConnect(s.address));
  try {
    await s.ready;
    // 16 Watch calls per connection (the most one may hold), each all but the end of a 1 MiB
    // request: before, 4 such connections held the server's whole 64 MiB of unfinished requests.
    const hoarders = sessions.flatMap((session) =>
      Array.from({ length: 16 }, () => {
        const call = rawCall(session, '/grpc.health.v1.Health/Watch');
        const head = Buffer.alloc(5);
        head.writeUInt32BE(1024 * 1024, 1);
        call.stream.write(Buffer.concat([head, Buffer.alloc(1000 * 1000)]));
        return call;
      }),
    );
    await new Promise((r) => setTimeout(r, 1000));
    // Envoy's first request carries its node (its extensions list alone is tens of KB): more than one DATA frame.
    const victim = rawConnect(s.address);
    sessions.push(victim);
    const node = Buffer.concat([field(1, 'default.backend-1'), field(2, 'x'.repeat(40_000))]);
    const sds = rawCall(victim, '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', {
      body: [grpcFrame(Buffer.concat([field(2, node), field(3, 'system_trust_bundle'), field(4, 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret')]))],
    });
    const answered = await Promise.race([sds.waitForMessages(1, 5000).then(() => 'answered'), sds.ended.then((e) => `ended ${e.code} ${e.message}`)]);
    assert.equal(answered, 'answered');
    const refused = await Promise.race([hoarders[0]!.ended, new Promise<{ code: number; message: string }>((r) => setImmediate(() => r({ code: -1, message: 'still open' })))]);
    assert.equal(refused.code, 8, `RESOURCE_EXHAUSTED, got ${refused.code} ${refused.message}`);
    assert.match(refused.message, /larger than max/);
  } finally {
    for (const session of sessions) session.destroy();
    await s.close();
  }
});
