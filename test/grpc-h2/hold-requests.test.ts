// A call whose application holds its requests (holdRequests: an xDS stream waiting for its proxy's
// identity) is given none until releaseRequests, then all of them in order; a client that keeps
// sending meanwhile is held back by HTTP/2 flow control instead of filling the server's memory.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { GrpcServer } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { grpcFrame, rawConnect } from '../helpers/raw-grpc.js';

const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('held requests are read only after release, in order, and a client sending without pause is held back by flow control', { timeout: 30_000 }, async () => {
  const received: string[] = [];
  let call: ServerCall<Buffer, Buffer> | undefined;
  const s = new GrpcServer();
  servers.push(s);
  s.addBidi('/t.H/Bidi', bytes, (c: ServerCall<Buffer, Buffer>) => {
    call = c;
    c.listener = {
      onMessage(m) {
        received.push(m.toString('latin1', 0, 8));
        if (received.length === 1) c.holdRequests();
      },
      onHalfClose: () => c.end(),
    };
  });
  const port = (await s.listen({ host: '127.0.0.1', port: 0 }))!;
  const session = rawConnect(`127.0.0.1:${port}`);
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/t.H/Bidi', 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    stream.resume();
    // 64 messages of 64 KiB: 4 MiB, far more than the stream's flow-control window.
    const message = (i: number) => Buffer.concat([Buffer.from(`m${String(i).padStart(7, '0')}`, 'latin1'), Buffer.alloc(64 * 1024 - 8)]);
    let flushed = 0;
    for (let i = 0; i < 64; i++) stream.write(grpcFrame(message(i)), () => flushed++);
    await sleep(1000);
    assert.deepEqual(received, ['m0000000'], 'nothing after the first while held');
    assert.ok(flushed < 64, `flow control held the client back (${flushed} of 64 writes left it)`);
    call!.releaseRequests();
    const deadline = Date.now() + 15_000;
    while (received.length < 64 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(received, Array.from({ length: 64 }, (_, i) => `m${String(i).padStart(7, '0')}`));
    stream.end();
  } finally {
    session.destroy();
  }
});
