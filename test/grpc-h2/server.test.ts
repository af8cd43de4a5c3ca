// The gRPC transport on raw HTTP/2, seen from raw node:http2 clients (a gRPC library would hide
// the framing, the trailers-only answers and the keepalive traffic).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectHttp2 } from 'node:http2';
import { connect as connectTcp, type Socket } from 'node:net';
import { once } from 'node:events';
import { connect as connectTls } from 'node:tls';
import { GrpcServer, type GrpcServerOptions } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { Status } from '../../src/server/grpc-h2/status.js';
import { grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';
import { makeCa } from '../helpers/openssl.js';
import { frame, FrameType, grpcRequestHeaders, rawH2Connect } from '../helpers/raw-h2-frames.js';

const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));

interface Seen {
  cancels: number;
  /** Messages the server read, and the status the transport ended a call with (onCancel's). */
  messages: number;
  cancelStatus?: { code: number; details: string };
  headers: string[][];
  refused: string[];
}

/** A server whose /test.Echo/Bidi echoes each message and ends OK on half-close ('fail:CODE:text' ends with that status). */
async function echoServer(opts: GrpcServerOptions = {}): Promise<{ address: string; server: GrpcServer; seen: Seen }> {
  const seen: Seen = { cancels: 0, messages: 0, headers: [], refused: [] };
  const server = new GrpcServer({ ...opts, onRefusedHeader: (name) => seen.refused.push(name) });
  servers.push(server);
  server.addBidi('/test.Echo/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    seen.headers.push(call.headerValues('x-token'));
    call.listener = {
      onMessage(m) {
        seen.messages++;
        // 'flood:N:SIZE' writes N responses of SIZE bytes at once (pushes the client did not ask for).
        const flood = /^flood:(\d+):(\d+)$/.exec(m.toString());
        if (flood) {
          for (let i = 0; i < Number(flood[1]); i++) call.write(Buffer.alloc(Number(flood[2]), 0x66));
          return;
        }
        const fail = /^fail:(\d+):(.*)$/s.exec(m.toString());
        if (fail) return call.end({ code: Number(fail[1]) as Status, details: fail[2]! });
        call.write(m);
      },
      onHalfClose: () => call.end(),
      onCancel: (status) => {
        seen.cancels++;
        seen.cancelStatus = status;
      },
    };
  });
  server.addSingleRequest('/test.Echo/Unary', bytes, (call, request) => {
    call.write(request);
    call.end();
  });
  const port = await server.listen({ host: '127.0.0.1', port: 0 });
  return { address: `127.0.0.1:${port}`, server, seen };
}

test('several messages in one DATA frame and one message split over many frames are each echoed once', async () => {
  const { address } = await echoServer();
  const session = rawConnect(address);
  try {
    const burst = rawCall(session, '/test.Echo/Bidi', { body: [Buffer.concat([grpcFrame(Buffer.from('a')), grpcFrame(Buffer.from('bb')), grpcFrame(Buffer.from('ccc'))])] });
    assert.equal(await burst.waitForMessages(3, 5000), 3);
    const split = rawCall(session, '/test.Echo/Bidi');
    const frame = grpcFrame(Buffer.alloc(40_000, 0x62));
    // Separate writes a tick apart: separate DATA frames, cut inside the prefix and the body.
    for (const [from, to] of [[0, 2], [2, 7], [7, 20_000], [20_000, frame.length]] as const) {
      split.stream.write(frame.subarray(from, to));
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await split.waitForMessages(1, 5000), 1);
    split.stream.end();
    const end = await split.ended;
    assert.equal(end.code, Status.OK);
    assert.equal(split.received, 1);
    burst.stream.end();
    assert.equal((await burst.ended).code, Status.OK);
  } finally {
    session.destroy();
  }
});

