// grpc-timeout: the server ends a call whose deadline passed with DEADLINE_EXCEEDED (as grpc-js'
// server does), refuses a malformed value with INTERNAL, and leaves no timer behind a call.
import { test, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { GrpcServer } from '../../src/server/grpc-h2/server.js';
import type { ServerCall } from '../../src/server/grpc-h2/call.js';
import { armDeadline, disarmDeadline, parseGrpcTimeout, pendingDeadlines } from '../../src/server/grpc-h2/deadline.js';
import { frameMessage } from '../../src/server/grpc-h2/framing.js';
import { Status } from '../../src/server/grpc-h2/status.js';
import { grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const bytes = { decode: (b: Buffer) => Buffer.from(b), encodeFramed: (r: Buffer) => frameMessage(r) };
const servers: GrpcServer[] = [];
after(() => servers.forEach((s) => s.forceShutdown()));

interface Seen {
  /** Every call the handlers got, in order. */
  calls: ServerCall<Buffer, Buffer>[];
  cancels: number;
  started: number;
}

/**
 * /test.D/Silent (unary) and /test.D/Stream (server streaming) never answer; /test.D/Bidi echoes
 * and ends OK on half-close; /test.D/Unary answers at once.
 */
async function deadlineServer(): Promise<{ address: string; seen: Seen }> {
  const seen: Seen = { calls: [], cancels: 0, started: 0 };
  const server = new GrpcServer();
  servers.push(server);
  const silent = (call: ServerCall<Buffer, Buffer>) => {
    seen.started++;
    seen.calls.push(call);
    call.listener = { onCancel: () => seen.cancels++ };
  };
  server.addSingleRequest('/test.D/Silent', bytes, silent);
  server.addSingleRequest('/test.D/Stream', bytes, silent);
  server.addSingleRequest('/test.D/Unary', bytes, (call, request) => {
    seen.started++;
    call.write(request);
    call.end();
  });
  server.addBidi('/test.D/Bidi', bytes, (call: ServerCall<Buffer, Buffer>) => {
    seen.started++;
    seen.calls.push(call);
    call.listener = { onMessage: (m) => call.write(m), onHalfClose: () => call.end(), onCancel: () => seen.cancels++ };
  });
  const port = await server.listen({ host: '127.0.0.1', port: 0 });
  return { address: `127.0.0.1:${port}`, seen };
}

/** A call that never ends must fail its test, not hang the run. */
const LIMIT = { timeout: 15_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(10);
  }
}

test('grpc-timeout values: 1 to 8 digits and a unit H M S m u n, in milliseconds rounded up; anything else is malformed', () => {
  assert.equal(parseGrpcTimeout('2H'), 7_200_000);
  assert.equal(parseGrpcTimeout('3M'), 180_000);
  assert.equal(parseGrpcTimeout('15S'), 15_000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('1500u'), 2);
  assert.equal(parseGrpcTimeout('1n'), 1);
  assert.equal(parseGrpcTimeout('0S'), 0);
  assert.equal(parseGrpcTimeout('99999999H'), 99_999_999 * 3_600_000);
  for (const bad of ['', 'S', '5', '123456789S', '1.5S', '-1S', ' 1S', '1S ', '1 S', '1s', '1h', '1x', '1S, 2S', '1SS', '0x10S']) {
    assert.equal(parseGrpcTimeout(bad), undefined, JSON.stringify(bad));
  }
});

test('a deadline beyond setTimeout\'s limit (about 24.8 days; node would fire it at once) fires at the deadline, not before', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    let fired = 0;
    const holder = { deadlineTimer: undefined as NodeJS.Timeout | undefined, deadlineExceeded: () => fired++ };
    armDeadline(holder, 2 ** 31 - 1 + 1000);
    mock.timers.tick(2 ** 31 - 1);
    mock.timers.tick(999);
    assert.equal(fired, 0);
    mock.timers.tick(1);
    assert.equal(fired, 1);
    assert.equal(pendingDeadlines(), 0);
    disarmDeadline(holder);
    assert.equal(pendingDeadlines(), 0, 'disarming a fired deadline changes nothing');
  } finally {
    mock.timers.reset();
  }
});

test('a unary call still unanswered at its deadline gets a trailers-only DEADLINE_EXCEEDED "Deadline exceeded"; the handler hears a cancel once', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const session = rawConnect(address);
  try {
    const call = rawCall(session, '/test.D/Silent', { headers: { 'grpc-timeout': '200m' }, body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    const end = await call.ended;
    assert.deepEqual([end.httpStatus, end.code, end.message, end.rstCode], [200, Status.DEADLINE_EXCEEDED, 'Deadline exceeded', 0]);
    const [serverCall] = seen.calls;
    assert.deepEqual([serverCall?.active, serverCall?.cancelled, seen.cancels], [false, true, 1]);
    assert.equal(pendingDeadlines(), 0);
  } finally {
    session.destroy();
  }
});

test('a stream that already sent messages gets DEADLINE_EXCEEDED in its trailers after them', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const session = rawConnect(address);
  try {
    const call = rawCall(session, '/test.D/Bidi', { headers: { 'grpc-timeout': '300m' }, body: [grpcFrame(Buffer.from('a')), grpcFrame(Buffer.from('b'))] });
    assert.equal(await call.waitForMessages(2, 5000), 2);
    const end = await call.ended;
    assert.deepEqual([end.code, end.message, call.received], [Status.DEADLINE_EXCEEDED, 'Deadline exceeded', 2]);
    assert.equal(seen.cancels, 1);
  } finally {
    session.destroy();
  }
});

