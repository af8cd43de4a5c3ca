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
