import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startServer, type ServeConfig } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { decodeSecret, loadProtos } from '../../src/xds/protos.js';
import { makeCa, openssl } from '../helpers/openssl.js';
import { writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-transport-'));
after(() => rm(root, { recursive: true, force: true }));
await cp('examples/quickstart', join(root, 'resources'), { recursive: true });
const base = (over: Partial<ServeConfig>): ServeConfig => ({
  resourcesDir: join(root, 'resources'),
  stateDir: join(root, 'state'),
  listen: '127.0.0.1:0',
  auth: 'none',
  zone: 'default',
  logger: createLogger('silent'),
  ...over,
});

function fetchDefault(target: string, creds: grpc.ChannelCredentials, opts: grpc.ClientOptions = {}): Promise<string[]> {
  const Client = grpc.makeGenericClientConstructor(loadProtos().SecretDiscoveryService as never, 'SDS');
  const c = new Client(target, creds, opts) as unknown as grpc.Client & { FetchSecrets: (req: unknown, cb: (e: grpc.ServiceError | null, r?: { resources: { value: Buffer }[] }) => void) => void };
  return new Promise((resolve, reject) =>
    c.FetchSecrets({ node: { id: 'default.backend-1', cluster: 'x' }, resource_names: ['system_trust_bundle'] }, (e, r) => {
      c.close();
      if (e) reject(e);
      else resolve(r!.resources.map((x) => x.value.toString('latin1')));
    }),
  );
}

test('a unix socket listener is created with mode 0600 and serves SDS', async () => {
  const sock = join(root, 'sds.sock');
  const s = await startServer(base({ listen: `unix://${sock}` }));
  try {
    await s.ready;
    assert.equal((await stat(sock)).mode & 0o777, 0o600);
    const res = await fetchDefault(`unix://${sock}`, grpc.credentials.createInsecure());
    assert.equal(res.length, 1);
  } finally {
    await s.close();
  }
});

test('a unix socket in a folder that does not exist (or under a file) refuses start-up naming the folder, before any state is made', async () => {
  const dir = await mkdtemp(join(root, 'nofolder-'));
  const state = join(dir, 'state');
  await assert.rejects(startServer(base({ listen: `unix://${join(dir, 'missing', 'sds.sock')}`, stateDir: state })), /--listen unix:\/\/.*\/missing\/sds\.sock: the folder .*\/missing does not exist; create it first \(mkdir -p /);
  writeFileSync(join(dir, 'file'), 'x');
  await assert.rejects(startServer(base({ listen: `unix://${join(dir, 'file', 'sds.sock')}`, stateDir: state })), /--listen unix:\/\/.*\/file\/sds\.sock: .*is not a folder/);
  await assert.rejects(stat(state), /ENOENT/, 'no state dir was made');
});

test('a unix socket path that is not a socket, or a socket another server listens on, refuses start-up and is left as it was; an unknown --socket-group leaves no socket behind', async () => {
  const dir = await mkdtemp(join(root, 'sock-'));
  const file = join(dir, 'precious.txt');
  writeFileSync(file, 'data');
  await assert.rejects(startServer(base({ listen: `unix://${file}` })), /exists and is not a socket/);
  assert.equal((await stat(file)).isFile(), true, 'the file is still there');
  const sock = join(dir, 'live.sock');
  const first = await startServer(base({ listen: `unix://${sock}`, stateDir: join(dir, 'state1') }));
  try {
    await first.ready;
    await assert.rejects(startServer(base({ listen: `unix://${sock}`, stateDir: join(dir, 'state2') })), /another server is listening on this socket/);
    const res = await fetchDefault(`unix://${sock}`, grpc.credentials.createInsecure());
    assert.equal(res.length, 1, 'the first server still serves on its socket');
  } finally {
    await first.close();
  }
  const grouped = join(dir, 'grouped.sock');
  await assert.rejects(startServer(base({ listen: `unix://${grouped}`, socketGroup: 'no-such-group-mesh-sds', stateDir: join(dir, 'state3') })), /--socket-group no-such-group-mesh-sds: no such group/);
  await assert.rejects(stat(grouped), /ENOENT/);
});

test('plaintext on a non-loopback address is refused without --insecure, and --auth none is refused there', async () => {
  await assert.rejects(startServer(base({ listen: '0.0.0.0:0', auth: 'token' })), /refusing plaintext gRPC on non-loopback address 0\.0\.0\.0:0/);
  await assert.rejects(startServer(base({ listen: '0.0.0.0:0', auth: 'none', insecure: true })), /--auth none is only allowed on a loopback address or a unix socket/);
});

test('an address the listener binds as TCP (UNIX:port, unix-abstract:port: the host "UNIX", wherever DNS puts it) is not taken for a unix socket: plaintext and --auth none are refused there', async () => {
  for (const listen of ['UNIX:0', 'unix-abstract:0', 'Unix:0']) {
    await assert.rejects(startServer(base({ listen, auth: 'token' })), new RegExp(`refusing plaintext gRPC on non-loopback address ${listen}`), listen);
    await assert.rejects(startServer(base({ listen, auth: 'none', insecure: true })), /--auth none is only allowed on a loopback address or a unix socket/, listen);
  }
});

test('the gRPC listener serves TLS with --tls-cert/--tls-key, and a plaintext client cannot talk to it', async () => {
  const ca = makeCa('listener-ca');
  const dir = await mkdtemp(join(root, 'tls-'));
  writeFileSync(join(dir, 'ca.crt'), ca.certPem);
  writeFileSync(join(dir, 'ca.key'), ca.keyPem);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'srv.key')]);
  openssl(['req', '-new', '-key', join(dir, 'srv.key'), '-subj', '/CN=localhost', '-out', join(dir, 'srv.csr')]);
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', join(dir, 'srv.csr'), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '1', '-extfile', join(dir, 'ext'), '-out', join(dir, 'srv.crt')]);
  const s = await startServer(base({ tlsCert: join(dir, 'srv.crt'), tlsKey: join(dir, 'srv.key') }));
  try {
    await s.ready;
    const target = `localhost:${s.port}`;
    const res = await fetchDefault(target, grpc.credentials.createSsl(Buffer.from(ca.certPem)));
    assert.equal(res.length, 1);
    await assert.rejects(fetchDefault(target, grpc.credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 50 } as never), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);
    // HTTP/2 only: a TLS client offering nothing but http/1.1 is refused in the handshake.
    const h1 = tlsConnect({ host: '127.0.0.1', port: s.port!, ca: ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    const outcome = await new Promise<string>((resolve) => {
      h1.on('secureConnect', () => resolve(`connected with ALPN ${String(h1.alpnProtocol)}`));
      h1.on('error', (e) => resolve(`refused: ${e.message}`));
    });
    h1.destroy();
    assert.match(outcome, /^refused: .*(no application protocol|alert)/i);
  } finally {
    await s.close();
  }
});

