// Seeded fuzzing of the gRPC endpoint over raw HTTP/2 (FUZZ_SEED to replay, FUZZ_CASES for longer
// runs): every malformed call gets a clear gRPC status (or HTTP refusal), in bounded time, and a
// healthy stream opened before keeps receiving pushes. The server runs with token auth, as deployed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientHttp2Session } from 'node:http2';
import { makeWorld, startWorldServer } from '../conformance/world.js';
import { SotwClient } from '../conformance/envoy-client.js';
import { PATHS, SECRET_TYPE, deltaRequest, discoveryRequest, field, grpcFrame, rawCall, rawConnect, type RawEnd } from '../helpers/raw-grpc.js';
import { fuzzSettings, rng, type Rng } from './prng.js';

const METHODS = Object.values(PATHS);
const isDelta = (path: string) => path.includes('Delta');
/** Statuses that tell the client what is wrong (never a hang, never an opaque crash). */
const CLEAR = new Map([
  [3, 'INVALID_ARGUMENT'],
  [8, 'RESOURCE_EXHAUSTED'],
  [12, 'UNIMPLEMENTED'],
  [13, 'INTERNAL'],
  [16, 'UNAUTHENTICATED'],
]);
const CASE_LIMIT_MS = 8000;

interface Case {
  kind: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer[];
}

function badUtf8(r: Rng): string {
  // Lone surrogates and invalid sequences survive as bytes only: build the field from raw bytes.
  return Buffer.from([0x64, 0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, ...r.bytes(r.int(8))]).toString('latin1');
}

const namesMemo = new Map<number, Buffer>();
/** `n` encoded names (field 3), built once per size. */
function manyNames(n: number): Buffer {
  let b = namesMemo.get(n);
  if (!b) namesMemo.set(n, (b = Buffer.concat(Array.from({ length: n }, (_, j) => field(3, `name-${j}`)))));
  return b;
}

function request(path: string, f: Parameters<typeof discoveryRequest>[0]): Buffer {
  return isDelta(path) ? deltaRequest(f) : discoveryRequest(f);
}

function makeCase(r: Rng, forgedToken: string, i: number): Case {
  const path = r.pick(METHODS);
  const headers: Record<string, string> = {};
  const node = r.pick(['default.web', 'default.pay', 'other.x', 'nodot', '', 'default.' + 'a'.repeat(300)]);
  const valid = () => request(path, { node, names: ['default'], typeUrl: SECRET_TYPE });
  const kinds = ['random', 'truncated', 'huge-length', 'content-type', 'type-url', 'many-names', 'utf8', 'auth-garbage', 'auth-forged', 'compressed', 'random-fields', 'big'] as const;
  // A 10 MB message costs; a few per run prove the limit without dominating the time.
  let kind: (typeof kinds)[number] = r.pick(kinds);
  if (kind === 'big') kind = 'random';
  if (i % 500 === 7) kind = 'big';
  switch (kind) {
    case 'random':
      return { kind, path, headers, body: [grpcFrame(r.bytes(r.int(200)))] };
    case 'truncated': {
      const msg = valid();
      return { kind, path, headers, body: [grpcFrame(msg.subarray(0, r.int(msg.length)), msg.length)] };
    }
    case 'huge-length':
      return { kind, path, headers, body: [grpcFrame(r.bytes(r.int(64)), r.pick([0xffffffff, 2 ** 31, 64 * 1024 * 1024, 1024 * 1024 + 1]))] };
    case 'content-type':
      headers['content-type'] = r.pick(['text/plain', 'application/json', 'application/grpc+json', 'application/x-protobuf', '']);
      return { kind, path, headers, body: [grpcFrame(valid())] };
    case 'type-url':
      return { kind, path, headers, body: [grpcFrame(request(path, { node, names: ['default'], typeUrl: r.pick(['type.googleapis.com/envoy.config.cluster.v3.Cluster', 'x', 'type.googleapis.com/' + 'z'.repeat(1000), badUtf8(r)]) }))] };
    case 'many-names': {
      // resource_names (SotW) and resource_names_subscribe (delta) are both field 3.
      const names = manyNames(r.pick([1001, 5000, 5000, 100_000]));
      return { kind, path, headers, body: [grpcFrame(Buffer.concat([request(path, { node, typeUrl: SECRET_TYPE }), names]))] };
    }
    case 'utf8':
      return { kind, path, headers, body: [grpcFrame(request(path, { node: r.chance(0.5) ? badUtf8(r) : node, names: [badUtf8(r)], typeUrl: SECRET_TYPE }))] };
    case 'auth-garbage':
      headers.authorization = r.pick(['Bearer', 'Bearer ', 'Basic Zm9vOmJhcg==', 'Bearer ' + r.bytes(40).toString('base64'), 'bearer x.y.z', 'Bearer ' + 'A'.repeat(8000)]);
      return { kind, path, headers, body: [grpcFrame(valid())] };
    case 'auth-forged':
      headers.authorization = `Bearer ${forgedToken}`;
      return { kind, path, headers, body: [grpcFrame(request(path, { node: 'default.web', names: ['default'], typeUrl: SECRET_TYPE }))] };
    case 'compressed': {
      const f = grpcFrame(valid());
      f[0] = 1; // compressed flag without grpc-encoding
      return { kind, path, headers, body: [f] };
    }
    case 'random-fields':
      // Well-framed protobuf with fields of random numbers and random bytes.
      return { kind, path, headers, body: [grpcFrame(Buffer.concat(Array.from({ length: 1 + r.int(6) }, () => field(1 + r.int(12), r.bytes(r.int(40))))))] };
    case 'big':
      return { kind, path, headers, body: [grpcFrame(Buffer.alloc(10 * 1024 * 1024, 0x41))] };
  }
}

