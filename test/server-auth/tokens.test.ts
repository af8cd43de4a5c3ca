import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { TokenAuthority, TokenError, MAC_KEY_STATE_KEY, REVOKED_STATE_KEY, SIGNING_KEY_STATE_KEY } from '../../src/server/tokens.js';
import type { StateStore } from '../../src/store/types.js';

const HOUR = 3600_000;

function jtiOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
}

async function rejectsWith(p: Promise<unknown>, message: string, token: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TokenError, `expected TokenError, got ${String(err)}`);
    assert.equal(err.message, message);
    for (const part of token.split('.')) if (part.length > 0) assert.ok(!err.message.includes(part));
    assert.ok(!String(err.stack).includes(token));
    return true;
  });
}

test('generate then verify returns every claim, bound to mesh and name', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const now = new Date();
  const token = await ta.generate({
    mesh: 'default',
    name: 'web-1.ns',
    workload: 'web',
    labels: { app: 'web', 'kuma.io/zone': 'z1' },
    validForMs: HOUR,
    now,
  });
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'HS256', typ: 'JWT', kid: ta.keyId });
  const c = await ta.verify(token);
  assert.equal(c.iss, 'mesh-sds');
  assert.equal(c.sub, 'default.web-1.ns');
  assert.equal(c.mesh, 'default');
  assert.equal(c.name, 'web-1.ns');
  assert.equal(c.workload, 'web');
  assert.deepEqual(c.labels, { app: 'web', 'kuma.io/zone': 'z1' });
  assert.equal(c.iat, Math.floor(now.getTime() / 1000));
  assert.equal(c.exp, Math.floor((now.getTime() + HOUR) / 1000));
  assert.match(c.jti, /^[A-Za-z0-9_-]{16,}$/);
  const other = await ta.verify(await ta.generate({ mesh: 'default', name: 'web-1.ns', validForMs: HOUR }));
  assert.notEqual(other.jti, c.jti, 'every token gets its own jti');
  assert.equal(other.workload, undefined);
  assert.equal(other.labels, undefined);
});

test('an expired token is rejected as expired', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const issued = new Date('2030-01-01T00:00:00Z');
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR, now: issued });
  await ta.verify(token, new Date(issued.getTime() + HOUR - 1000));
  await rejectsWith(ta.verify(token, new Date(issued.getTime() + HOUR + 1000)), 'token expired', token);
});

test('a token signed by another authority (another key) is rejected', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const stranger = await TokenAuthority.open(new MemoryStateStore());
  const token = await stranger.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  await rejectsWith(ta.verify(token), 'token signature invalid', token);
});

test('a forged token reusing our kid but MAC\'d with another secret is rejected', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const forged = await new SignJWT({ mesh: 'm', name: 'n' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: ta.keyId })
    .setIssuer('mesh-sds')
    .setSubject('m.n')
    .setIssuedAt()
    .setExpirationTime('1h')
    .setJti('x')
    .sign(randomBytes(32));
  await rejectsWith(ta.verify(forged), 'token signature invalid', forged);
});

test('a tampered payload (name changed, signature kept) is rejected', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const token = await ta.generate({ mesh: 'm', name: 'low', labels: { role: 'user' }, validForMs: HOUR });
  const [h, p, s] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  claims.name = 'admin';
  claims.sub = 'm.admin';
  claims.labels = { role: 'admin' };
  const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
  await rejectsWith(ta.verify(tampered), 'token signature invalid', tampered);
});