/** A server key pair for localhost/127.0.0.1 signed by `ca`, written as `<name>.crt` / `<name>.key` in `dir`. */
function serverPair(dir: string, ca: { certPem: string; keyPem: string }, name: string): { cert: string; key: string } {
  writeFileSync(join(dir, 'ca.crt'), ca.certPem);
  writeFileSync(join(dir, 'ca.key'), ca.keyPem);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, `${name}.key`)]);
  openssl(['req', '-new', '-key', join(dir, `${name}.key`), '-subj', `/CN=${name}`, '-out', join(dir, `${name}.csr`)]);
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '1', '-extfile', join(dir, 'ext'), '-out', join(dir, `${name}.crt`)]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** The subject CN of the certificate a new TLS connection to the listener is given. */
function servedCn(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = tlsConnect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost', ALPNProtocols: ['h2'] });
    c.on('secureConnect', () => {
      resolve(String(c.getPeerCertificate().subject.CN));
      c.destroy();
    });
    c.on('error', reject);
  });
}

test('a rotated --tls-cert/--tls-key on disk is served to new connections without a restart; a pair that does not match is refused by name and the served one kept', async () => {
  const ca = makeCa('listener-ca');
  const dir = await mkdtemp(join(root, 'tls-reload-'));
  const first = serverPair(dir, ca, 'first');
  const second = serverPair(dir, ca, 'second');
  const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
  await cp(first.cert, live.cert);
  await cp(first.key, live.key);
  const lines: string[] = [];
  const logger = createLogger('info', { destination: { write: (l: string) => void lines.push(l) } });
  const s = await startServer(base({ tlsCert: live.cert, tlsKey: live.key, tlsReloadMs: 100, logger, admin: '127.0.0.1:0' }));
  try {
    await s.ready;
    assert.equal(await servedCn(s.port!, ca.certPem), 'first');
    // A key that is not the certificate's (the cert replaced before its key): refused, first kept.
    await cp(second.cert, live.cert);
    await waitUntil(() => lines.some((l) => /listener TLS key pair refused/.test(l)), 5000);
    const refusal = lines.find((l) => /listener TLS key pair refused/.test(l))!;
    assert.match(refusal, /key pair cannot be used/);
    assert.doesNotMatch(refusal, /PRIVATE KEY/);
    assert.equal(await servedCn(s.port!, ca.certPem), 'first');
    // Its key lands too: the new pair is served.
    await cp(second.key, live.key);
    await waitUntil(() => lines.some((l) => /listener TLS key pair reloaded/.test(l)), 5000);
    assert.equal(await servedCn(s.port!, ca.certPem), 'second');
    const metrics = await (await fetch(`${s.admin!.url}/metrics`)).text();
    const expiry = /mesh_sds_certificate_expiry_timestamp_seconds\{kind="listener",name="grpc"\} (\d+)/.exec(metrics);
    assert.ok(expiry, 'the listener certificate\'s expiry is a metric');
    assert.ok(Math.abs(Number(expiry[1]) - Date.now() / 1000 - 86400) < 3600, 'that of the one-day certificate now served');
    const res = await fetchDefault(`localhost:${s.port}`, grpc.credentials.createSsl(Buffer.from(ca.certPem)));
    assert.equal(res.length, 1, 'SDS over the new certificate');
  } finally {
    await s.close();
  }
});

