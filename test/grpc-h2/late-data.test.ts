// Request DATA that arrives when the call can no longer take it: after the server ended the call
// with a status (legal: the client's half is still open), after the client's own END_STREAM (a
// protocol error node's client refuses to commit, so it is written frame by frame), and on a
// stream already closed on both sides.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { GrpcServer } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { Status } from '../../src/server/grpc-h2/status.js';
import { grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';
import { Flag, frame, FrameType, grpcRequestHeaders, rawH2Connect } from '../helpers/raw-h2-frames.js';

const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));
const LIMIT = { timeout: 15_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Seen {
  /** Messages delivered to listeners, in order; 'half-close' and 'cancel' as they happen. */
  events: string[];
  /** DATA chunks the server's stream read after its call had ended. */
  chunksAfterEnd: number;
}

/** /t.L/Bidi echoes 'echo', ends with FAILED_PRECONDITION on 'stop', OK on half-close; /t.L/Unary echoes. */
async function server(): Promise<{ port: number; address: string; seen: Seen }> {
  const seen: Seen = { events: [], chunksAfterEnd: 0 };
  const s = new GrpcServer();
  servers.push(s);
  s.addBidi('/t.L/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    call.stream.on('data', () => {
      if (!call.active) seen.chunksAfterEnd++;
    });
    call.listener = {
      onMessage(m) {
        seen.events.push(m.toString());
        if (m.toString() === 'echo') call.write(m);
        if (m.toString() === 'stop') call.end({ code: Status.FAILED_PRECONDITION, details: 'stopped' });
      },
      onHalfClose() {
        seen.events.push('half-close');
        call.end();
      },
      onCancel: () => seen.events.push('cancel'),
    };
  });
  s.addSingleRequest('/t.L/Unary', bytes, (call, request) => {
    call.write(request);
    call.end();
  });
  const port = (await s.listen({ host: '127.0.0.1', port: 0 }))!;
  return { port, address: `127.0.0.1:${port}`, seen };
}

test('messages a client keeps sending after the server ended the call with a status reach no listener; stream and connection stay usable', LIMIT, async () => {
  const { address, seen } = await server();
  const session = rawConnect(address);
  try {
    // The status (as trailers after a response, or trailers-only) is followed by RST_STREAM(NO_ERROR),
    // as grpc-go sends when the client has not half-closed, so a client that never ends its side
    // keeps nothing alive on the server; what it sent meanwhile reaches no listener.
    for (const before of [['echo'], []]) {
      seen.events.length = 0;
      // Not rawCall: it half-closes as soon as the status arrives, and these writes must come after it.
      const stream = session.request({ ':method': 'POST', ':path': '/t.L/Bidi', 'content-type': 'application/grpc', te: 'trailers' });
      const errors: Error[] = [];
      stream.on('error', (e) => errors.push(e));
      stream.resume();
      const closed = new Promise((r) => stream.on('close', r));
      const status = new Promise<string>((resolve) => {
        stream.on('response', (h) => h['grpc-status'] !== undefined && resolve(String(h['grpc-status'])));
        stream.on('trailers', (h) => resolve(String(h['grpc-status'])));
      });
      for (const m of [...before, 'stop']) stream.write(grpcFrame(Buffer.from(m)));
      assert.equal(await status, String(Status.FAILED_PRECONDITION));
      // Sent before the reset can have arrived: whole messages and one cut in half.
      for (let i = 0; i < 3; i++) stream.write(grpcFrame(Buffer.from(`late ${i}`)));
      stream.write(grpcFrame(Buffer.from('late and cut')).subarray(0, 8));
      await closed;
      assert.deepEqual([errors, stream.rstCode], [[], 0], 'reset with NO_ERROR, and the client saw no error');
      await sleep(100);
      assert.deepEqual(seen.events, [...before, 'stop']);
    }
    const ok = rawCall(session, '/t.L/Unary', { body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    assert.deepEqual([(await ok.ended).code, ok.received], [Status.OK, 1]);
  } finally {
    session.destroy();
  }
});

test('DATA after the client\'s own END_STREAM: nghttp2 ends that connection (GOAWAY STREAM_CLOSED), the data reaches no listener, the call ends once, other connections are served', LIMIT, async () => {
  const { port, address, seen } = await server();
  const bad = rawH2Connect(port);
  const other = rawConnect(address);
  try {
    bad.send(
      grpcRequestHeaders(1, '/t.L/Bidi'),
      frame(FrameType.DATA, Flag.END_STREAM, 1, grpcFrame(Buffer.from('first'))),
      frame(FrameType.DATA, 0, 1, grpcFrame(Buffer.from('after end'))),
    );
    const goaway = await bad.waitForFrame((f) => f.type === FrameType.GOAWAY, 5000);
    assert.equal(goaway.payload.readUInt32BE(4), 5, 'STREAM_CLOSED');
    await sleep(100);
    // The reset the GOAWAY brings may beat the deferred half-close: either way, exactly one end.
    assert.equal(seen.events[0], 'first');
    assert.equal(seen.events.length, 2);
    assert.match(seen.events[1]!, /^(half-close|cancel)$/);
    const ok = rawCall(other, '/t.L/Unary', { body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    assert.deepEqual([(await ok.ended).code, ok.received], [Status.OK, 1]);
  } finally {
    bad.socket.destroy();
    other.destroy();
  }
});

test('DATA on a stream already closed on both sides is ignored and the same connection goes on serving', LIMIT, async () => {
  const { port, seen } = await server();
  const c = rawH2Connect(port);
  try {
    c.send(grpcRequestHeaders(1, '/t.L/Bidi'), frame(FrameType.DATA, Flag.END_STREAM, 1, grpcFrame(Buffer.from('first'))));
    // The trailers-only OK ends the server's half: stream 1 is now closed.
    await c.waitForFrame((f) => f.type === FrameType.HEADERS && f.stream === 1 && (f.flags & Flag.END_STREAM) !== 0, 5000);
    c.send(frame(FrameType.DATA, 0, 1, grpcFrame(Buffer.from('too late'))));
    c.send(grpcRequestHeaders(3, '/t.L/Unary'), frame(FrameType.DATA, Flag.END_STREAM, 3, grpcFrame(Buffer.from('q'))));
    const data = await c.waitForFrame((f) => f.type === FrameType.DATA && f.stream === 3, 5000);
    assert.deepEqual(data.payload, grpcFrame(Buffer.from('q')));
    await c.waitForFrame((f) => f.type === FrameType.HEADERS && f.stream === 3 && (f.flags & Flag.END_STREAM) !== 0, 5000);
    assert.deepEqual(seen.events, ['first', 'half-close']);
    assert.equal(
      c.frames.some((f) => f.type === FrameType.GOAWAY || f.type === FrameType.RST_STREAM),
      false,
    );
  } finally {
    c.socket.destroy();
  }
});
