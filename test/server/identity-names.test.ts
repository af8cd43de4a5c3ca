// A stream that names its identity by KRI or SPIFFE ID (envoy-configs do, as Kuma does) gets nothing
// once the proxy's Dataplane matches another MeshIdentity: Envoy keeps its last certificate until it
// expires. The server cannot rename Envoy's secret, so it says so, naming the identity to ask for.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { PATHS, SECRET_TYPE, discoveryRequest, field, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-identity-names-'));
after(() => rm(root, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a stream holding the KRI of the identity its proxy no longer has is warned about once, naming the KRI and SPIFFE ID it has now; a stream asking for "default" follows the move', async () => {
  const lines: string[] = [];
  const logger = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(...c.toString('utf8').split('\n').filter(Boolean)), cb()) }) });
  const resourcesDir = join(root, 'resources');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, 'state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', admin: '127.0.0.1:0', logger });
  const session = rawConnect(s.address);
  try {
    await s.ready;
    const node = 'default.frontend-1.shop';
    const kri = 'kri_mid_default_default_kuma-system_identity_';
    const byKri = rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node, names: [kri] }))] });
    const byDefault = rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node, names: ['default'] }))] });
    await byKri.waitForMessages(1, 5000);
    await byDefault.waitForMessages(1, 5000);
    const warned = () => lines.filter((l) => l.includes("stream asks for an identity that is not this proxy's"));
    assert.deepEqual(warned(), [], 'nothing to say while the KRI is the proxy\'s');

    const file = join(resourcesDir, 'dataplanes.yaml');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('app: frontend', 'app: payments'));
    await byDefault.waitForMessages(2, 10_000); // the new identity reaches the stream that asked for "default"
    for (let i = 0; i < 200 && warned().length === 0; i++) await sleep(25);
    const [line, ...more] = warned();
    assert.ok(line, 'the held KRI is named');
    const parsed = JSON.parse(line) as { msg: string; names: string[]; identity: string; spiffeId: string; proxy: string; servedBefore: boolean };
    assert.deepEqual(parsed.names, [kri]);
    assert.equal(parsed.proxy, node);
    assert.equal(parsed.identity, 'kri_mid_default_default_kuma-system_payments_');
    assert.match(parsed.spiffeId, /^spiffe:\/\/payments\.mesh\.local\//);
    assert.equal(parsed.servedBefore, true);
    assert.match(parsed.msg, /it is kri_mid_default_default_kuma-system_payments_, spiffe:\/\/payments\.mesh\.local\/[^)]*\): held, and the proxy keeps the certificate it has until it expires; ask for "default"/);
    await sleep(300);
    assert.deepEqual(more, [], 'said once, not on every resolution');
    byKri.stream.close();
    byDefault.stream.close();
  } finally {
    session.close();
    await s.close();
  }
});

test('a delta stream holding many KRIs of another identity is warned about with the first 16 of them and their count, however many requests change its names', async () => {
  const lines: string[] = [];
  const logger = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(...c.toString('utf8').split('\n').filter(Boolean)), cb()) }) });
  const resourcesDir = join(root, 'resources-many');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, 'state-many'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger });
  const session = rawConnect(s.address);
  try {
    await s.ready;
    const delta = (sub: string[], unsub: string[] = [], node?: string) =>
      grpcFrame(Buffer.concat([node ? field(1, field(1, node)) : Buffer.alloc(0), field(2, SECRET_TYPE), ...sub.map((n) => field(3, n)), ...unsub.map((n) => field(4, n))]));
    // 900 valid KRIs of the proxy's mesh and zone that are not its identity: held, each a long name
    // (a name segment as long as a resource name can be).
    const kris = Array.from({ length: 900 }, (_, i) => `kri_mid_default_default_shop_${'a'.repeat(250)}${i}_`);
    const call = rawCall(session, PATHS.DeltaSecrets, { body: [delta(['default'], [], 'default.backend-1.shop')] });
    await call.waitForMessages(1, 10_000);
    for (let i = 0; i < kris.length; i += 300) call.stream.write(delta(kris.slice(i, i + 300)));
    // Each request changes the names (the plan is made again); the warning is made once.
    for (let i = 0; i < 200; i++) call.stream.write(i % 2 === 0 ? delta(['system_trust_bundle']) : delta([], ['system_trust_bundle']));
    call.stream.write(delta(['ALL']));
    await call.waitForMessages(2, 60_000);
    const warned = lines.filter((l) => l.includes("stream asks for an identity that is not this proxy's"));
    assert.equal(warned.length, 1, 'said once');
    const parsed = JSON.parse(warned[0]!) as { names: string[]; namesCount: number };
    // Logged when the first 300 arrived; the rest are suppressed repeats (one per window).
    assert.equal(parsed.namesCount, 300);
    assert.equal(parsed.names.length, 16, 'a line lists the first 16 names, not hundreds of 2,000 characters');
    call.stream.close();
  } finally {
    session.close();
    await s.close();
  }
});