test('a --tls-cert/--tls-key pair that can never be served (key of another certificate, not a certificate) refuses start-up naming both files and why', async () => {
  const ca = makeCa('listener-ca');
  const dir = await mkdtemp(join(root, 'tls-bad-'));
  const a = serverPair(dir, ca, 'a');
  const b = serverPair(dir, ca, 'b');
  await assert.rejects(startServer(base({ tlsCert: a.cert, tlsKey: b.key })), (e: Error) => e.message.includes(a.cert) && e.message.includes(b.key) && /the key pair cannot be used/.test(e.message));
  writeFileSync(join(dir, 'junk.crt'), 'not a certificate\n');
  await assert.rejects(startServer(base({ tlsCert: join(dir, 'junk.crt'), tlsKey: a.key })), /junk\.crt .*the certificate does not parse/);
});

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('grpc.health.v1.Health: Check answers SERVING once ready (trailers OK), Watch sends it and stays open; an unknown method is UNIMPLEMENTED', async () => {
  const s = await startServer(base({}));
  const session = rawConnect(s.address);
  try {
    await s.ready;
    const check = rawCall(session, '/grpc.health.v1.Health/Check', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true });
    const bytes: Buffer[] = [];
    check.stream.on('data', (b: Buffer) => bytes.push(b));
    const end = await check.ended;
    assert.deepEqual([end.httpStatus, end.code], [200, 0]);
    // HealthCheckResponse { status: SERVING (1) }, gRPC-framed.
    assert.deepEqual(Buffer.concat(bytes), Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]));
    const watch = rawCall(session, '/grpc.health.v1.Health/Watch', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true });
    assert.equal(await watch.waitForMessages(1, 5000), 1);
    const unknown = await rawCall(session, '/envoy.service.secret.v3.SecretDiscoveryService/Nope', { body: [grpcFrame(Buffer.alloc(0))] }).ended;
    assert.equal(unknown.code, 12);
  } finally {
    session.destroy();
    await s.close();
  }
});