test('a call that ends before its deadline, by status or by the client resetting it, leaves no timer and hears no late cancel', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const session = rawConnect(address);
  try {
    const ok = rawCall(session, '/test.D/Unary', { headers: { 'grpc-timeout': '150m' }, body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    assert.equal((await ok.ended).code, Status.OK);
    const echo = rawCall(session, '/test.D/Bidi', { headers: { 'grpc-timeout': '150m' }, body: [grpcFrame(Buffer.from('a'))] });
    await echo.waitForMessages(1, 5000);
    echo.stream.end();
    assert.equal((await echo.ended).code, Status.OK);
    // An hour-long deadline: only clearing it on the reset brings the count back to zero.
    const reset = rawCall(session, '/test.D/Bidi', { headers: { 'grpc-timeout': '1H' }, body: [grpcFrame(Buffer.from('a'))] });
    await reset.waitForMessages(1, 5000);
    assert.equal(pendingDeadlines(), 1, 'one timer for the one open call with a deadline');
    reset.stream.close(8);
    await waitFor(() => seen.cancels === 1, 5000);
    assert.equal(pendingDeadlines(), 0);
    // Past the first two deadlines: a timer firing into an ended call would cancel it once more.
    await sleep(400);
    assert.equal(seen.cancels, 1);
    assert.deepEqual(
      seen.calls.map((c) => c.cancelled),
      [false, true],
    );
  } finally {
    session.destroy();
  }
});

test('calls without grpc-timeout get no timer', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const session = rawConnect(address);
  try {
    const open = [1, 2, 3].map(() => rawCall(session, '/test.D/Bidi', { body: [grpcFrame(Buffer.from('a'))] }));
    for (const c of open) await c.waitForMessages(1, 5000);
    assert.equal(seen.started, 3);
    assert.equal(pendingDeadlines(), 0);
    for (const c of open) c.stream.end();
    for (const c of open) assert.equal((await c.ended).code, Status.OK);
  } finally {
    session.destroy();
  }
});

test('a malformed grpc-timeout ends the call with INTERNAL "Invalid grpc-timeout value" before its handler runs; an unknown method is still UNIMPLEMENTED', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const session = rawConnect(address);
  try {
    for (const bad of ['soon', '123456789m', '1.5S', '10s', '']) {
      const end = await rawCall(session, '/test.D/Unary', { headers: { 'grpc-timeout': bad }, body: [grpcFrame(Buffer.from('q'))], endAfterBody: true }).ended;
      assert.deepEqual([end.httpStatus, end.code, end.message], [200, Status.INTERNAL, `Invalid grpc-timeout value "${bad}"`]);
    }
    assert.equal(seen.started, 0);
    const unknown = await rawCall(session, '/test.D/Nope', { headers: { 'grpc-timeout': 'soon' }, endAfterBody: true }).ended;
    assert.equal(unknown.code, Status.UNIMPLEMENTED);
    const ok = rawCall(session, '/test.D/Unary', { headers: { 'grpc-timeout': '10S' }, body: [grpcFrame(Buffer.from('q'))], endAfterBody: true });
    assert.equal((await ok.ended).code, Status.OK);
    assert.equal(pendingDeadlines(), 0);
  } finally {
    session.destroy();
  }
});

type RawClient = grpc.Client & {
  Stream(req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions): grpc.ClientReadableStream<Buffer>;
  Silent(req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void): grpc.ClientUnaryCall;
};
function grpcJsClient(address: string): RawClient {
  const method = (path: string, responseStream: boolean) => ({
    path,
    requestStream: false,
    responseStream,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  });
  const Client = grpc.makeGenericClientConstructor({ Stream: method('/test.D/Stream', true), Silent: method('/test.D/Silent', false) }, 'D');
  return new Client(address, grpc.credentials.createInsecure()) as unknown as RawClient;
}

function streamError(call: grpc.ClientReadableStream<Buffer>): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    call.on('data', () => undefined);
    call.on('error', resolve);
    call.on('end', () => reject(new Error('ended without an error')));
  });
}

test('grpc-js client: a grpc-timeout with no client-side deadline is enforced by the server alone ("Deadline exceeded", not the client\'s "Deadline exceeded after …")', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const client = grpcJsClient(address);
  try {
    // No `deadline` option: grpc-js passes the header as it is and runs no timer of its own.
    const md = new grpc.Metadata();
    md.set('grpc-timeout', '200m');
    const err = await streamError(client.Stream(Buffer.from('q'), md, {}));
    assert.deepEqual([err.code, err.details], [grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded']);
    assert.deepEqual([seen.calls[0]?.active, seen.calls[0]?.cancelled, seen.cancels], [false, true, 1]);
  } finally {
    client.close();
  }
});

test('grpc-js client with a deadline (server streaming and unary): DEADLINE_EXCEEDED, the server call ends exactly once and keeps no timer', LIMIT, async () => {
  const { address, seen } = await deadlineServer();
  const client = grpcJsClient(address);
  try {
    // Client and server timers race to the same instant; either way the call must end once, cleanly.
    const streamErr = await streamError(client.Stream(Buffer.from('q'), new grpc.Metadata(), { deadline: Date.now() + 200 }));
    assert.equal(streamErr.code, grpc.status.DEADLINE_EXCEEDED);
    const unaryErr = await new Promise<grpc.ServiceError | null>((resolve) => client.Silent(Buffer.from('q'), new grpc.Metadata(), { deadline: Date.now() + 200 }, resolve));
    assert.equal(unaryErr?.code, grpc.status.DEADLINE_EXCEEDED);
    await waitFor(() => seen.cancels === 2, 5000);
    await sleep(300);
    assert.equal(seen.cancels, 2);
    assert.deepEqual(
      seen.calls.map((c) => [c.active, c.cancelled]),
      [
        [false, true],
        [false, true],
      ],
    );
    assert.equal(pendingDeadlines(), 0);
  } finally {
    client.close();
  }
});
