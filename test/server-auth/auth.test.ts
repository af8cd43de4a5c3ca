import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { createSecretKey } from 'node:crypto';
import { MAC_KEY_STATE_KEY, TokenAuthority } from '../../src/server/tokens.js';
import { signHs256 } from '../../src/server/jws.js';
import { AuthError, authenticateStream, isLoopbackOrUnix, parseNodeId, type AuthOptions, type RequestHeaders } from '../../src/server/auth.js';
import { dataplaneForNode } from '../../src/identity/proxy-index.js';
import type { Dataplane } from '../../src/api/types.js';
import { dataplane } from '../helpers/resources.js';

const HOUR = 3600_000;

function md(authorization?: string | string[]): RequestHeaders {
  const values = authorization === undefined ? [] : Array.isArray(authorization) ? authorization : [authorization];
  return { headerValues: (name) => (name === 'authorization' ? values : []) };
}

async function unauthenticated(authenticate: () => unknown, reason: RegExp, token?: string): Promise<void> {
  assert.throws(authenticate, (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.equal(err.details, err.message);
    assert.match(err.message, reason);
    if (token) for (const part of token.split('.')) assert.ok(!err.message.includes(part), 'message must not contain the token');
    return true;
  });
}

test('parseNodeId splits at the first dot; dataplane names may contain dots', () => {
  assert.deepEqual(parseNodeId('default.web-1'), { mesh: 'default', name: 'web-1' });
  assert.deepEqual(parseNodeId('m.web.ns.svc'), { mesh: 'm', name: 'web.ns.svc' });
  for (const bad of ['', 'nodot', '.name', 'mesh.', 'm.a b']) assert.equal(parseNodeId(bad), undefined, bad);
});

test('a node id with a mesh no resource can have, or a dataplane name with "#", "/", spaces or non-ASCII, is refused naming why, in every mode (a "#" could pass for another proxy\'s claims key); other gateway names keep working', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  for (const [id, why] of [
    ['default.gw-1#086b6a2b3250d7f4', /dataplane name "gw-1#086b6a2b3250d7f4" must not contain '#' or '\/'/],
    ['default.a/../b', /dataplane name "a\/\.\.\/b" must not contain/],
    ['default.caf\u00e9', /dataplane name "caf\u00e9" must be printable ASCII/],
    [`default.${'a'.repeat(318)}`, /must not be longer than 317 characters/],
    ['Default.web', /mesh "Default" must be a valid DNS-1123 label/],
    ['m.a b', /dataplane name "a b"/],
  ] as const) {
    assert.equal(parseNodeId(id), undefined, id);
    await unauthenticated(() => authenticateStream(md(), id, { mode: 'none' }), why);
    await unauthenticated(() => authenticateStream(md('Bearer x'), id, { mode: 'token', tokens }), why);
  }
  // Gateway names no resource could have were always accepted, and keep working (tokens in use).
  for (const id of ['default.edge_gw', 'default.Gateway-1', 'default.gw:8443', `default.${'d'.repeat(200)}.${'n'.repeat(63)}`]) {
    assert.ok(parseNodeId(id), id);
    const name = id.slice('default.'.length);
    const token = await tokens.generate({ mesh: 'default', name, validForMs: HOUR });
    assert.equal(authenticateStream(md(`Bearer ${token}`), id, { mode: 'token', tokens }).name, name);
  }
});

test('token generate refuses names, meshes, label keys and workloads no proxy can have, and a workload claimed twice differently', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const gen = (o: Partial<Parameters<TokenAuthority['generate']>[0]>) => tokens.generate({ mesh: 'm', name: 'n', validForMs: HOUR, ...o });
  await assert.rejects(gen({ name: 'gw-1#086b6a2b3250d7f4' }), /name "gw-1#086b6a2b3250d7f4" must not contain '#'/);
  await assert.rejects(gen({ name: '../x' }), /name "\.\.\/x" must not contain/);
  await assert.rejects(gen({ name: '' }), /name "" must not be empty/);
  await assert.rejects(gen({ mesh: 'Not A Mesh' }), /mesh "Not A Mesh" must be a valid DNS-1123 label/);
  await assert.rejects(gen({ mesh: 'a.b' }), /mesh "a\.b"/);
  await assert.rejects(gen({ labels: { 'bad key': 'v' } }), /label key "bad key"/);
  await assert.rejects(gen({ labels: { '': 'v' } }), /label key ""/);
  await assert.rejects(gen({ workload: '' }), /workload ""/);
  await assert.rejects(gen({ workload: 'frontend', labels: { 'kuma.io/workload': 'billing' } }), /two workloads: workload "frontend" and label "kuma\.io\/workload"="billing"/);
  await gen({ name: 'db-0.team-a', workload: 'billing', labels: { 'kuma.io/workload': 'billing', 'k8s.kuma.io/namespace': 'team-a' } });
});