test('oversized and compressed messages, unknown methods, wrong content-type and method get the answers gRPC prescribes', async () => {
  const { address } = await echoServer({ maxMessageBytes: 1024 });
  const session = rawConnect(address);
  try {
    const big = await rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.alloc(2000))] }).ended;
    assert.equal(big.code, Status.RESOURCE_EXHAUSTED);
    assert.equal(big.message, 'Received message larger than max (2000 vs. 1024)');
    const compressedFrame = grpcFrame(Buffer.from('x'));
    compressedFrame[0] = 1;
    const compressed = await rawCall(session, '/test.Echo/Bidi', { headers: { 'grpc-encoding': 'gzip' }, body: [compressedFrame] }).ended;
    assert.equal(compressed.code, Status.UNIMPLEMENTED);
    assert.match(compressed.message, /compressed messages are not supported/);
    const unknown = await rawCall(session, '/test.Echo/Nope', { body: [grpcFrame(Buffer.from('x'))] }).ended;
    assert.deepEqual([unknown.httpStatus, unknown.code, unknown.message], [200, Status.UNIMPLEMENTED, 'The server does not implement the method /test.Echo/Nope']);
    const json = await rawCall(session, '/test.Echo/Bidi', { headers: { 'content-type': 'application/json' } }).ended;
    assert.deepEqual([json.httpStatus, json.code], [415, undefined]);
    const get = await rawCall(session, '/test.Echo/Bidi', { headers: { ':method': 'GET' }, endAfterBody: true }).ended;
    assert.equal(get.httpStatus, 405);
    // The connection survived all of it.
    const ok = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('still here'))] });
    assert.equal(await ok.waitForMessages(1, 5000), 1);
    ok.stream.end();
    assert.equal((await ok.ended).code, Status.OK);
  } finally {
    session.destroy();
  }
});

test('a message flagged compressed without a grpc-encoding (or with identity) ends the call with INTERNAL, as PROTOCOL-HTTP2 prescribes; with an unsupported encoding UNIMPLEMENTED naming it', async () => {
  const { address } = await echoServer({ maxMessageBytes: 1024 });
  const session = rawConnect(address);
  try {
    const frame = () => {
      const f = grpcFrame(Buffer.from('x'));
      f[0] = 1;
      return f;
    };
    for (const headers of [{}, { 'grpc-encoding': 'identity' }]) {
      const bad = await rawCall(session, '/test.Echo/Bidi', { headers, body: [frame()] }).ended;
      assert.equal(bad.code, Status.INTERNAL, JSON.stringify(headers));
      assert.match(bad.message, /compressed flag set .*grpc-encoding/);
    }
    const gzip = await rawCall(session, '/test.Echo/Bidi', { headers: { 'grpc-encoding': 'gzip' }, body: [frame()] }).ended;
    assert.equal(gzip.code, Status.UNIMPLEMENTED);
    assert.match(gzip.message, /"gzip"/);
    // An uncompressed message under a grpc-encoding header is fine (compression is per message).
    const ok = rawCall(session, '/test.Echo/Bidi', { headers: { 'grpc-encoding': 'gzip' }, body: [grpcFrame(Buffer.from('plain'))] });
    assert.equal(await ok.waitForMessages(1, 5000), 1);
    ok.stream.end();
    assert.equal((await ok.ended).code, Status.OK);
  } finally {
    session.destroy();
  }
});

test('content-type: application/grpc, application/grpc+<subtype> and application/grpc;<params> are served; application/grpc-web, application/grpcfoo and the like get HTTP 415 saying what is accepted, as grpc-go answers', async () => {
  const { address } = await echoServer();
  const session = rawConnect(address);
  try {
    for (const contentType of ['application/grpc-web', 'application/grpc-web+proto', 'application/grpc-web-text', 'application/grpcfoo', 'text/plain']) {
      const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Bidi', 'content-type': contentType, te: 'trailers' });
      stream.end(grpcFrame(Buffer.from('x')));
      const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
      let body = '';
      stream.setEncoding('utf8').on('data', (c: string) => (body += c));
      await once(stream, 'close');
      assert.equal(headers[':status'], 415, contentType);
      assert.match(body, /content-type: .*application\/grpc\+<subtype>/, contentType);
    }
    for (const contentType of ['application/grpc', 'application/grpc+proto', 'application/grpc;charset=utf-8']) {
      const ok = rawCall(session, '/test.Echo/Bidi', { headers: { 'content-type': contentType }, body: [grpcFrame(Buffer.from('hi'))] });
      assert.equal(await ok.waitForMessages(1, 5000), 1, contentType);
      ok.stream.end();
      assert.equal((await ok.ended).code, Status.OK, contentType);
    }
  } finally {
    session.destroy();
  }
});

test('a 415 answer to a client that never opens its receive window still ends the stream: a wrong content-type cannot hold a stream open', async () => {
  const { address } = await echoServer();
  const session = connectHttp2(`http://${address}`, { settings: { initialWindowSize: 0 } });
  session.on('error', () => undefined);
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Bidi', 'content-type': 'application/grpc-web', te: 'trailers' });
    stream.on('error', () => undefined);
    stream.end(grpcFrame(Buffer.from('x')));
    const closed = once(stream, 'close').then(() => true);
    assert.equal(await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000, false))]), true, 'the stream was closed by the server');
  } finally {
    session.destroy();
  }
});

