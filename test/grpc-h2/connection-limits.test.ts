// What one peer's connections may hold of the process: connections without a stream are closed
// after a while (MaxConnectionIdle), a TLS handshake must finish in time, and connections over the
// cap are closed as they arrive, so file descriptors are left for the store, state and admin.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectHttp2 } from 'node:http2';
import { connect as connectTcp } from 'node:net';
import { once } from 'node:events';
import { GrpcServer, type GrpcServerOptions } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { connectionCapFor, softOpenFilesLimit } from '../../src/server/fd-limit.js';
import { countRefusedStream } from '../../src/server/grpc-h2/sessions.js';
import { registerHealth } from '../../src/server/health-service.js';
import { grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';
import { makeCa } from '../helpers/openssl.js';

const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** /test.Echo/Bidi echoes each message and ends OK on half-close. */
function echoServer(opts: GrpcServerOptions = {}): GrpcServer {
  const server = new GrpcServer(opts);
  servers.push(server);
  server.addBidi('/test.Echo/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    call.listener = { onMessage: (m) => call.write(m), onHalfClose: () => call.end() };
  });
  return server;
}

test('a connection with no open stream for maxConnectionIdleMs gets GOAWAY (NO_ERROR) and is closed; one holding a stream is kept, and closed once its last stream ended', async () => {
  const server = echoServer({ maxConnectionIdleMs: 300 });
  const address = `127.0.0.1:${await server.listen({ host: '127.0.0.1', port: 0 })}`;
  // Sends the preface and answers pings (node does), but opens no stream.
  const idle = connectHttp2(`http://${address}`);
  idle.on('error', () => undefined);
  const busy = rawConnect(address);
  try {
    const goaway = once(idle, 'goaway');
    const call = rawCall(busy, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('hello'))], endAfterBody: false });
    assert.equal(await call.waitForMessages(1, 5000), 1);
    const [code, , data] = (await goaway) as [number, number, Buffer];
    assert.equal(code, 0);
    assert.equal(data?.toString(), 'max_idle');
    if (!idle.destroyed) await once(idle, 'close');
    await sleep(1000);
    assert.equal(busy.destroyed || busy.closed, false, 'a connection holding a stream is not idle');
    const busyGoaway = once(busy, 'goaway');
    call.stream.end();
    await call.ended;
    await busyGoaway;
  } finally {
    idle.destroy();
    busy.destroy();
  }
});

test('a TLS client that never sends its ClientHello is dropped after the handshake timeout', async () => {
  const server = echoServer({ tlsHandshakeTimeoutMs: 300 });
  const ca = makeCa('grpc-h2-handshake');
  const port = (await server.listen({ host: '127.0.0.1', port: 0 }, { cert: Buffer.from(ca.certPem), key: Buffer.from(ca.keyPem) }))!;
  const silent = connectTcp(port, '127.0.0.1');
  silent.on('error', () => undefined);
  try {
    await once(silent, 'connect');
    const closed = once(silent, 'close');
    const timedOut = await Promise.race([closed.then(() => true), sleep(8000).then(() => false)]);
    assert.equal(timedOut, true, 'the silent TLS socket was closed by the server');
  } finally {
    silent.destroy();
  }
});

test('past maxConnections a new connection is closed at once and reported; the open ones keep serving, and a place freed is taken again', async () => {
  const over: string[] = [];
  const server = echoServer({ maxConnections: 2, onConnectionLimit: (peer, limit) => over.push(`${peer} ${limit}`) });
  const address = `127.0.0.1:${await server.listen({ host: '127.0.0.1', port: 0 })}`;
  const a = rawConnect(address);
  const b = rawConnect(address);
  try {
    assert.equal(await rawCall(a, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('a'))], endAfterBody: true }).waitForMessages(1, 5000), 1);
    assert.equal(await rawCall(b, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('b'))], endAfterBody: true }).waitForMessages(1, 5000), 1);
    const third = connectTcp(Number(address.split(':')[1]), '127.0.0.1');
    third.on('error', () => undefined);
    await once(third, 'close');
    assert.deepEqual(over, ['127.0.0.1 2']);
    assert.equal(await rawCall(a, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('again'))], endAfterBody: true }).waitForMessages(1, 5000), 1);
    b.destroy();
    await sleep(200);
    const c = rawConnect(address);
    assert.equal(await rawCall(c, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('c'))], endAfterBody: true }).waitForMessages(1, 5000), 1);
    c.destroy();
  } finally {
    a.destroy();
    b.destroy();
  }
});