test('a health or FetchSecrets call whose request never completes is ended after the first-request timeout; a connection holds at most 16 health calls, the next is RESOURCE_EXHAUSTED and a closed one frees its place', async () => {
  const { HEALTH_CALLS_PER_CONNECTION } = await import('../../src/server/xds-routes.js');
  const s = await startServer(base({ firstRequestTimeoutMs: 300 }));
  const session = rawConnect(s.address);
  try {
    await s.ready;
    // No message at all, and a message without the end of the client's stream: both held before.
    const silentCheck = rawCall(session, '/grpc.health.v1.Health/Check');
    const unfinishedFetch = rawCall(session, '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', { body: [grpcFrame(Buffer.alloc(0))] });
    for (const [call, path] of [[silentCheck, '/grpc.health.v1.Health/Check'], [unfinishedFetch, '/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets']] as const) {
      const end = await Promise.race([call.ended, new Promise<'held'>((r) => setTimeout(() => r('held'), 5000))]);
      assert.notEqual(end, 'held', `${path} was held past the timeout`);
      if (end === 'held') return;
      assert.equal(end.code, 3, path);
      assert.equal(end.message, `no complete request (its message and the end of the client's stream) within 0.3 s of opening the call to ${path}`);
    }
    // Watch calls stay open by design: the connection's share of them is bounded.
    const watches = Array.from({ length: HEALTH_CALLS_PER_CONNECTION - 1 }, () => rawCall(session, '/grpc.health.v1.Health/Watch', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true }));
    for (const w of watches) assert.equal(await w.waitForMessages(1, 5000), 1);
    const last = rawCall(session, '/grpc.health.v1.Health/Watch', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true });
    assert.equal(await last.waitForMessages(1, 5000), 1, `the ${HEALTH_CALLS_PER_CONNECTION}th is served`);
    const over = await rawCall(session, '/grpc.health.v1.Health/Check', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true }).ended;
    assert.deepEqual([over.code, over.message], [8, `more than ${HEALTH_CALLS_PER_CONNECTION} health calls open on one connection`]);
    const other = rawConnect(s.address);
    try {
      const elsewhere = await rawCall(other, '/grpc.health.v1.Health/Check', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true }).ended;
      assert.equal(elsewhere.code, 0, 'another connection is not affected');
    } finally {
      other.destroy();
    }
    last.stream.close();
    await new Promise((r) => setTimeout(r, 100));
    const again = await rawCall(session, '/grpc.health.v1.Health/Check', { body: [grpcFrame(Buffer.alloc(0))], endAfterBody: true }).ended;
    assert.equal(again.code, 0, 'a closed Watch frees its place');
  } finally {
    session.destroy();
    await s.close();
  }
});