test('unfinished request messages are held up to a server-wide budget: past it a call adding to them gets RESOURCE_EXHAUSTED, whole requests still pass, and a closed call gives its share back', async () => {
  const { address } = await echoServer({ maxMessageBytes: 256 * 1024, maxUnfinishedRequestBytes: 256 * 1024 });
  const session = rawConnect(address);
  try {
    // All but the last byte of a 100 KiB message, twice: 200 KiB held.
    const partial = () => grpcFrame(Buffer.alloc(100 * 1024, 0x61)).subarray(0, 5 + 100 * 1024 - 1);
    const held = [rawCall(session, '/test.Echo/Bidi', { body: [partial()] }), rawCall(session, '/test.Echo/Bidi', { body: [partial()] })];
    await new Promise((r) => setTimeout(r, 200));
    const thirdCall = rawCall(session, '/test.Echo/Bidi', { body: [partial()] });
    const third = await Promise.race([thirdCall.ended, new Promise<{ code: string; message: string }>((r) => setTimeout(() => r({ code: 'still held after 3 s', message: '' }), 3000))]);
    assert.equal(third.code, Status.RESOURCE_EXHAUSTED);
    assert.match(third.message, /unfinished request messages/);
    // A request sent whole is read at once and holds nothing.
    const whole = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('whole'))] });
    assert.equal(await whole.waitForMessages(1, 5000), 1);
    whole.stream.end();
    // The held calls end (the client resets them): their share returns, and a partial message fits again.
    for (const h of held) h.stream.close();
    await Promise.all(held.map((h) => h.ended));
    await new Promise((r) => setTimeout(r, 100));
    const again = rawCall(session, '/test.Echo/Bidi', { body: [partial()] });
    const outcome = await Promise.race([again.ended.then((e) => e.code), new Promise((r) => setTimeout(() => r('held'), 500))]);
    assert.equal(outcome, 'held');
    again.stream.close();
  } finally {
    session.destroy();
  }
});

test('each connection holds at most a quarter of the server\'s unfinished budget, so one peer cannot take it all; past twice the largest message, its messages that stall are ended sooner; any stalled message is ended after the timeout', async () => {
  const { address, server } = await echoServer({
    maxMessageBytes: 128 * 1024,
    maxUnfinishedRequestBytes: 4 * 1024 * 1024,
    keepaliveTimeMs: 400,
    keepaliveTimeoutMs: 400,
    // Room for a loaded machine (300 ms and 2.5 s were judged too close to each other there).
    unfinishedMessageTimeoutMs: 5000,
    crowdedUnfinishedMessageTimeoutMs: 1000,
  });
  const partial = () => grpcFrame(Buffer.alloc(100 * 1024, 0x61)).subarray(0, 5 + 100 * 1024 - 1);
  const endOf = (call: { ended: Promise<{ code?: number; message: string }> }, ms: number) =>
    Promise.race([call.ended, new Promise<{ code: string; message: string }>((r) => setTimeout(() => r({ code: 'not ended', message: '' }), ms))]);
  const first = rawConnect(address);
  const second = rawConnect(address);
  try {
    // 1 MiB per connection: ten 100 KiB partial messages fit, the eleventh is refused.
    const crowded = Array.from({ length: 10 }, () => rawCall(first, '/test.Echo/Bidi', { body: [partial()] }));
    // Every byte of them in before the next call (a fixed 100 ms was not enough on a loaded machine).
    const until = Date.now() + 10_000;
    while (server.unfinishedRequestBytes < 10 * (100 * 1024 - 1) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    const over = await endOf(rawCall(first, '/test.Echo/Bidi', { body: [partial()] }), 2000);
    assert.equal(over.code, Status.RESOURCE_EXHAUSTED);
    assert.match(over.message, /this connection holds 1 MiB of unfinished request messages/);
    // Two stalled messages (200 KiB, within twice the largest) on another connection are held on.
    const calm = [rawCall(second, '/test.Echo/Bidi', { body: [partial()] }), rawCall(second, '/test.Echo/Bidi', { body: [partial()] })];
    // The crowded connection's stalled messages are ended at the crowded timeout.
    for (const call of crowded) {
      const end = await endOf(call, 4000);
      assert.equal(end.code, Status.DEADLINE_EXCEEDED);
      assert.match(end.message, /a request message got no further bytes for 1 s/);
    }
    assert.equal((await endOf(calm[0]!, 100)).code, 'not ended', 'within its stalled limit, a connection keeps its messages longer');
    // And every unfinished message that gets no further bytes is ended after the timeout.
    for (const call of calm) {
      const end = await endOf(call, 10_000);
      assert.equal(end.code, Status.DEADLINE_EXCEEDED);
      assert.match(end.message, /a request message got no further bytes for 5 s/);
    }
  } finally {
    first.destroy();
    second.destroy();
  }
});

test('many whole requests sent together on one connection, interleaved (all unfinished at once), are all read: 60 of 100 KiB is more than twice the largest message', async () => {
  const { address } = await echoServer({ maxMessageBytes: 128 * 1024 });
  const session = rawConnect(address);
  try {
    const message = grpcFrame(Buffer.alloc(100 * 1024, 0x61));
    const calls = Array.from({ length: 60 }, () => rawCall(session, '/test.Echo/Bidi', { body: [message.subarray(0, 50 * 1024)] }));
    await new Promise((r) => setTimeout(r, 200));
    for (const c of calls) c.stream.end(message.subarray(50 * 1024));
    const ends = await Promise.all(calls.map((c) => c.ended));
    assert.deepEqual(
      ends.map((e) => e.code),
      calls.map(() => Status.OK),
    );
    assert.deepEqual(
      calls.map((c) => c.received),
      calls.map(() => 1),
    );
  } finally {
    session.destroy();
  }
});

test('a served connection that is reset is not reported as refused', async () => {
  const refused: string[] = [];
  const { address } = await echoServer({ onRefusedConnection: (_peer, reason) => refused.push(reason) });
  const session = rawConnect(address);
  const call = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('hi'))] });
  assert.equal(await call.waitForMessages(1, 5000), 1);
  (session.socket as unknown as { resetAndDestroy(): void }).resetAndDestroy();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(refused, []);
});