test('unsigned (alg none), other algorithms (HS512, EdDSA without a legacy key) and garbage tokens are malformed', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = { iss: 'mesh-sds', sub: 'm.n', mesh: 'm', name: 'n', iat: 1, exp: 9999999999, jti: 'j' };
  const none = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(body)}.`;
  await rejectsWith(ta.verify(none), 'malformed token', none);
  const hs512 = await new SignJWT(body).setProtectedHeader({ alg: 'HS512', typ: 'JWT', kid: ta.keyId }).sign(new Uint8Array(64));
  await rejectsWith(ta.verify(hs512), 'malformed token', hs512);
  const eddsa = await new SignJWT(body).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: ta.keyId }).sign(generateKeyPairSync('ed25519').privateKey);
  await rejectsWith(ta.verify(eddsa), 'malformed token', eddsa);
  for (const junk of ['', 'abc', 'a.b.c', 'x'.repeat(10000)]) {
    await assert.rejects(ta.verify(junk), (e: unknown) => e instanceof TokenError && e.message === 'malformed token');
  }
});

test('a revocation by a second authority on the same state reaches the first by its background refresh', async () => {
  const state = new MemoryStateStore();
  const seen: string[][] = [];
  const server = await TokenAuthority.open(state, { revocationRefreshMs: 50, onRevoked: (jtis) => seen.push(jtis) });
  try {
    const cli = await TokenAuthority.open(state);
    const token = await server.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
    const keep = await server.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
    const { jti } = await server.verify(token);
    await cli.revoke(jti);
    const until = Date.now() + 5000;
    while (!server.isRevoked(jti) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await rejectsWith(server.verify(token), 'token revoked', token);
    assert.deepEqual(seen, [[jti]], 'the server is told about the new revocation once');
    await server.verify(keep); // other tokens of the same proxy stay valid
  } finally {
    server.close();
  }
});

test('a revocation list truncated to nothing keeps the last list in force (not "no revocations"), and a fresh start refuses it naming the key', async () => {
  const state = new MemoryStateStore();
  const errors: unknown[] = [];
  const server = await TokenAuthority.open(state, { revocationRefreshMs: 20, onRevocationRefreshError: (e) => errors.push(e) });
  try {
    const token = await server.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
    await server.revoke((await server.verify(token)).jti);
    await state.put(REVOKED_STATE_KEY, '');
    const until = Date.now() + 5000;
    while (errors.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.match(String(errors[0]), /state key auth\/revoked is empty/);
    await rejectsWith(server.verify(token), 'token revoked', token);
    while (server.revocationsHealth().ok && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.match(server.revocationsHealth().detail, /revocation list stale: .*state key auth\/revoked is empty/);
    await assert.rejects(TokenAuthority.open(state), /state key auth\/revoked is empty \(a truncated write\?\)/);
    await state.put(REVOKED_STATE_KEY, '[{"jti"');
    await assert.rejects(TokenAuthority.open(state), /state key auth\/revoked is not valid JSON/);
  } finally {
    server.close();
  }
});

test('a revocation list entry that cannot be read (no string jti) is refused naming it, as a damaged list is: it was skipped, letting its token in, and the next revoke erased it', async () => {
  const state = new MemoryStateStore();
  const ta = await TokenAuthority.open(state);
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  const jti = await ta.revokeToken(token);
  const other = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  // A hand edit gone wrong: the revoked token's entry under a misspelt key.
  const damaged = `[{"jti":"x"},{"jit":${JSON.stringify(jti)}}]`;
  await state.put(REVOKED_STATE_KEY, damaged);
  await assert.rejects(ta.refreshRevocations(), /state key auth\/revoked: entry 1 is not \{"jti": "<token id>"/);
  await rejectsWith(ta.verify(token), 'token revoked', token);
  await assert.rejects(TokenAuthority.open(state), /state key auth\/revoked: entry 1/);
  await assert.rejects(ta.revokeToken(other), /state key auth\/revoked: entry 1/);
  assert.equal(await state.get(REVOKED_STATE_KEY), damaged, 'the list was left as it is');
});

test('revoke on the same authority takes effect immediately, revokeToken records exp and prunes expired entries', async () => {
  const state = new MemoryStateStore();
  const ta = await TokenAuthority.open(state);
  const t1 = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  const c1 = await ta.verify(t1);
  await ta.revoke(c1.jti);
  await rejectsWith(ta.verify(t1), 'token revoked', t1);

  // A token expired over a day ago: its entry carries its exp and is pruned at the next write.
  const old = await ta.generate({ mesh: 'm', name: 'n', validForMs: 1000, now: new Date(Date.now() - 25 * HOUR) });
  const oldJti = await ta.revokeToken(old);
  let list = JSON.parse((await state.get(REVOKED_STATE_KEY))!) as { jti: string; exp?: number }[];
  assert.ok(list.some((e) => e.jti === oldJti && typeof e.exp === 'number'));
  const t2 = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  await ta.revokeToken(t2);
  list = JSON.parse((await state.get(REVOKED_STATE_KEY))!) as { jti: string; exp?: number }[];
  assert.deepEqual(list.map((e) => e.jti).sort(), [c1.jti, jtiOf(t2)].sort());
  assert.ok(!list.some((e) => e.jti === oldJti), 'expired revocations are pruned');
  await rejectsWith(ta.verify(t2), 'token revoked', t2);
  await assert.rejects(ta.revokeToken('garbage'), TokenError);
});

test('a revocation is not pruned the moment its token expires by the writer\'s clock: a server whose clock is behind (or a CLI whose clock is ahead) would take the token back', async () => {
  const state = new MemoryStateStore();
  const ta = await TokenAuthority.open(state);
  // Expires 10 s ago by this clock; a replica whose clock is a minute behind still sees it valid.
  const t = await ta.generate({ mesh: 'm', name: 'n', validForMs: 60_000, now: new Date(Date.now() - 70_000) });
  await ta.revokeToken(t);
  // Another revocation rewrites the list (pruning what has expired).
  await ta.revokeToken(await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR }));
  const behind = await TokenAuthority.open(state);
  assert.throws(() => behind.verifySync(t, new Date(Date.now() - 60_000)), (e: unknown) => e instanceof TokenError && e.reason === 'revoked');
});

test('a fresh authority on the same state reuses the MAC key: tokens verify across instances', async () => {
  const state = new MemoryStateStore();
  const a = await TokenAuthority.open(state);
  const b = await TokenAuthority.open(state);
  assert.equal(a.keyId, b.keyId);
  const fromA = await a.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  const fromB = await b.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  assert.equal((await b.verify(fromA)).sub, 'm.n');
  assert.equal((await a.verify(fromB)).sub, 'm.n');
  const stored = JSON.parse((await state.get(MAC_KEY_STATE_KEY))!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(stored).sort(), ['alg', 'secret', 'version'], 'the MAC key is persisted in the state store');
  assert.equal(stored.alg, 'HS256');
  assert.equal(Buffer.from(stored.secret as string, 'base64url').length, 32);
  assert.ok(!a.keyId.includes(stored.secret as string) && !(stored.secret as string).includes(a.keyId), 'the kid does not reveal the secret');
  assert.equal(await state.get(SIGNING_KEY_STATE_KEY), undefined, 'no Ed25519 key is created any more');
  assert.equal(a.legacyKeyId, undefined);
});

test('concurrent opens on one fresh state agree on one key', async () => {
  const state = new MemoryStateStore();
  const all = await Promise.all([1, 2, 3, 4].map(() => TokenAuthority.open(state)));
  assert.equal(new Set(all.map((t) => t.keyId)).size, 1);
});

test('when the state store fails or stalls, verify answers at once from the last list and health turns stale', async () => {
  const inner = new MemoryStateStore();
  let mode: 'ok' | 'down' | 'stalled' = 'ok';
  const state: StateStore = {
    get: (k) => (mode === 'down' ? Promise.reject(new Error('store down')) : mode === 'stalled' ? new Promise(() => undefined) : inner.get(k)),
    getOrCreate: (k, c) => inner.getOrCreate(k, c),
    update: (k, f) => inner.update(k, f),
    put: (k, v) => inner.put(k, v),
    delete: (k) => inner.delete(k),
  };
  const errors: unknown[] = [];
  const ta = await TokenAuthority.open(state, { revocationRefreshMs: 20, onRevocationRefreshError: (e) => errors.push(e) });
  try {
    const revoked = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
    const good = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
    await ta.revokeToken(revoked);
    assert.equal(ta.revocationsHealth().ok, true);
    for (const m of ['down', 'stalled'] as const) {
      mode = m;
      const t0 = Date.now();
      await rejectsWith(ta.verify(revoked), 'token revoked', revoked);
      await ta.verify(good);
      // A verify that waited on the store would hang (stalled) or wait out a retry (down); 1 s of
      // margin for a loaded machine (100 ms was within reach of one GC pause and a busy core).
      assert.ok(Date.now() - t0 < 1000, `verify must not wait on a ${m} store`);
      const until = Date.now() + 5000;
      while (ta.revocationsHealth().ok && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      const h = ta.revocationsHealth();
      assert.equal(h.ok, false, `stale after missed refreshes (${m})`);
      assert.match(h.detail, m === 'down' ? /store down/ : /has not finished/);
      mode = 'ok';
      if (m === 'down') {
        while (!ta.revocationsHealth().ok && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        assert.equal(ta.revocationsHealth().ok, true, 'fresh again once the store answers');
      }
    }
    assert.ok(errors.length >= 1, 'refresh failures are reported');
  } finally {
    ta.close();
  }
});

test('generate refuses a mesh with a dot, empty names and non-positive validity', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  await assert.rejects(ta.generate({ mesh: 'a.b', name: 'n', validForMs: HOUR }), /mesh/);
  await assert.rejects(ta.generate({ mesh: 'm', name: '', validForMs: HOUR }), /name/);
  await assert.rejects(ta.generate({ mesh: 'm', name: 'n', validForMs: 0 }), /validForMs/);
});

test('a token verified once is still refused once revoked, and a different token text is verified afresh', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  assert.equal((await ta.verify(token)).name, 'n');
  assert.equal((await ta.verify(token)).name, 'n');
  const [h, p, sig] = token.split('.');
  const flipped = `${h}.${p}.${sig!.slice(0, -2)}${sig!.endsWith('AA') ? 'BA' : 'AA'}`;
  await assert.rejects(ta.verify(flipped), TokenError);
  await ta.revoke(jtiOf(token));
  await rejectsWith(ta.verify(token), 'token revoked', token);
});
