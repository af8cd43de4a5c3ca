// What one proxy, and one connection, may hold of the server's streams, over real loopback
// connections to a real server.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { MAX_STREAMS_PER_PROXY } from '../../src/server/xds-streams.js';
import { discoveryRequest, field, grpcFrame, PATHS, rawCall, rawConnect, SECRET_TYPE } from '../helpers/raw-grpc.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-stream-limits-'));
await cp('examples/quickstart', join(root, 'resources'), { recursive: true });
let server: Awaited<ReturnType<typeof startServer>>;
let address = '';
before(async () => {
  server = await startServer({ resourcesDir: join(root, 'resources'), stateDir: join(root, 'state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', logger: createLogger('silent') });
  await server.ready;
  address = server.address;
});
after(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

const open = (session: ReturnType<typeof rawConnect>, node: string) =>
  rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ node, names: ['system_trust_bundle'], typeUrl: SECRET_TYPE }))] });

test(`one proxy holds at most ${MAX_STREAMS_PER_PROXY} streams: the next is RESOURCE_EXHAUSTED naming the limit, other proxies on the same connection are served, and a closed stream frees its place`, async () => {
  const session = rawConnect(address);
  try {
    const calls = [];
    for (let i = 0; i < MAX_STREAMS_PER_PROXY; i++) calls.push(open(session, 'default.backend-1'));
    await Promise.all(calls.map((c) => c.waitForMessages(1, 10_000)));
    const over = open(session, 'default.backend-1');
    const end = await over.ended;
    assert.equal(end.code, 8, 'RESOURCE_EXHAUSTED');
    assert.match(end.message, new RegExp(`limit \\(${MAX_STREAMS_PER_PROXY} per proxy\\)`));
    const other = open(session, 'default.frontend-1');
    assert.equal(await other.waitForMessages(1, 10_000), 1, 'another proxy is not affected');
    calls[0]!.stream.close();
    await calls[0]!.ended;
    await new Promise((r) => setTimeout(r, 100));
    const again = open(session, 'default.backend-1');
    assert.equal(await again.waitForMessages(1, 10_000), 1, 'the closed stream gave its place back');
  } finally {
    session.destroy();
  }
});

const fetch = (session: ReturnType<typeof rawConnect>, node: string, name: string) =>
  rawCall(session, PATHS.FetchSecrets, { body: [grpcFrame(discoveryRequest({ node, names: [name], typeUrl: SECRET_TYPE }))], endAfterBody: true });

test(`FetchSecrets calls waiting for a name count toward the proxy's ${MAX_STREAMS_PER_PROXY}: the next is RESOURCE_EXHAUSTED at once, other proxies are answered, and a cancelled call frees its place`, async () => {
  const session = rawConnect(address);
  try {
    // A valid name no MeshTrust serves: each call waits (5 s) for it to appear. Before, one proxy
    // held as many such calls as its connections could carry (4,000 on two: 34 MB of heap).
    const waiting = Array.from({ length: MAX_STREAMS_PER_PROXY }, () => fetch(session, 'default.fetcher-1', 'spiffe://nowhere.example'));
    await new Promise((r) => setTimeout(r, 500));
    const over = await fetch(session, 'default.fetcher-1', 'system_trust_bundle').ended;
    assert.equal(over.code, 8, `RESOURCE_EXHAUSTED, got ${over.code} ${over.message}`);
    assert.match(over.message, new RegExp(`limit \\(${MAX_STREAMS_PER_PROXY} per proxy\\)`));
    const other = await fetch(session, 'default.frontend-1', 'system_trust_bundle').ended;
    assert.equal(other.code, 0, `another proxy is answered: ${other.message}`);
    waiting[0]!.stream.close();
    await waiting[0]!.ended;
    await new Promise((r) => setTimeout(r, 100));
    const again = await fetch(session, 'default.fetcher-1', 'system_trust_bundle').ended;
    assert.equal(again.code, 0, `the cancelled call gave its place back: ${again.message}`);
  } finally {
    session.destroy();
  }
});