test('a request stream that ends inside a message gets INTERNAL (not OK with the request unread); reserved flag bits get INTERNAL too', async () => {
  const { address, seen } = await echoServer();
  const session = rawConnect(address);
  try {
    const frame = grpcFrame(Buffer.from('cut short'));
    for (const body of [frame.subarray(0, frame.length - 1), frame.subarray(0, 3)]) {
      const cut = await rawCall(session, '/test.Echo/Bidi', { body: [body], endAfterBody: true }).ended;
      assert.equal(cut.code, Status.INTERNAL, `${body.length} bytes`);
      assert.match(cut.message, /ended inside a message/);
    }
    const flagged = grpcFrame(Buffer.from('x'));
    flagged[0] = 0x80;
    const refused = await rawCall(session, '/test.Echo/Bidi', { body: [flagged] }).ended;
    assert.equal(refused.code, Status.INTERNAL);
    assert.match(refused.message, /unexpected message flags 0x80/);
    assert.equal(seen.messages, 0);
  } finally {
    session.destroy();
  }
});

test('an HTTP/1.x request on the gRPC port is reported once per connection with the reason and the peer (an Envoy cluster without HTTP/2 looks like this)', async () => {
  const refused: [string, string][] = [];
  const { address } = await echoServer({ onRefusedConnection: (peer, reason) => refused.push([peer, reason]) });
  const [host, port] = address.split(':');
  const socket = connectTcp(Number(port), host!);
  await once(socket, 'connect');
  socket.write('POST /envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc\r\n\r\n');
  await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 3000))]);
  socket.destroy();
  assert.equal(refused.length, 1, JSON.stringify(refused));
  assert.equal(refused[0]![0], '127.0.0.1');
  assert.match(refused[0]![1], /not HTTP\/2.*HTTP\/1\.x request.*http2_protocol_options/);
});