test('the default connection cap leaves descriptors for everything else: the soft open-file limit minus 1,024 (a quarter of a small one), at least 64; none when unknown', () => {
  const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                1048576              files\n`;
  assert.equal(softOpenFilesLimit(limits('20000')), 20000);
  assert.equal(softOpenFilesLimit(limits('unlimited')), undefined);
  assert.equal(softOpenFilesLimit('garbage'), undefined);
  assert.equal(connectionCapFor(20000), 18976);
  assert.equal(connectionCapFor(1024), 768);
  assert.equal(connectionCapFor(100), 75);
  assert.equal(connectionCapFor(10), 64);
  assert.equal(connectionCapFor(undefined), undefined);
});

test('a connection whose streams are refused past maxRefusedStreamsPerWindow gets GOAWAY ENHANCE_YOUR_CALM and is reported once; other connections are untouched', async () => {
  const reported: number[] = [];
  const server = echoServer({ maxRefusedStreamsPerWindow: 20, onTooManyRefusedStreams: (_peer, n) => reported.push(n) });
  const address = `127.0.0.1:${await server.listen({ host: '127.0.0.1', port: 0 })}`;
  const flood = rawConnect(address);
  const other = rawConnect(address);
  try {
    const goaway = once(flood, 'goaway');
    const refused = [];
    for (let i = 0; i < 30; i++) refused.push(rawCall(flood, '/no.Such/Method', { body: [grpcFrame(Buffer.from('x'))], endAfterBody: true }).ended);
    const [code, , data] = (await goaway) as [number, number, Buffer];
    assert.equal(code, 11);
    assert.equal(data?.toString(), 'too_many_refused_streams');
    await Promise.all(refused);
    assert.deepEqual(reported, [21]);
    assert.equal(await rawCall(other, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('y'))], endAfterBody: true }).waitForMessages(1, 5000), 1);
  } finally {
    flood.destroy();
    other.destroy();
  }
});

test('streams that are refused (a peer without a valid token) do not keep a connection from being idle: one opening a refused stream every 100 ms still gets GOAWAY max_idle, so one peer cannot hold every connection place', async () => {
  const server = new GrpcServer({ maxConnectionIdleMs: 500 });
  servers.push(server);
  server.addBidi('/test.Auth/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    // As the xDS streams refuse a stream whose token fails.
    countRefusedStream(call.stream);
    call.end({ code: 16, details: 'no token' });
  });
  const address = `127.0.0.1:${await server.listen({ host: '127.0.0.1', port: 0 })}`;
  const session = rawConnect(address);
  try {
    const goaway = once(session, 'goaway').then(([code, , data]) => `${String(code)} ${String(data)}`);
    let sent = 0;
    const knock = setInterval(() => {
      if (session.closed || session.destroyed) return;
      sent++;
      rawCall(session, '/test.Auth/Bidi', { body: [grpcFrame(Buffer.from('x'))] }).ended.catch(() => undefined);
    }, 100);
    const outcome = await Promise.race([goaway, sleep(3000).then(() => 'no goaway')]);
    clearInterval(knock);
    assert.equal(outcome, '0 max_idle', `after ${sent} refused streams`);
  } finally {
    session.destroy();
  }
});

test('a connection holding a served stream stays open while refused streams come and go on it, and is idle once that stream ends', async () => {
  const server = echoServer({ maxConnectionIdleMs: 500 });
  server.addBidi('/test.Auth/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    countRefusedStream(call.stream);
    call.end({ code: 16, details: 'no token' });
  });
  const address = `127.0.0.1:${await server.listen({ host: '127.0.0.1', port: 0 })}`;
  const session = rawConnect(address);
  try {
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    const served = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('hello'))], endAfterBody: false });
    assert.equal(await served.waitForMessages(1, 5000), 1);
    const knock = setInterval(() => rawCall(session, '/test.Auth/Bidi', { body: [grpcFrame(Buffer.from('x'))] }).ended.catch(() => undefined), 100);
    await sleep(1500);
    clearInterval(knock);
    assert.equal(goaway, false, 'kept while its served stream is open');
    const idle = once(session, 'goaway');
    served.stream.end();
    await served.ended;
    await idle;
  } finally {
    session.destroy();
  }
});

test('health Watches, which need no token, do not keep a connection open: one holding only Watches gets GOAWAY max_idle, one also holding a served stream is kept', async () => {
  const server = echoServer({ maxConnectionIdleMs: 500 });
  registerHealth(server, [], () => true);
  const address = `127.0.0.1:${await server.listen({ host: '127.0.0.1', port: 0 })}`;
  const watchOnly = rawConnect(address);
  const serving = rawConnect(address);
  try {
    let servingGoaway = false;
    serving.on('goaway', () => (servingGoaway = true));
    const served = rawCall(serving, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('hello'))], endAfterBody: false });
    assert.equal(await served.waitForMessages(1, 5000), 1);
    const goaway = once(watchOnly, 'goaway').then(([code, , data]) => `${String(code)} ${String(data)}`);
    const watches = [watchOnly, watchOnly, serving].map((s) => rawCall(s, '/grpc.health.v1.Health/Watch', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true }));
    for (const w of watches) assert.equal(await w.waitForMessages(1, 5000), 1, 'each Watch is answered SERVING');
    assert.equal(await Promise.race([goaway, sleep(3000).then(() => 'no goaway')]), '0 max_idle', 'a connection of Watches alone is idle');
    await sleep(1000);
    assert.equal(servingGoaway, false, 'the connection with a served stream is kept beside its Watch');
  } finally {
    watchOnly.destroy();
    serving.destroy();
  }
});