test(`calls one token opens without sending a request count toward its ${MAX_STREAMS_PER_PROXY}: the next call is RESOURCE_EXHAUSTED at once, another token is served, and a closed call frees its place`, async () => {
  const root2 = await mkdtemp(join(tmpdir(), 'mesh-sds-token-limits-'));
  await cp('examples/quickstart', join(root2, 'resources'), { recursive: true });
  const tokenServer = await startServer({ resourcesDir: join(root2, 'resources'), stateDir: join(root2, 'state'), listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') });
  const session = rawConnect(tokenServer.address);
  try {
    await tokenServer.ready;
    const token = await tokenServer.tokens!.generate({ mesh: 'default', name: 'backend-1.shop', validForMs: 3600_000 });
    const other = await tokenServer.tokens!.generate({ mesh: 'default', name: 'frontend-1.shop', validForMs: 3600_000 });
    const call = (t: string, body?: Buffer[]) => rawCall(session, PATHS.StreamSecrets, { headers: { authorization: `Bearer ${t}` }, body });
    // Admitted on the token alone, and silent: before, one token held 10,000 of them on two
    // connections (+148 MB RSS) for the first-request timeout, and opened them again after it.
    const silent = Array.from({ length: MAX_STREAMS_PER_PROXY }, () => call(token));
    await new Promise((r) => setTimeout(r, 500));
    const over = await Promise.race([call(token).ended, new Promise<{ code: number; message: string }>((r) => setTimeout(() => r({ code: -1, message: 'still open after 3 s' }), 3000))]);
    assert.equal(over.code, 8, `RESOURCE_EXHAUSTED, got ${over.code} ${over.message}`);
    assert.match(over.message, new RegExp(`^this token already has ${MAX_STREAMS_PER_PROXY} calls open, the limit \\(${MAX_STREAMS_PER_PROXY} per token\\)$`));
    const served = call(other, [grpcFrame(discoveryRequest({ node: 'default.frontend-1.shop', names: ['system_trust_bundle'], typeUrl: SECRET_TYPE }))]);
    assert.equal(await served.waitForMessages(1, 10_000), 1, 'another token is served');
    silent[0]!.stream.close();
    await silent[0]!.ended;
    await new Promise((r) => setTimeout(r, 100));
    const again = call(token, [grpcFrame(discoveryRequest({ node: 'default.backend-1.shop', names: ['system_trust_bundle'], typeUrl: SECRET_TYPE }))]);
    assert.equal(await again.waitForMessages(1, 10_000), 1, 'the closed call gave its place back');
  } finally {
    session.destroy();
    await tokenServer.close();
    await rm(root2, { recursive: true, force: true });
  }
});

test('one token cannot take the unfinished-request budget every proxy needs: past its share its calls get RESOURCE_EXHAUSTED, and another proxy\'s request spanning DATA frames is still read', async () => {
  const root2 = await mkdtemp(join(tmpdir(), 'mesh-sds-token-budget-'));
  await cp('examples/quickstart', join(root2, 'resources'), { recursive: true });
  const tokenServer = await startServer({ resourcesDir: join(root2, 'resources'), stateDir: join(root2, 'state'), listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('silent') });
  const sessions = Array.from({ length: 5 }, () => rawConnect(tokenServer.address));
  try {
    await tokenServer.ready;
    const token = await tokenServer.tokens!.generate({ mesh: 'default', name: 'backend-1.shop', validForMs: 3600_000 });
    const other = await tokenServer.tokens!.generate({ mesh: 'default', name: 'frontend-1.shop', validForMs: 3600_000 });
    // 16 streams on each of 4 connections (the token's 64), each all but the end of a 1 MiB request:
    // before, this one token held the server's whole 64 MiB of unfinished requests.
    const hoarders = sessions.slice(0, 4).flatMap((session) =>
      Array.from({ length: 16 }, () => {
        const call = rawCall(session, PATHS.StreamSecrets, { headers: { authorization: `Bearer ${token}` } });
        const head = Buffer.alloc(5);
        head.writeUInt32BE(1024 * 1024, 1);
        call.stream.write(Buffer.concat([head, Buffer.alloc(1_048_000)]));
        return call;
      }),
    );
    await new Promise((r) => setTimeout(r, 1000));
    // Envoy's first request carries its node (its extensions list alone is tens of KB): more than one DATA frame.
    const node = Buffer.concat([field(1, 'default.frontend-1.shop'), field(2, 'x'.repeat(60_000))]);
    const big = Buffer.concat([field(2, node), discoveryRequest({ names: ['system_trust_bundle'], typeUrl: SECRET_TYPE })]);
    const sds = rawCall(sessions[4]!, PATHS.StreamSecrets, { headers: { authorization: `Bearer ${other}` }, body: [grpcFrame(big)] });
    const answered = await Promise.race([sds.waitForMessages(1, 5000).then(() => 'answered'), sds.ended.then((e) => `ended ${e.code} ${e.message}`)]);
    assert.equal(answered, 'answered');
    const ends = await Promise.all(hoarders.map((c) => Promise.race([c.ended, new Promise<undefined>((r) => setImmediate(() => r(undefined)))])));
    const refused = ends.filter((e) => e?.code === 8);
    assert.ok(refused.length > 0, 'the token\'s calls past its share are refused');
    assert.match(refused[0]!.message, /this token holds \d+(\.\d+)? MiB of unfinished request messages/);
  } finally {
    for (const session of sessions) session.destroy();
    await tokenServer.close();
    await rm(root2, { recursive: true, force: true });
  }
});