test('on a TLS listener, plaintext is reported as such; a connection closed before any handshake (a TCP health check) is not reported', async () => {
  const refused: string[] = [];
  const server = new GrpcServer({ onRefusedConnection: (_peer, reason) => refused.push(reason) });
  servers.push(server);
  const ca = makeCa('grpc-h2-tls');
  const port = (await server.listen({ host: '127.0.0.1', port: 0 }, { cert: Buffer.from(ca.certPem), key: Buffer.from(ca.keyPem) }))!;
  const probe = connectTcp(port, '127.0.0.1');
  await once(probe, 'connect');
  probe.destroy();
  const plain = connectTcp(port, '127.0.0.1', () => plain.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
  await once(plain, 'close');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(refused, ['TLS handshake failed: the client sent plaintext to the TLS listener']);
});

test('on a TLS listener, a client that offers no ALPN h2 (or only http/1.1) is reported with the reason, and its connection closed', async () => {
  const refused: string[] = [];
  const server = new GrpcServer({ onRefusedConnection: (_peer, reason) => refused.push(reason) });
  servers.push(server);
  const ca = makeCa('grpc-h2-alpn');
  const port = (await server.listen({ host: '127.0.0.1', port: 0 }, { cert: Buffer.from(ca.certPem), key: Buffer.from(ca.keyPem) }))!;
  for (const ALPNProtocols of [undefined, ['http/1.1']]) {
    const socket = connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols });
    socket.on('error', () => undefined);
    const closed = await new Promise<boolean>((r) => {
      socket.on('close', () => r(true));
      setTimeout(() => r(false), 5000).unref();
    });
    socket.destroy();
    assert.ok(closed, `${String(ALPNProtocols)}: closed by the server`);
  }
  await new Promise((r) => setTimeout(r, 200));
  // Before: nothing at all for a client without ALPN, and OpenSSL's own line for one offering http/1.1.
  assert.deepEqual(refused, [
    'TLS without ALPN "h2": an HTTP/1.x client, or one that does not offer HTTP/2; an Envoy SDS cluster needs http2_protocol_options',
    'TLS handshake failed: the client does not offer ALPN "h2" (an HTTP/1.x client); an Envoy SDS cluster needs http2_protocol_options',
  ]);
});

test('a call the transport ends for a refused request (too large, compressed, undecodable) is reported to the application as a cancel with that status, so it lets go of the call', async () => {
  const { address, server, seen } = await echoServer({ maxMessageBytes: 1024 });
  const undecodable = { cancels: [] as number[] };
  server.addBidi('/test.Echo/Strict', { decode: (b: Buffer) => (b.toString() === 'bad' ? (() => { throw new Error('no'); })() : Buffer.from(b)), encodeFramed: (r: Buffer) => frameMessage(r) }, (call: ServerCall<Buffer, Buffer>) => {
    call.listener = { onMessage: (m) => call.write(m), onCancel: (status) => undecodable.cancels.push(status?.code ?? -1) };
  });
  const session = rawConnect(address);
  try {
    const compressed = grpcFrame(Buffer.from('x'));
    compressed[0] = 1;
    for (const [frame, code] of [[grpcFrame(Buffer.alloc(2000)), Status.RESOURCE_EXHAUSTED], [compressed, Status.UNIMPLEMENTED]] as const) {
      const before = seen.cancels;
      const call = rawCall(session, '/test.Echo/Bidi', { headers: { 'grpc-encoding': 'gzip' }, body: [grpcFrame(Buffer.from('hello'))] });
      assert.equal(await call.waitForMessages(1, 5000), 1, 'the call is open and answered');
      call.stream.write(frame);
      assert.equal((await call.ended).code, code);
      await waitFor(() => seen.cancels === before + 1, 2000);
      assert.equal(seen.cancelStatus?.code, code);
    }
    const strict = rawCall(session, '/test.Echo/Strict', { body: [grpcFrame(Buffer.from('ok'))] });
    assert.equal(await strict.waitForMessages(1, 5000), 1);
    strict.stream.write(grpcFrame(Buffer.from('bad')));
    assert.equal((await strict.ended).code, Status.INTERNAL);
    await waitFor(() => undecodable.cancels.length === 1, 2000);
    assert.deepEqual(undecodable.cancels, [Status.INTERNAL]);
  } finally {
    session.destroy();
  }
});

test('a status after messages comes in trailers, one before any message is trailers-only; grpc-message is percent-encoded', async () => {
  const { address } = await echoServer();
  const session = rawConnect(address);
  try {
    const after1 = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('hello'))] });
    await after1.waitForMessages(1, 5000);
    after1.stream.write(grpcFrame(Buffer.from('fail:9:100% naïve\nline')));
    const end = await after1.ended;
    assert.deepEqual([end.code, end.message, after1.received], [9, '100% naïve\nline', 1]);
    let trailersOnly: Record<string, unknown> | undefined;
    const first = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('fail:16:token expired'))] });
    first.stream.on('response', (h) => (trailersOnly = h));
    const end2 = await first.ended;
    assert.deepEqual([end2.code, end2.message], [16, 'token expired']);
    assert.equal(trailersOnly?.['grpc-status'], '16', 'the status came with the response headers');
    assert.match(String(trailersOnly?.['content-type']), /^application\/grpc/);
  } finally {
    session.destroy();
  }
});