test('fuzzing the gRPC endpoint over raw HTTP/2: each case ends with a clear status in bounded time, the server stays up, a healthy stream keeps getting pushes', { timeout: 120_000 }, async (t) => {
  const { seed, cases } = fuzzSettings(2000);
  t.diagnostic(`FUZZ_SEED=${seed} FUZZ_CASES=${cases}`);
  console.log(`grpc fuzz: FUZZ_SEED=${seed} FUZZ_CASES=${cases}`);
  const r = rng(seed);
  const world = makeWorld();
  const server = await startWorldServer(world, { auth: 'token' });
  const sessions: ClientHttp2Session[] = [];
  // The world's web is namespace shop's: its token and node id name it in full.
  const healthy = new SotwClient(server.address, { node: 'default.web.shop', token: await server.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 }) });
  try {
    // A token signed by another server's key: well-formed, forged.
    const other = makeWorld();
    const forger = await startWorldServer(other, { auth: 'token' });
    const forgedToken = await forger.tokens!.generate({ mesh: 'default', name: 'web', validForMs: 3600_000 });
    await forger.close();
    other.cleanup();

    healthy.request(['default']);
    healthy.ack(await healthy.next(10_000));
    let session = rawConnect(server.address);
    sessions.push(session);
    const byKind = new Map<string, Map<string, number>>();
    let slowest = 0;
    let slowestCase = '';
    let pushes = 0;
    let refused = 0;
    let next = 0;
    const runOne = async (i: number) => {
      const c = makeCase(r, forgedToken, i);
      if (session.destroyed || session.closed) {
        session = rawConnect(server.address);
        sessions.push(session);
      }
      // A 10 MB message stays buffered client-side (the server reads none of it): its own connection.
      const own = c.kind === 'big' ? rawConnect(server.address) : undefined;
      if (own) sessions.push(own);
      const t0 = Date.now();
      // Streams stay open, as Envoy's do, so the server must end them itself; unary calls and a
      // truncated message are only complete (or known incomplete) once the client half-closes.
      const endAfterBody = c.path === PATHS.FetchSecrets || c.kind === 'truncated';
      const call = rawCall(own ?? session, c.path, { headers: c.headers, body: c.body, endAfterBody });
      let timer: NodeJS.Timeout | undefined;
      const end = await Promise.race([
        call.ended,
        new Promise<RawEnd>((resolve) => (timer = setTimeout(() => resolve({ code: undefined, message: '', error: 'TIMEOUT', rstCode: 0, atMs: Date.now() }), CASE_LIMIT_MS))),
      ]);
      clearTimeout(timer);
      if (end.error === 'TIMEOUT') call.stream.close();
      own?.destroy();
      // A fresh connection now and then, as many different clients would have.
      // (the old one is left to finish its calls and destroyed at the end).
      if (i % 100 === 99) {
        session = rawConnect(server.address);
        sessions.push(session);
      }
      const took = Date.now() - t0;
      if (took > slowest) [slowest, slowestCase] = [took, `${c.kind} ${c.path}`];
      const outcome = end.code !== undefined ? `${CLEAR.get(end.code) ?? `status ${end.code}`}` : end.httpStatus && end.httpStatus !== 200 ? `HTTP ${end.httpStatus}` : `no status (${end.error})`;
      const m = byKind.get(c.kind) ?? new Map<string, number>();
      m.set(outcome, (m.get(outcome) ?? 0) + 1);
      byKind.set(c.kind, m);
      // A stream whose client half-closes mid-message never had a request: grpc-js drops the
      // partial bytes and the stream ends OK, which is a clear end too.
      const cleanHalfClose = c.kind === 'truncated' && c.path !== PATHS.FetchSecrets && end.code === 0;
      // HTTP/2's own protection (oversized header block, session memory after a 10 MB message)
      // refuses a stream with RST_STREAM ENHANCE_YOUR_CALM / REFUSED_STREAM: a clear refusal too.
      const transportRefused = end.code === undefined && (end.rstCode === 11 || end.rstCode === 7);
      if (transportRefused) refused++;
      const clear = cleanHalfClose || transportRefused || (end.code !== undefined && CLEAR.has(end.code) && end.message !== '') || (end.httpStatus !== undefined && end.httpStatus >= 400);
      assert.ok(clear, `case ${i} (${c.kind} on ${c.path}, seed ${seed}): ${outcome} "${end.message}"`);
      assert.ok(took < CASE_LIMIT_MS, `case ${i} (${c.kind}) took ${took} ms`);
    };
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < cases) {
          const i = next++;
          await runOne(i);
          // Now and then, the healthy stream must still get a push.
          if (i % 500 === 250) {
            server.svids.rotate('default.web.shop');
            healthy.ack(await healthy.next(10_000));
            pushes++;
          }
        }
      }),
    );
    server.svids.rotate('default.web.shop');
    healthy.ack(await healthy.next(10_000));
    pushes++;
    t.diagnostic(`slowest case ${slowest} ms (${slowestCase}); healthy stream pushes during the run: ${pushes}`);
    for (const [kind, outcomes] of [...byKind].sort()) t.diagnostic(`${kind}: ${[...outcomes].map(([o, n]) => `${o} ×${n}`).join(', ')}`);
    assert.ok(refused <= cases * 0.01, `${refused} of ${cases} cases refused by HTTP/2 rather than answered by gRPC`);
    // Every kind of input was tried.
    assert.ok(byKind.size >= 11, `kinds tried: ${[...byKind.keys()]}`);
  } finally {
    healthy.close();
    for (const s of sessions) s.destroy();
    await server.close();
    world.cleanup();
  }
});
