// A transport floor (SPEC §8): a server that does only what the transport must — accept the
// connections and StreamSecrets streams, answer each stream's first request with one pre-encoded
// response (the identity secret to a stream asking for `default`, the trust bundle otherwise), read
// and ignore every later request (ACKs), and on a trigger push one pre-encoded new trust bundle to
// every stream that asked for it. Forked by bench/run.ts: argv[2] is `grpc-js` (a grpc-js server
// with default options), `http2` (a bare node:http2 server) or `grpc-h2` (mesh-sds' own gRPC
// transport, src/server/grpc-h2: not a SPEC reference, it shows what the product's work costs above it).
// Messages: parent → {type:'push'}; child → {type:'listening', port}, {type:'pushed', streams}.
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { encodeMessage, encodeSecret, SECRET_TYPE_URL } from '../src/xds/protos.js';
import { frameMessage } from '../src/server/grpc-h2/framing.js';

const kind = process.argv[2];
const trustPems = JSON.parse(readFileSync(process.argv[3]!, 'utf8')) as [string, string];
const PATH = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';

/** A DiscoveryResponse around one secret, encoded once (`framedAnswers` adds gRPC's 5-byte prefix where a floor needs it). */
function response(version: string, secret: object): Buffer {
  return encodeMessage('envoy.service.discovery.v3.DiscoveryResponse', {
    version_info: version,
    resources: [{ type_url: SECRET_TYPE_URL, value: encodeSecret(secret) }],
    type_url: SECRET_TYPE_URL,
    nonce: version,
  });
}
// Sizes like mesh-sds' own secrets: a leaf + CA chain with its key, and a PEM trust bundle.
const keyPem = `-----BEGIN PRIVATE KEY-----\n${'A'.repeat(184)}\n-----END PRIVATE KEY-----\n`;
const identity = response('1', {
  name: 'default',
  tls_certificate: { certificate_chain: { inline_bytes: Buffer.from(trustPems[0] + trustPems[0]) }, private_key: { inline_bytes: Buffer.from(keyPem) } },
});
const trust = (v: string, pem: string) => response(v, { name: 'system_trust_bundle', validation_context: { trusted_ca: { inline_bytes: Buffer.from(pem) } } });
const trust1 = trust('1', trustPems[0]);
const trust2 = trust('2', trustPems[0] + trustPems[1]);
/** The answers gRPC-framed once, for the floors whose transport does not frame messages itself. */
const framedAnswers = (): Answers => ({ identity: frameMessage(identity), trust1: frameMessage(trust1), trust2: frameMessage(trust2) });
const TRUST_NAME = Buffer.from('system_trust_bundle');
const asksTrust = (req: Buffer) => req.includes(TRUST_NAME);

const send = (m: object) => void process.send?.(m);
/** Writers of the streams that asked for the trust bundle (pushed to on the trigger). */
const trustStreams = new Set<() => void>();
/** Each trigger pushes the other bundle: the first `trust2`, the next `trust1`, and so on. */
let pushNumber = 0;

/** What a floor writes: the messages as its transport takes them (gRPC-framed or not). */
interface Answers {
  identity: Buffer;
  trust1: Buffer;
  trust2: Buffer;
}

/**
 * One stream of any floor: its first request gets the secret it asks for (a trust stream is then
 * pushed to on the trigger); every later request (ACKs) is read and ignored.
 */
function floorStream(write: (message: Buffer) => void, answers: Answers): { onRequest(req: Buffer): void; onClose(): void } {
  let first = true;
  const push = () => write(pushNumber % 2 === 1 ? answers.trust2 : answers.trust1);
  return {
    onRequest: (req) => {
      if (!first) return;
      first = false;
      if (asksTrust(req)) {
        write(answers.trust1);
        trustStreams.add(push);
      } else write(answers.identity);
    },
    onClose: () => void trustStreams.delete(push),
  };
}

function startGrpcJs(): void {
  const server = new grpc.Server();
  const raw = (b: Buffer) => b;
  server.register(
    PATH,
    (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      const s = floorStream((m) => call.write(m), { identity, trust1, trust2 });
      call.on('data', s.onRequest);
      call.on('error', () => undefined);
      call.on('close', s.onClose);
      call.on('end', () => call.end());
    },
    raw,
    raw,
    'bidi',
  );
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    send({ type: 'listening', port });
  });
}

function startHttp2(): void {
  const framed = framedAnswers();
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1 << 20 } });
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const s = floorStream((m) => stream.write(m), framed);
    stream.on('data', s.onRequest);
    stream.on('error', () => undefined);
    stream.on('close', s.onClose);
  });
  server.on('sessionError', () => undefined);
  server.listen(0, '127.0.0.1', () => send({ type: 'listening', port: (server.address() as { port: number }).port }));
}

/** mesh-sds' own transport (src/server/grpc-h2) with nothing behind it: what the transport costs alone. */
async function startGrpcH2(): Promise<void> {
  const { GrpcServer } = await import('../src/server/grpc-h2/server.js');
  const server = new GrpcServer();
  const framed = framedAnswers();
  server.addBidi<Buffer, Buffer>(PATH, { decode: (b) => b, encodeFramed: (f) => f }, (call) => {
    const s = floorStream((m) => call.write(m), framed);
    call.listener = { onMessage: s.onRequest, onHalfClose: () => call.end(), onCancel: s.onClose };
  });
  const port = await server.listen({ host: '127.0.0.1', port: 0 });
  send({ type: 'listening', port });
}

process.on('message', (m: { type: string }) => {
  if (m.type !== 'push') return;
  pushNumber++;
  for (const push of trustStreams) push();
  send({ type: 'pushed', streams: trustStreams.size });
});
process.on('disconnect', () => process.exit(0));
if (kind === 'grpc-js') startGrpcJs();
else if (kind === 'http2') startHttp2();
else if (kind === 'grpc-h2') void startGrpcH2();
else throw new Error(`floor-server: unknown kind ${kind}`);