test('shutdown closes open streams cleanly and frees the port', async () => {
  const s = await startServer(base({}));
  await s.ready;
  const Client = grpc.makeGenericClientConstructor(loadProtos().SecretDiscoveryService as never, 'SDS');
  const c = new Client(s.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { StreamSecrets: () => grpc.ClientDuplexStream<unknown, unknown> };
  const call = c.StreamSecrets();
  const ended = new Promise<string>((resolve) => {
    call.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code}`));
    call.on('end', () => resolve('end'));
    call.on('data', () => undefined);
  });
  call.write({ node: { id: 'default.backend-1', cluster: 'x' }, resource_names: ['system_trust_bundle'] });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(s.registry.streams.size, 1);
  await s.close();
  assert.equal(await ended, 'end');
  c.close();
});

test('POST /rotate on the admin server reissues a connected proxy\'s SVID', async () => {
  const s = await startServer(base({ admin: '127.0.0.1:0' }));
  try {
    await s.ready;
    const key = s.svids.attach({ mesh: 'default', name: 'backend-1', source: 'none' });
    const serial = async () => {
      for (let i = 0; i < 100; i++) {
        const id = s.svids.get(key);
        if (id?.state === 'issued') return id.svid.serialHex;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('no SVID issued');
    };
    const before = await serial();
    const url = s.admin!.url;
    assert.equal((await fetch(`${url}/rotate`)).status, 405);
    assert.equal((await fetch(`${url}/rotate?proxy=default.nobody`, { method: 'POST' })).status, 404);
    const r = await fetch(`${url}/rotate?proxy=${key}`, { method: 'POST' });
    assert.deepEqual(await r.json(), { rotated: 1 });
    for (let i = 0; i < 100 && (await serial()) === before; i++) await new Promise((res) => setTimeout(res, 50));
    assert.notEqual(await serial(), before);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const id = s.svids.get(key);
    assert.ok(id?.state === 'issued');
    const expected = `mesh_sds_svid_earliest_expiry_timestamp_seconds{identity="kri_mid_default_default_kuma-system_identity_"} ${id.svid.notAfter.getTime() / 1000}`;
    assert.ok(metrics.includes(expected), 'one expiry series per identity, not per proxy');
    assert.match(metrics, /^mesh_sds_svid_issued_total\{mesh="default",identity="identity"\} [2-9]/m);
    s.svids.detach(key);
  } finally {
    await s.close();
  }
});

test('a storm of POST /rotate on a real server reissues a proxy\'s SVID once per second, not once per request', async () => {
  const s = await startServer(base({ admin: '127.0.0.1:0' }));
  try {
    await s.ready;
    const key = s.svids.attach({ mesh: 'default', name: 'backend-1', source: 'none' });
    /** The serial of the proxy's SVID once it is issued and not `old` (`old` after 2 s). */
    const serialOtherThan = async (old?: string) => {
      for (let i = 0; i < 100; i++) {
        const id = s.svids.get(key);
        if (id?.state === 'issued' && id.svid.serialHex !== old) return id.svid.serialHex;
        await new Promise((r) => setTimeout(r, 20));
      }
      return old;
    };
    const issuedTotal = async () => {
      const text = await (await fetch(`${s.admin!.url}/metrics`)).text();
      return [...text.matchAll(/^mesh_sds_svid_issued_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const first = await serialOtherThan();
    assert.ok(first, 'an SVID was issued');
    const before = await issuedTotal();
    const answers: unknown[] = [];
    for (let i = 0; i < 30; i++) answers.push(await (await fetch(`${s.admin!.url}/rotate`, { method: 'POST' })).json());
    assert.deepEqual(answers[0], { rotated: 1 });
    assert.ok(answers.slice(1).every((a) => JSON.stringify(a) === '{"rotated":0,"coalesced":true}'), JSON.stringify(answers));
    assert.notEqual(await serialOtherThan(first), first, 'the first request rotated');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await issuedTotal()) - before, 1, 'one SVID issued for 30 requests');
    s.svids.detach(key);
  } finally {
    await s.close();
  }
});

test('a garbage request fails only its own stream, with an error naming it, and the server keeps serving', async () => {
  const s = await startServer(base({}));
  try {
    await s.ready;
    const def = loadProtos().SecretDiscoveryService as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>;
    const raw = { StreamSecrets: { ...def.StreamSecrets!, requestSerialize: (b: unknown) => b as Buffer } };
    const Client = grpc.makeGenericClientConstructor(raw as never, 'Raw');
    const c = new Client(s.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { StreamSecrets: () => grpc.ClientDuplexStream<Buffer, unknown> };
    const call = c.StreamSecrets();
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      call.on('error', resolve);
      call.on('data', () => undefined);
      call.write(Buffer.from([0x1a, 0x40, 0x61, 0x62]));
    });
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.details, 'malformed DiscoveryRequest: truncated length-delimited field');
    c.close();
    assert.equal((await fetchDefault(s.address, grpc.credentials.createInsecure())).length, 1);
  } finally {
    await s.close();
  }
});

test('a restarted server keeps its autogenerated CAs (same fingerprints) from the state directory', async () => {
  const stateDir = await mkdtemp(join(root, 'restart-'));
  const fingerprints = async () => {
    const s = await startServer(base({ stateDir }));
    try {
      await s.ready;
      return [...s.authorities.current!.identities.values()].map((i) => i.ca?.fingerprint).sort();
    } finally {
      await s.close();
    }
  };
  const first = await fingerprints();
  assert.equal(first.filter(Boolean).length, 2, 'both quickstart identities have a CA');
  assert.deepEqual(await fingerprints(), first);
});

test('--socket-group gives the unix socket that group and mode 0660', async () => {
  const sock = join(root, 'group.sock');
  const gid = process.getgid?.() ?? 0;
  const s = await startServer(base({ listen: `unix://${sock}`, socketGroup: String(gid) }));
  try {
    await s.ready;
    const st = await stat(sock);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, gid);
  } finally {
    await s.close();
  }
});

test('--flat-trust serves system_trust_bundle as one trusted_ca with a URI SAN prefix per trust domain', async () => {
  const s = await startServer(base({ flatTrust: true }));
  try {
    await s.ready;
    const Client = grpc.makeGenericClientConstructor(loadProtos().SecretDiscoveryService as never, 'SDS');
    const c = new Client(s.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      FetchSecrets: (req: unknown, cb: (e: grpc.ServiceError | null, r?: { resources: { value: Buffer }[] }) => void) => void;
    };
    const res = await new Promise<{ resources: { value: Buffer }[] }>((resolve, reject) =>
      c.FetchSecrets({ node: { id: 'default.backend-1', cluster: 'x' }, resource_names: ['system_trust_bundle'] }, (e, r) => (e ? reject(e) : resolve(r!))),
    );
    c.close();
    const secret = decodeSecret(res.resources[0]!.value) as { validation_context: { trusted_ca: { inline_bytes: Buffer }; match_typed_subject_alt_names: { san_type: string; matcher: { prefix: string } }[]; custom_validator_config?: unknown } };
    const vc = secret.validation_context;
    assert.equal(vc.custom_validator_config, undefined);
    assert.equal((vc.trusted_ca.inline_bytes.toString().match(/BEGIN CERTIFICATE/g) ?? []).length, 3);
    assert.deepEqual(
      vc.match_typed_subject_alt_names.map((m) => `${m.san_type} ${m.matcher.prefix}`),
      ['URI spiffe://default.default.mesh.local/', 'URI spiffe://partner.example/', 'URI spiffe://payments.mesh.local/'],
    );
  } finally {
    await s.close();
  }
});
