// Rapid reset (CVE-2023-44487): a client opening streams and resetting them at once, written frame
// by frame so nothing in a client library spaces or merges them. The protection is nghttp2's
// (a token bucket on incoming RST_STREAM: burst 1000, 33/s, then GOAWAY); these tests hold the
// server to its part: every call that started ends as cancelled, nothing stays behind, other
// connections are served, and a burst under the limit leaves its connection usable.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GrpcServer, type GrpcServerOptions } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { pendingDeadlines } from '../../src/server/grpc-h2/deadline.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { Status } from '../../src/server/grpc-h2/status.js';
import { grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';
import { Flag, frame, FrameType, grpcRequestHeaders, rawH2Connect } from '../helpers/raw-h2-frames.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));
const LIMIT = { timeout: 60_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CANCEL = 8;

interface Seen {
  started: number;
  cancels: number;
  /** Only weakly held: the test must not be what keeps a call alive. */
  calls: WeakRef<ServerCall<Buffer, Buffer>>[];
}

/** /t.R/Bidi never answers (a stream a proxy would keep open); /t.R/Unary echoes. */
async function server(opts: GrpcServerOptions = {}): Promise<{ port: number; address: string; seen: Seen }> {
  const seen: Seen = { started: 0, cancels: 0, calls: [] };
  const s = new GrpcServer(opts);
  servers.push(s);
  s.addBidi('/t.R/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    seen.started++;
    seen.calls.push(new WeakRef(call));
    call.listener = { onCancel: () => seen.cancels++ };
  });
  s.addSingleRequest('/t.R/Unary', bytes, (call, request) => {
    call.write(request);
    call.end();
  });
  const port = (await s.listen({ host: '127.0.0.1', port: 0 }))!;
  return { port, address: `127.0.0.1:${port}`, seen };
}

/** HEADERS then RST_STREAM(CANCEL) for `count` streams from `firstId`, all in one write. */
function openAndReset(firstId: number, count: number, extra: [string, string][] = []): Buffer[] {
  const out: Buffer[] = [];
  const cancel = Buffer.alloc(4);
  cancel.writeUInt32BE(CANCEL);
  for (let i = 0; i < count; i++) {
    const id = firstId + 2 * i;
    out.push(grpcRequestHeaders(id, '/t.R/Bidi', extra), frame(FrameType.RST_STREAM, 0, id, cancel));
  }
  return out;
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

function sockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

/** Calls still reachable after a full collection (a handle left on one would keep it). */
async function liveCalls(seen: Seen): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await sleep(50);
    gc();
  }
  return seen.calls.filter((w) => w.deref() !== undefined).length;
}

test('5,000 streams opened and reset at once: the flood connection gets GOAWAY, every call that started ends cancelled and is freed, another connection is served meanwhile, and the flood\'s socket is gone by the next keepalive ping', LIMIT, async () => {
  // nghttp2 stops reading a connection it has sent GOAWAY on, so node sees its peer leave only at
  // the next write: the keepalive ping, made frequent here.
  const { port, address, seen } = await server({ keepaliveTimeMs: 1000, keepaliveTimeoutMs: 1000 });
  const baseline = sockets();
  const flood = rawH2Connect(port);
  const other = rawConnect(address);
  try {
    // With an hour's deadline each: a timer left armed by a reset would keep its call alive.
    flood.send(...openAndReset(1, 5000, [['grpc-timeout', '1H']]));
    const during = rawCall(other, '/t.R/Unary', { body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    const goaway = await flood.waitForFrame((f) => f.type === FrameType.GOAWAY, 30_000);
    assert.ok(goaway.payload.readUInt32BE(0) < 2 * 5000, 'the last stream it took is before the end of the flood');
    assert.equal((await during.ended).code, Status.OK);
    await waitFor(() => seen.cancels === seen.started, 30_000, `every started call cancelled (${seen.cancels} of ${seen.started})`);
    assert.ok(seen.started > 0 && seen.started < 5000, `the server took part of the flood (${seen.started} calls) and refused the rest`);
    flood.socket.destroy();
    other.destroy();
    await waitFor(() => sockets() <= baseline, 30_000, 'the server closed its side of both connections');
    await sleep(200);
    assert.equal(seen.cancels, seen.started, 'no call was cancelled twice');
    assert.equal(pendingDeadlines(), 0);
    assert.equal(await liveCalls(seen), 0);
  } finally {
    flood.socket.destroy();
    other.destroy();
  }
});

test('900 streams reset at once (under nghttp2\'s burst): each call ends cancelled once and the same connection then serves a call', LIMIT, async () => {
  const { port, seen } = await server();
  const c = rawH2Connect(port);
  try {
    c.send(...openAndReset(1, 900));
    await waitFor(() => seen.cancels === 900, 30_000, `900 calls cancelled (${seen.cancels} of ${seen.started})`);
    const id = 1 + 2 * 900;
    c.send(grpcRequestHeaders(id, '/t.R/Unary'), frame(FrameType.DATA, Flag.END_STREAM, id, grpcFrame(Buffer.from('q'))));
    const data = await c.waitForFrame((f) => f.type === FrameType.DATA && f.stream === id, 30_000);
    assert.deepEqual(data.payload, grpcFrame(Buffer.from('q')));
    assert.equal(
      c.frames.some((f) => f.type === FrameType.GOAWAY),
      false,
    );
    assert.deepEqual([seen.started, seen.cancels], [900, 900]);
    assert.equal(await liveCalls(seen), 0);
  } finally {
    c.socket.destroy();
  }
});

test('"MadeYouReset" (CVE-2025-8671): streams the server itself must reset for the peer\'s malformed frames (DATA past content-length: 0) count as refused; past maxRefusedStreamsPerWindow the connection gets GOAWAY ENHANCE_YOUR_CALM, is reported once, and another connection is served', LIMIT, async () => {
  const reported: number[] = [];
  const { port, address, seen } = await server({ onTooManyRefusedStreams: (_peer, refused) => reported.push(refused) });
  const flood = rawH2Connect(port);
  const other = rawConnect(address);
  try {
    const out: Buffer[] = [];
    for (let i = 0; i < 5000; i++) {
      const id = 1 + 2 * i;
      // No RST_STREAM from the client: nghttp2's own rapid-reset bucket never sees these.
      out.push(grpcRequestHeaders(id, '/t.R/Bidi', [['content-length', '0']]), frame(FrameType.DATA, Flag.END_STREAM, id, Buffer.from('xx')));
    }
    flood.send(...out);
    const goaway = await flood.waitForFrame((f) => f.type === FrameType.GOAWAY, 30_000);
    assert.equal(goaway.payload.readUInt32BE(4), 11, 'ENHANCE_YOUR_CALM');
    assert.equal(goaway.payload.subarray(8).toString(), 'too_many_refused_streams');
    assert.equal((await rawCall(other, '/t.R/Unary', { body: [grpcFrame(Buffer.from('q'))], endAfterBody: true }).ended).code, Status.OK);
    await waitFor(() => seen.cancels === seen.started, 30_000, `every started call cancelled (${seen.cancels} of ${seen.started})`);
    assert.ok(seen.started < 5000, `the server stopped taking the flood's streams (${seen.started} started)`);
    assert.deepEqual(reported, [101]);
  } finally {
    flood.socket.destroy();
    other.destroy();
  }
});
