// A burst of streams on one connection, past what it may hold: the client is told the limit in
// SETTINGS and queues the rest, so every stream is answered and the connection survives (it was
// failed whole with GOAWAY INTERNAL_ERROR once node's session memory ran out).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { GrpcServer, MAX_STREAMS_PER_CONNECTION } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { grpcFrame } from '../helpers/raw-grpc.js';

const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));

test('opening more streams than a connection may hold, at once, queues the excess at the client: no stream is refused and the connection survives', async () => {
  const server = new GrpcServer();
  servers.push(server);
  const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
  // Calls are held open until as many as a connection may hold are (a burst of long-lived
  // streams, as proxies' are), then each answers and ends, so queued streams get their turn.
  const held: ServerCall<Buffer, Buffer>[] = [];
  let releasing = false;
  const answer = (call: ServerCall<Buffer, Buffer>) => {
    call.write(Buffer.from('ok'));
    call.end();
  };
  server.addBidi('/test.Echo/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    call.listener = {
      onMessage: () => {
        // A first response at once, as a proxy's first secrets are (it is what fills node's session memory).
        call.write(Buffer.alloc(2048, 0x62));
        if (releasing) return answer(call);
        held.push(call);
        if (held.length !== MAX_STREAMS_PER_CONNECTION) return;
        // A moment for any stream past the limit to arrive (a client that did not queue them).
        setTimeout(() => {
          releasing = true;
          held.forEach(answer);
        }, 1000);
      },
    };
  });
  const port = await server.listen({ host: '127.0.0.1', port: 0 });
  // As the review's client: assumes the server takes far more streams than it says it does.
  const session = connect(`http://127.0.0.1:${port}`, { maxSessionMemory: 1000, peerMaxConcurrentStreams: 200_000 });
  session.on('error', () => undefined);
  const goaways: number[] = [];
  session.on('goaway', (code) => goaways.push(code));
  const settings = await new Promise<{ maxConcurrentStreams?: number }>((r) => session.once('remoteSettings', r));
  // What node's session memory holds with room for their first responses (100,000 was advertised:
  // a client believing it had ~13,500 streams open when the memory ran out, and the connection failed).
  assert.equal(settings.maxConcurrentStreams, MAX_STREAMS_PER_CONNECTION);
  const n = MAX_STREAMS_PER_CONNECTION + 4_000;
  const body = grpcFrame(Buffer.alloc(200, 0x61));
  const resets = new Map<number, number>();
  let answered = 0;
  const done = new Promise<void>((resolve) => {
    let closed = 0;
    for (let i = 0; i < n; i++) {
      const st = session.request({ ':method': 'POST', ':path': '/test.Echo/Bidi', 'content-type': 'application/grpc', te: 'trailers' });
      st.on('error', () => undefined);
      st.once('data', () => answered++);
      st.resume();
      st.on('close', () => {
        if (st.rstCode) resets.set(st.rstCode, (resets.get(st.rstCode) ?? 0) + 1);
        if (++closed === n) resolve();
      });
      st.end(body);
    }
  });
  await done;
  session.destroy();
  assert.deepEqual([...resets], [], 'no stream reset (ENHANCE_YOUR_CALM was 11)');
  assert.deepEqual(goaways, [], 'no GOAWAY');
  assert.equal(answered, n);
});
