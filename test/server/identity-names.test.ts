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
import { PATHS, SECRET_TYPE, discoveryRequest, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

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