test('a status message too long for a header is cut to a few KiB with a note, in trailers and trailers-only alike, so the client still gets the status', async () => {
  const { address } = await echoServer();
  const session = rawConnect(address);
  try {
    const long = `bad name ${'é'.repeat(30_000)}${'x'.repeat(70_000)}`;
    const after1 = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('hello'))] });
    await after1.waitForMessages(1, 5000);
    after1.stream.write(grpcFrame(Buffer.from(`fail:3:${long}`)));
    const first = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from(`fail:3:${'y'.repeat(100_000)}`))] });
    for (const [end, kept] of [[await after1.ended, 'bad name é'], [await first.ended, 'yyyy']] as const) {
      assert.equal(end.code, 3, end.error);
      assert.ok(end.message.startsWith(kept), end.message.slice(0, 40));
      assert.match(end.message, /\.\.\. \(\d+ more characters cut\)$/);
      assert.ok(Buffer.byteLength(encodeURIComponent(end.message)) <= 4096, `${end.message.length} characters`);
    }
  } finally {
    session.destroy();
  }
});

/** Resolves once `stream` may be written again, or after `ms` (a client held back by flow control). */
const drainedWithin = (stream: NodeJS.WritableStream, ms: number) =>
  new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    stream.once('drain', () => (clearTimeout(t), resolve(true)));
  });

test('a client that does not read: its requests are left unread once 1 MiB of responses waits for it, and all are answered once it reads', async () => {
  const { address, seen } = await echoServer();
  const session = rawConnect(address);
  try {
    const call = rawCall(session, '/test.Echo/Bidi');
    call.stream.pause();
    const frame = grpcFrame(Buffer.alloc(64 * 1024, 0x61));
    const total = 200; // 12.8 MiB of responses if all were answered
    let written = 0;
    while (written < total) {
      written++;
      if (!call.stream.write(frame) && !(await drainedWithin(call.stream, 1000))) break;
    }
    assert.ok(written < total, 'the client\'s writes are held back');
    assert.ok(seen.messages < 60, `the server read ${seen.messages} of ${written} requests while 64 KiB responses were left unread`);
    // A client that reads gets every answer, in order, and its call ends normally.
    call.stream.resume();
    while (written < total) {
      written++;
      if (!call.stream.write(frame)) await drainedWithin(call.stream, 10_000);
    }
    call.stream.end();
    assert.equal(await call.waitForMessages(total, 20_000), total);
    const end = await call.ended;
    assert.equal(end.code, 0, end.error ?? end.message);
  } finally {
    session.destroy();
  }
});

test('a call that keeps writing to a client that does not read is ended with RESOURCE_EXHAUSTED at maxUnsentBytes; the application hears why', async () => {
  const { address, seen } = await echoServer({ maxUnsentBytes: 1024 * 1024 });
  const session = rawConnect(address);
  try {
    const call = rawCall(session, '/test.Echo/Bidi');
    call.stream.pause();
    call.stream.write(grpcFrame(Buffer.from('flood:100:65536')));
    const status = await (async () => {
      for (let i = 0; i < 500 && !seen.cancelStatus; i++) await new Promise((r) => setTimeout(r, 10));
      return seen.cancelStatus;
    })();
    assert.equal(status?.code, Status.RESOURCE_EXHAUSTED, 'the call was ended');
    assert.match(status.details, /the client is not reading its responses: \d+ bytes unsent \(limit 1048576\)/);
    // What was written before is still delivered, then the status.
    call.stream.resume();
    const end = await call.ended;
    assert.equal(end.code, Status.RESOURCE_EXHAUSTED, end.error);
    assert.match(end.message, /not reading its responses/);
    assert.ok(call.received > 10 && call.received < 40, `${call.received} responses`);
  } finally {
    session.destroy();
  }
});