test('a token claiming two different workloads is refused at authentication (signed before generate refused them)', async () => {
  const state = new MemoryStateStore();
  const tokens = await TokenAuthority.open(state);
  const secret = Buffer.from((JSON.parse((await state.get(MAC_KEY_STATE_KEY))!) as { secret: string }).secret, 'base64url');
  const now = Math.floor(Date.now() / 1000);
  const token = signHs256(
    { alg: 'HS256', secret: createSecretKey(secret), kid: tokens.keyId },
    { mesh: 'm', name: 'gw', workload: 'frontend', labels: { 'kuma.io/workload': 'billing' }, iss: 'mesh-sds', sub: 'm.gw', iat: now, exp: now + 3600, jti: 'contradiction' },
  );
  assert.equal((await tokens.verify(token)).workload, 'frontend', 'the token itself verifies');
  await unauthenticated(() => authenticateStream(md(`Bearer ${token}`), 'm.gw', { mode: 'token', tokens }), /two workloads/, token);
});

test('token mode: a valid bearer token for the node id yields a principal with the token claims', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const token = await tokens.generate({ mesh: 'm', name: 'web.1', workload: 'web', labels: { app: 'web' }, validForMs: HOUR });
  const p = await authenticateStream(md(`Bearer ${token}`), 'm.web.1', { mode: 'token', tokens });
  const claims = await tokens.verify(token);
  assert.deepEqual(p, {
    mesh: 'm',
    name: 'web.1',
    workload: 'web',
    labels: { app: 'web' },
    source: 'token',
    // The token's id and expiry (not the token), so open streams can be re-checked.
    credential: { jti: claims.jti, expiresAtMs: claims.exp * 1000 },
  });
  // Scheme is case-insensitive, as in HTTP.
  await authenticateStream(md(`bearer ${token}`), 'm.web.1', { mode: 'token', tokens });
});

test('token mode: a token for another dataplane or mesh is refused', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const token = await tokens.generate({ mesh: 'm', name: 'web', validForMs: HOUR });
  await unauthenticated(() => authenticateStream(md(`Bearer ${token}`), 'm.db', { mode: 'token', tokens }), /not valid for node id m\.db/, token);
  await unauthenticated(() => authenticateStream(md(`Bearer ${token}`), 'other.web', { mode: 'token', tokens }), /not valid/, token);
});

test('token mode: missing, duplicated, non-bearer and empty authorization are refused', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const token = await tokens.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  const opts = { mode: 'token' as const, tokens };
  await unauthenticated(() => authenticateStream(md(), 'm.n', opts), /missing authorization/);
  await unauthenticated(() => authenticateStream(md([`Bearer ${token}`, `Bearer ${token}`]), 'm.n', opts), /more than one/, token);
  await unauthenticated(() => authenticateStream(md(`Basic ${token}`), 'm.n', opts), /Bearer <token>/, token);
  await unauthenticated(() => authenticateStream(md('Bearer '), 'm.n', opts), /Bearer <token>/);
});