test('a call ended while its responses wait unread is reset after a grace: a client that never reads cannot keep ended calls (and their unsent bytes) open', async () => {
  const { address } = await echoServer();
  // No flow-control window: the server can send no DATA, so each echo waits unsent, the status behind it.
  const session = connectHttp2(`http://${address}`, { settings: { initialWindowSize: 0 } });
  session.on('error', () => undefined);
  try {
    const closed: number[] = [];
    const calls = Array.from({ length: 20 }, () => {
      const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Bidi', 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => undefined);
      stream.on('close', () => closed.push(stream.rstCode ?? 0));
      // One message, then half-close: the server echoes it and ends the call OK.
      stream.end(grpcFrame(Buffer.from('x')));
      return stream;
    });
    // Before, every such call stayed open on the server for as long as the connection did.
    const deadline = Date.now() + 20_000;
    while (closed.length < calls.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(closed.length, calls.length, `${closed.length} of ${calls.length} calls closed`);
    assert.ok(closed.every((code) => code === 8), `reset with CANCEL: ${closed.join(',')}`);
  } finally {
    session.destroy();
  }
});

test('unary calls: one request answered once the client half-closes; none or two get UNIMPLEMENTED', async () => {
  const { address } = await echoServer();
  const session = rawConnect(address);
  try {
    const one = rawCall(session, '/test.Echo/Unary', { body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    assert.equal((await one.ended).code, Status.OK);
    assert.equal(one.received, 1);
    const none = await rawCall(session, '/test.Echo/Unary', { endAfterBody: true }).ended;
    assert.deepEqual([none.code, none.message], [Status.UNIMPLEMENTED, 'Received no request message for server streaming method /test.Echo/Unary']);
    const two = await rawCall(session, '/test.Echo/Unary', { body: [grpcFrame(Buffer.from('1')), grpcFrame(Buffer.from('2'))], endAfterBody: true }).ended;
    assert.equal(two.code, Status.UNIMPLEMENTED);
  } finally {
    session.destroy();
  }
});

test('metadata: every value of a key in order; a value outside printable ASCII is dropped and reported by name only', async () => {
  const { address, seen } = await echoServer();
  const session = rawConnect(address);
  try {
    const call = rawCall(session, '/test.Echo/Bidi', { headers: { 'x-token': ['one', 'two', 'thr\u00e9e'] }, body: [grpcFrame(Buffer.from('x'))] });
    await call.waitForMessages(1, 5000);
    assert.deepEqual(seen.headers, [['one', 'two']]);
    assert.deepEqual(seen.refused, ['x-token']);
    call.stream.end();
    await call.ended;
  } finally {
    session.destroy();
  }
});

test('keepOnlyHeader lets go of every other header of a long-lived call (its values, duplicates in order, stay readable)', async () => {
  const server = new GrpcServer();
  servers.push(server);
  const seen: string[][] = [];
  server.addBidi('/test.Keep/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    call.keepOnlyHeader('x-token');
    call.listener = {
      onMessage(m) {
        seen.push(call.headerValues('x-token'), call.headerValues('x-pad'), call.headerValues('user-agent'));
        call.write(m);
      },
    };
  });
  const port = await server.listen({ host: '127.0.0.1', port: 0 });
  const session = rawConnect(`127.0.0.1:${port}`);
  try {
    const call = rawCall(session, '/test.Keep/Bidi', { headers: { 'x-token': ['a', 'b'], 'x-pad': 'p'.repeat(10_000), 'user-agent': 'test' }, body: [grpcFrame(Buffer.from('x'))] });
    await call.waitForMessages(1, 5000);
    assert.deepEqual(seen, [['a', 'b'], [], []]);
  } finally {
    session.destroy();
  }
});

test('a client reset or a lost connection cancels the call once; the server keeps serving', async () => {
  const { address, seen } = await echoServer();
  const a = rawConnect(address);
  const b = rawConnect(address);
  try {
    const reset = rawCall(a, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
    await reset.waitForMessages(1, 5000);
    reset.stream.close(8);
    const lost = rawCall(b, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
    await lost.waitForMessages(1, 5000);
    b.destroy();
    await waitFor(() => seen.cancels === 2, 5000);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(seen.cancels, 2);
    const ok = rawCall(a, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
    assert.equal(await ok.waitForMessages(1, 5000), 1);
  } finally {
    a.destroy();
    b.destroy();
  }
});

/** The HTTP/2 client preface and an empty SETTINGS frame, then silence: a peer that never answers pings. */
function silentPeer(address: string): Socket {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const s = connectTcp(port, host);
  s.on('error', () => undefined);
  // Read (and drop) what the server sends, so its closing the connection is seen.
  s.resume();
  s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
  return s;
}

test('keepalive: a connection that does not answer pings is closed; one that does stays open', async () => {
  const { address } = await echoServer({ keepaliveTimeMs: 100, keepaliveTimeoutMs: 100 });
  const alive = connectHttp2(`http://${address}`);
  alive.on('error', () => undefined);
  const dead = silentPeer(address);
  const t0 = Date.now();
  try {
    await once(dead, 'close');
    assert.ok(Date.now() - t0 < 2000, 'closed within a few keepalive periods');
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(alive.destroyed || alive.closed, false, 'a peer that answers pings keeps its connection');
  } finally {
    alive.destroy();
    dead.destroy();
  }
});

test('a client flooding pings loses its connection (GOAWAY ENHANCE_YOUR_CALM); others are untouched', async () => {
  const { address } = await echoServer({ maxPeerPingsPerWindow: 5, peerPingWindowMs: 10_000 });
  const flood = connectHttp2(`http://${address}`);
  flood.on('error', () => undefined);
  const other = rawConnect(address);
  try {
    await once(flood, 'connect');
    const goaway = once(flood, 'goaway');
    for (let i = 0; i < 8; i++) flood.ping(() => undefined);
    const [code] = (await goaway) as [number];
    assert.equal(code, 11);
    const ok = rawCall(other, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
    assert.equal(await ok.waitForMessages(1, 5000), 1);
  } finally {
    flood.destroy();
    other.destroy();
  }
});

test('a connection node closes for a frame flood (empty DATA frames; SETTINGS whose ACKs it leaves unread) is reported with the peer and the kind of flood; another connection is served meanwhile', async () => {
  const flooded: [string, string][] = [];
  const { address } = await echoServer({ onFloodedConnection: (peer, reason) => flooded.push([peer, reason]) });
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  const empty = rawH2Connect(port);
  const settings = rawH2Connect(port);
  const other = rawConnect(address);
  try {
    empty.send(grpcRequestHeaders(1, '/test.Echo/Bidi'), ...Array<Buffer>(2000).fill(frame(FrameType.DATA, 0, 1)));
    settings.send(...Array<Buffer>(20_000).fill(frame(FrameType.SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0, 0xff, 0xff]))));
    await Promise.all([empty, settings].map((c) => c.waitForFrame((f) => f.type === FrameType.GOAWAY, 10_000)));
    const ok = rawCall(other, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
    assert.equal(await ok.waitForMessages(1, 5000), 1);
    for (let i = 0; i < 100 && flooded.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(flooded.map(([peer]) => peer), ['127.0.0.1', '127.0.0.1']);
    assert.deepEqual(flooded.map(([, reason]) => reason).sort(), [
      'HTTP/2 flood: more SETTINGS, PING or RST_STREAM answers queued than the peer reads',
      'HTTP/2 flood: too many invalid frames (empty DATA frames, or frames HTTP/2 does not allow where they came)',
    ]);
  } finally {
    empty.socket.destroy();
    settings.socket.destroy();
    other.destroy();
  }
});

test('garbage, an HTTP/1 request and a huge header block cost only their own connection or stream', async () => {
  const { address } = await echoServer();
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  for (const junk of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) & 0xff)), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00')]) {
    const s = connectTcp(port, host);
    s.on('error', () => undefined);
    s.resume();
    s.end(junk);
    await once(s, 'close');
  }
  const session = rawConnect(address);
  try {
    const huge = await rawCall(session, '/test.Echo/Bidi', { headers: { 'x-big': 'a'.repeat(100_000) }, body: [grpcFrame(Buffer.from('x'))] }).ended;
    assert.equal(huge.code, undefined, 'refused by HTTP/2 itself');
    const fresh = rawConnect(address);
    const ok = rawCall(fresh, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
    assert.equal(await ok.waitForMessages(1, 5000), 1);
    fresh.destroy();
  } finally {
    session.destroy();
  }
});

test('tryShutdown stops accepting and waits for open calls; forceShutdown ends them', async () => {
  const { address, server } = await echoServer();
  const session = rawConnect(address);
  const open = rawCall(session, '/test.Echo/Bidi', { body: [grpcFrame(Buffer.from('x'))] });
  await open.waitForMessages(1, 5000);
  let shutDown = false;
  server.tryShutdown(() => (shutDown = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(shutDown, false, 'an open call holds the graceful shutdown');
  server.forceShutdown();
  const end = await open.ended;
  assert.equal(end.code, undefined);
  await waitFor(() => shutDown, 5000);
  session.destroy();
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a unix socket is owner-only from the moment it is bound, whatever the umask: a connection made before a later chmod would outlive it', async (t) => {
  const { mkdtempSync, rmSync, statSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-socket-mode-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = new GrpcServer();
  servers.push(server);
  const umask = process.umask(0);
  try {
    await server.listen({ path: join(dir, 'sds.sock') });
    // Nothing between the bind and this stat changed the mode (bindServer's chmod is not in play here).
    assert.equal(statSync(join(dir, 'sds.sock')).mode & 0o077, 0, 'no group or other bit');
    assert.equal(process.umask(), 0, "the process' umask is given back after the bind");
  } finally {
    process.umask(umask);
  }
});