test('token mode: expired, forged and revoked tokens are refused with the reason, never the token', async () => {
  const state = new MemoryStateStore();
  const tokens = await TokenAuthority.open(state);
  const opts = { mode: 'token' as const, tokens };
  const expired = await tokens.generate({ mesh: 'm', name: 'n', validForMs: 1000, now: new Date(Date.now() - HOUR) });
  await unauthenticated(() => authenticateStream(md(`Bearer ${expired}`), 'm.n', opts), /^token expired$/, expired);
  const foreign = await (await TokenAuthority.open(new MemoryStateStore())).generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  await unauthenticated(() => authenticateStream(md(`Bearer ${foreign}`), 'm.n', opts), /^token signature invalid$/, foreign);
  const revoked = await tokens.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  await tokens.revokeToken(revoked);
  await unauthenticated(() => authenticateStream(md(`Bearer ${revoked}`), 'm.n', opts), /^token revoked$/, revoked);
  await unauthenticated(() => authenticateStream(md('Bearer not-a-jwt'), 'm.n', opts), /^malformed token$/);
});

test('token mode: a missing or malformed node id is refused before the token is looked at', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const token = await tokens.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  await unauthenticated(() => authenticateStream(md(`Bearer ${token}`), undefined, { mode: 'token', tokens }), /node id missing/);
  await unauthenticated(() => authenticateStream(md(`Bearer ${token}`), 'nodot', { mode: 'token', tokens }), /node id must be "<mesh>\.<dataplane-name>"/);
});

test('token mode: a namespaced Dataplane reached only through its short node id is refused (node-mismatch) naming the full name to use; its full name, a Dataplane without namespace, a gateway and --auth none are as before', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const inNs = (name: string, ns: string): Dataplane => ({ ...dataplane(name, { 'k8s.kuma.io/namespace': ns, 'k8s.kuma.io/service-account': name }), namespace: ns });
  let stored: Dataplane[] = [inNs('db-0', 'team-a'), dataplane('web', { app: 'web' })];
  // What the server answers (ProxyIndex.dataplane): a node id's own Dataplane, else the only namespaced one of that name.
  const opts: AuthOptions = { mode: 'token', tokens, dataplaneOf: (mesh, name) => dataplaneForNode(stored, mesh, name).dataplane };
  const tok = (name: string, labels?: Record<string, string>) => tokens.generate({ mesh: 'default', name, labels, validForMs: HOUR });
  const refusedShort = (token: string, full: string) =>
    assert.throws(() => authenticateStream(md(`Bearer ${token}`), 'default.db-0', opts), (err: unknown) => {
      assert.ok(err instanceof AuthError);
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.equal(err.reason, 'node-mismatch');
      assert.ok(err.message.includes(`token generate --mesh default --name ${full}`), err.message);
      assert.ok(err.message.includes(`Envoy connect as default.${full}`), err.message);
      for (const part of token.split('.')) assert.ok(!err.message.includes(part), 'message must not contain the token');
      return true;
    });

  const short = await tok('db-0');
  refusedShort(short, 'db-0.team-a');
  // Claims that equal the Dataplane's do not make the short name acceptable.
  refusedShort(await tok('db-0', { 'k8s.kuma.io/namespace': 'team-a' }), 'db-0.team-a');
  assert.equal(authenticateStream(md(`Bearer ${await tok('db-0.team-a')}`), 'default.db-0.team-a', opts).name, 'db-0.team-a');
  assert.equal(authenticateStream(md(`Bearer ${await tok('web')}`), 'default.web', opts).name, 'web', 'a Dataplane without namespace');
  assert.equal(authenticateStream(md(`Bearer ${await tok('edge-gw')}`), 'default.edge-gw', opts).name, 'edge-gw', 'a gateway without a Dataplane');

  // team-a's db-0 is replaced by team-b's: the same token is refused, naming team-b's full name.
  stored = [inNs('db-0', 'team-b')];
  refusedShort(short, 'db-0.team-b');
  // Two namespaces hold db-0: the short node id names neither (ambiguous, as before), so nothing is followed.
  stored = [inNs('db-0', 'team-a'), inNs('db-0', 'team-b')];
  assert.equal(authenticateStream(md(`Bearer ${short}`), 'default.db-0', opts).name, 'db-0');
  // A Universal db-0 without namespace is the short node id's own Dataplane: not an alias.
  stored = [inNs('db-0', 'team-a'), dataplane('db-0', { app: 'db' })];
  assert.equal(authenticateStream(md(`Bearer ${short}`), 'default.db-0', opts).name, 'db-0');

  // --auth none follows the alias as before: the node id alone selects the Dataplane.
  stored = [inNs('db-0', 'team-a')];
  assert.deepEqual(authenticateStream(md(), 'default.db-0', { ...opts, mode: 'none' }), { mesh: 'default', name: 'db-0', source: 'none' });
});

test('none mode: the principal comes from the node id alone and ignores any proxy-sent metadata', async () => {
  const p = await authenticateStream(md('Bearer whatever'), 'dev.web.1', { mode: 'none' });
  assert.deepEqual(p, { mesh: 'dev', name: 'web.1', source: 'none' });
  await unauthenticated(() => authenticateStream(md(), 'bad', { mode: 'none' }), /node id/);
});

test('isLoopbackOrUnix accepts only loopback hosts and unix sockets: not a TCP host spelt UNIX or unix-abstract (grpc-js reads unix: as written), nor a name below localhost (it goes to DNS)', () => {
  for (const a of ['127.0.0.1:15443', '127.1.2.3:1', 'localhost:80', 'LOCALHOST:1', '[::1]:15443', '::1', 'unix:///tmp/sds.sock',
    'unix:/tmp/x', '[::ffff:127.0.0.1]:1', '[0:0:0:0:0:0:0:1]:5', 'dns:///localhost:1', 'ipv4:127.0.0.1:1', '127.0.0.1']) {
    assert.equal(isLoopbackOrUnix(a), true, a);
  }
  for (const a of ['0.0.0.0:15443', '[::]:15443', '::', '10.0.0.1:1', '192.168.1.1:80', 'example.com:443', 'localhost.example.com:1',
    '128.0.0.1:1', '[::ffff:10.0.0.1]:1', '[::2]:1', '', 'UNIX:443', 'unix-abstract:sds', 'db.localhost:1', 'a.b.localhost:1']) {
    assert.equal(isLoopbackOrUnix(a), false, a);
  }
});

test('each refusal carries the auth-failures reason it is counted under, whatever node id or message it quotes', async () => {
  const tokens = await TokenAuthority.open(new MemoryStateStore());
  const other = await TokenAuthority.open(new MemoryStateStore());
  const web = dataplane('web', { app: 'web' });
  const opts: AuthOptions = { mode: 'token', tokens, dataplaneOf: (mesh, name) => (mesh === 'default' && name === 'web' ? web : undefined) };
  const tokenFor = (name: string, claims: { labels?: Record<string, string>; workload?: string } = {}, validForMs = HOUR) =>
    tokens.generate({ mesh: 'default', name, validForMs, ...claims });
  const good = await tokenFor('web');
  const revoked = await tokenFor('web');
  await tokens.revokeToken(revoked);
  const expiring = await tokenFor('web', {}, 1000);
  const forged = await other.generate({ mesh: 'default', name: 'web', validForMs: HOUR });
  const mismatched = await tokenFor('web', { labels: { app: 'payments' } });
  await new Promise((r) => setTimeout(r, 2100)); // past the expiring token's exp (whole seconds)
  const cases: [string, string, string | string[] | undefined][] = [
    ['no-token', 'default.web', undefined],
    ['no-token', 'default.web', 'Basic abc'],
    ['no-token', 'default.web', [`Bearer ${good}`, `Bearer ${good}`]],
    ['bad-node-id', 'nodot', `Bearer ${good}`],
    ['malformed', 'default.web', 'Bearer not-a-jwt'],
    ['signature', 'default.web', `Bearer ${forged}`],
    ['revoked', 'default.web', `Bearer ${revoked}`],
    ['expired', 'default.web', `Bearer ${expiring}`],
    ['node-mismatch', 'default.revoked-expired-signature-Bearer', `Bearer ${good}`],
    ['claims', 'default.web', `Bearer ${mismatched}`],
  ];
  for (const [reason, node, authorization] of cases) {
    assert.throws(
      () => authenticateStream(md(authorization), node, opts),
      (e: unknown) => e instanceof AuthError && e.reason === reason,
      `${reason}: ${node}`,
    );
  }
  assert.equal(authenticateStream(md(`Bearer ${good}`), 'default.web', opts).name, 'web');
});
