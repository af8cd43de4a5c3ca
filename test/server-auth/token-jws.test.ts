// HS256 proxy tokens and their strict verifier (src/server/jws.ts): what is refused and with which
// reason, claims after the signature, legacy EdDSA state, one MAC key per state, sealed at rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, createPublicKey, createSecretKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { verifyingHmacSha256 } from '../../src/server/jws.js';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { openSealedState } from '../../src/store/state-setup.js';
import { isSealed } from '../../src/store/sealed-state.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { MAC_KEY_STATE_KEY, SIGNING_KEY_STATE_KEY, TokenAuthority, TokenError, type TokenErrorReason } from '../../src/server/tokens.js';
import type { StateStore } from '../../src/store/types.js';

const HOUR = 3600_000;
const MESSAGES: Record<TokenErrorReason, string> = {
  malformed: 'malformed token',
  signature: 'token signature invalid',
  expired: 'token expired',
  revoked: 'token revoked',
};

const b64url = (bytes: Buffer | string): string => Buffer.from(bytes).toString('base64url');
const enc = (v: unknown): string => b64url(JSON.stringify(v));
const nowSec = () => Math.floor(Date.now() / 1000);
const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  mesh: 'm',
  name: 'n',
  iss: 'mesh-sds',
  sub: 'm.n',
  iat: nowSec(),
  exp: nowSec() + 3600,
  jti: randomBytes(8).toString('hex'),
  ...over,
});

async function refused(ta: TokenAuthority, token: string, reason: TokenErrorReason, what: string): Promise<void> {
  await assert.rejects(ta.verify(token), (err: unknown) => {
    assert.ok(err instanceof TokenError, `${what}: expected TokenError, got ${String(err)}`);
    assert.equal(err.reason, reason, what);
    assert.equal(err.message, MESSAGES[reason], what);
    for (const part of token.split('.')) if (part.length > 3) assert.ok(!String(err.stack).includes(part), `${what}: the error quotes the token`);
    return true;
  });
}

/** The state's MAC secret, to build tokens that pass the MAC and so reach the checks behind it. */
async function macSecretOf(state: StateStore): Promise<Buffer> {
  return Buffer.from((JSON.parse((await state.get(MAC_KEY_STATE_KEY))!) as { secret: string }).secret, 'base64url');
}

/** A compact JWS over the given header and payload segments, MAC'd with `secret` (HS256). */
function macd(secret: Buffer, headerPart: string, payloadPart: string): string {
  const input = `${headerPart}.${payloadPart}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

async function fresh(): Promise<{ state: MemoryStateStore; ta: TokenAuthority; secret: Buffer }> {
  const state = new MemoryStateStore();
  const ta = await TokenAuthority.open(state);
  return { state, ta, secret: await macSecretOf(state) };
}

test('HS256 round trip: header {alg HS256, typ JWT, kid}, claims back, revokable by the token', async () => {
  const { ta, secret } = await fresh();
  const token = await ta.generate({ mesh: 'm', name: 'n', workload: 'w', labels: { a: 'b' }, validForMs: HOUR });
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'HS256', typ: 'JWT', kid: ta.keyId });
  const [h, p, s] = token.split('.') as [string, string, string];
  assert.equal(s, createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url'), 'an RFC 7515 HS256 MAC over header.payload');
  const c = await ta.verify(token);
  assert.deepEqual({ mesh: c.mesh, name: c.name, workload: c.workload, labels: c.labels, sub: c.sub }, { mesh: 'm', name: 'n', workload: 'w', labels: { a: 'b' }, sub: 'm.n' });
  // jose, an independent implementation, agrees with what we sign and verify.
  const ours = macd(secret, enc({ alg: 'HS256', typ: 'JWT', kid: ta.keyId }), enc(claims()));
  assert.equal((await ta.verify(ours)).name, 'n');
  const byJose = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: ta.keyId }).sign(secret);
  assert.equal((await ta.verify(byJose)).name, 'n');
  assert.equal(await ta.revokeToken(token), c.jti);
  await refused(ta, token, 'revoked', 'revoked');
});

test('tampered header, payload or signature: "signature" when still well-formed, "malformed" when not', async () => {
  const { ta } = await fresh();
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  const [h, p, s] = token.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;

  await refused(ta, `${h}.${enc({ ...payload, name: 'admin', sub: 'm.admin' })}.${s}`, 'signature', 'payload claims changed');
  await refused(ta, `${h}.${enc({ ...payload, exp: (payload.exp as number) + 3600 })}.${s}`, 'signature', 'expiry extended');
  await refused(ta, `${enc({ ...header, x: 1 })}.${p}.${s}`, 'signature', 'header field added');
  await refused(ta, `${enc({ typ: 'JWT', kid: header.kid, alg: 'HS256' })}.${p}.${s}`, 'signature', 'header re-ordered');
  await refused(ta, `${b64url('{"alg":"HS256",')}.${p}.${s}`, 'malformed', 'header not JSON');
  await refused(ta, `${h}.${b64url('{"mesh":')}.${s}`, 'signature', 'payload not JSON, MAC checked first');
  const flipped = Buffer.from(sig);
  flipped[5]! ^= 1;
  await refused(ta, `${h}.${p}.${b64url(flipped)}`, 'signature', 'one signature bit flipped');
  await refused(ta, `${h}.${p}.${b64url(sig.subarray(0, 31))}`, 'signature', 'signature one byte short');
  await refused(ta, `${h}.${p}.${b64url(Buffer.concat([sig, Buffer.from([0])]))}`, 'signature', 'signature one byte long');
  await refused(ta, `${h}.${p}.`, 'malformed', 'empty signature');
  await refused(ta, `${h}..${s}`, 'malformed', 'empty payload');
  await refused(ta, `.${p}.${s}`, 'malformed', 'empty header');
  await refused(ta, `${h}.${p}`, 'malformed', 'two segments');
  await refused(ta, `${h}.${p}.${s}.${s}`, 'malformed', 'four segments');
  await refused(ta, `${h}.${p}.${s}.`, 'malformed', 'trailing dot');
  await refused(ta, ` ${token}`, 'malformed', 'leading space');
  await refused(ta, `${token}\n`, 'malformed', 'trailing newline');
  assert.equal((await ta.verify(token)).name, 'n', 'the genuine token still verifies');
});

test('only canonical unpadded base64url: padding, "+", "/", stray bits and other characters are malformed', async () => {
  const { ta, secret } = await fresh();
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  const [h, p, s] = token.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  await refused(ta, `${h}.${p}.${s}=`, 'malformed', 'padding on the signature');
  await refused(ta, `${h}.${p}.${sig.toString('base64')}`, 'malformed', 'standard base64 signature (padded)');
  await refused(ta, `${h}.${p}.+${s.slice(1)}`, 'malformed', '"+" in the signature');
  await refused(ta, `${h}.${p}./${s.slice(1)}`, 'malformed', '"/" in the signature');
  await refused(ta, `${h}.${p}.${s.slice(0, 20)}%${s.slice(21)}`, 'malformed', '"%" in the signature');
  // 32 bytes are 43 characters whose last one carries 2 unused bits: set them, same bytes decoded.
  const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(s.at(-1)!);
  const stray = `${s.slice(0, -1)}${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[last | 1]}`;
  assert.deepEqual(Buffer.from(stray, 'base64url'), sig, 'Node decodes the non-canonical form to the same bytes');
  await refused(ta, `${h}.${p}.${stray}`, 'malformed', 'non-canonical last character');
  await refused(ta, `${h}.${p}.${s}AA`, 'malformed', 'signature of impossible length (4n+1 characters)');
  await refused(ta, `${h}.${p}.A`, 'malformed', 'one-character signature');
  // Payload and header encodings too, even when the MAC covers exactly those characters.
  const payloadStd = Buffer.from(JSON.stringify(claims({ name: 'n?>>', sub: 'm.n?>>' }))).toString('base64').replace(/=+$/, '');
  assert.match(payloadStd, /[+/]/, 'the payload encodes to "+" or "/" in standard base64');
  await refused(ta, macd(secret, h, payloadStd), 'malformed', 'standard base64 payload, MAC\'d');
  await refused(ta, macd(secret, `${h}==`, p), 'malformed', 'padded header, MAC\'d');
  await refused(ta, macd(secret, h, `${p} `), 'malformed', 'space in the payload, MAC\'d');
});

test('algorithms and header parameters: alg none / HS512 / EdDSA / RS256, crit, b64, typ, kid', async () => {
  const { ta, secret } = await fresh();
  const p = enc(claims());
  const withHeader = (header: unknown) => macd(secret, enc(header), p);
  const kid = ta.keyId;
  assert.equal((await ta.verify(withHeader({ alg: 'HS256', typ: 'JWT', kid }))).name, 'n', 'the control token verifies');
  assert.equal((await ta.verify(withHeader({ alg: 'HS256', typ: 'JWT' }))).name, 'n', 'kid is optional');

  await refused(ta, `${enc({ alg: 'none', typ: 'JWT' })}.${p}.`, 'malformed', 'alg none, no signature');
  await refused(ta, withHeader({ alg: 'none', typ: 'JWT' }), 'malformed', 'alg none with a signature');
  for (const alg of ['HS512', 'HS384', 'hs256', 'HS256 ', 'RS256', 'ES256', 'EdDSA', 'Ed25519']) {
    await refused(ta, withHeader({ alg, typ: 'JWT', kid }), 'malformed', `alg ${alg}`);
  }
  await refused(ta, withHeader({ typ: 'JWT', kid }), 'malformed', 'no alg');
  await refused(ta, withHeader({ alg: ['HS256'], typ: 'JWT' }), 'malformed', 'alg as a list');
  const hs512 = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS512', typ: 'JWT', kid }).sign(Buffer.concat([secret, secret]));
  await refused(ta, hs512, 'malformed', 'HS512 by jose');
  const eddsa = await new SignJWT(claims()).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid }).sign(generateKeyPairSync('ed25519').privateKey);
  await refused(ta, eddsa, 'malformed', 'EdDSA on a state without a legacy key');

  await refused(ta, withHeader({ alg: 'HS256', typ: 'JWT', kid, crit: ['exp'] }), 'malformed', 'crit header');
  await refused(ta, withHeader({ alg: 'HS256', typ: 'JWT', kid, crit: [] }), 'malformed', 'empty crit header');
  await refused(ta, withHeader({ alg: 'HS256', typ: 'JWT', kid, b64: false, crit: ['b64'] }), 'malformed', 'b64 false with crit');
  await refused(ta, withHeader({ alg: 'HS256', typ: 'JWT', kid, b64: false }), 'malformed', 'b64 false');
  assert.equal((await ta.verify(withHeader({ alg: 'HS256', typ: 'JWT', kid, b64: true }))).name, 'n', 'b64 true is the default');
  for (const typ of [undefined, 'jwt', 'at+jwt', 'JOSE', 'application/jwt', 1]) {
    await refused(ta, withHeader({ alg: 'HS256', typ, kid }), 'malformed', `typ ${String(typ)}`);
  }
  await refused(ta, withHeader({ alg: 'HS256', typ: 'JWT', kid: 7 }), 'malformed', 'kid not a string');
  await refused(ta, withHeader({ alg: 'HS256', typ: 'JWT', kid: 'someone-else' }), 'signature', 'another kid');
  for (const header of [[], ['HS256'], 'HS256', 1, null, true]) {
    await refused(ta, macd(secret, enc(header), p), 'malformed', `header ${JSON.stringify(header)}`);
  }
  await refused(ta, macd(secret, b64url(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), p), 'malformed', 'header not UTF-8');
});

test('a token MAC\'d with another secret is "signature", with or without our kid; huge tokens are malformed', async () => {
  const { ta, secret } = await fresh();
  const other = randomBytes(32);
  const noKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(other);
  await refused(ta, noKid, 'signature', 'another secret, no kid');
  const ourKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: ta.keyId }).sign(other);
  await refused(ta, ourKid, 'signature', 'another secret, our kid');
  const stranger = await (await fresh()).ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  await refused(ta, stranger, 'signature', 'a token of another state');
  // generate refuses to sign one over 4096 characters; one MAC'd with the right key anyway is refused by its length.
  await assert.rejects(ta.generate({ mesh: 'm', name: 'n', labels: { big: 'x'.repeat(9000) }, validForMs: HOUR }), /the token would be \d+ characters, more than the 4096 allowed/);
  const big = macd(secret, enc({ alg: 'HS256', typ: 'JWT', kid: ta.keyId }), enc(claims({ labels: { big: 'x'.repeat(9000) } })));
  await refused(ta, big, 'malformed', 'a genuine token over the length limit');
  await refused(ta, `${'a'.repeat(5000)}.${'b'.repeat(5000)}.c`, 'malformed', 'a huge junk token');
  await assert.rejects(ta.revokeToken(big), (e: unknown) => e instanceof TokenError && e.reason === 'malformed');
  await assert.rejects(ta.revokeToken(noKid), (e: unknown) => e instanceof TokenError && e.reason === 'signature');
});

test('claims are checked after the MAC: payload shape, issuer, required claims, expiry and nbf', async () => {
  const { ta, secret } = await fresh();
  const h = enc({ alg: 'HS256', typ: 'JWT', kid: ta.keyId });
  const signed = (payload: unknown) => macd(secret, h, enc(payload));
  const now = nowSec();
  for (const payload of [[], [claims()], 'x', 1, null]) await refused(ta, signed(payload), 'malformed', `payload ${JSON.stringify(payload)}`);
  await refused(ta, macd(secret, h, b64url(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]))), 'malformed', 'payload not UTF-8');
  await refused(ta, signed(claims({ iss: 'someone' })), 'malformed', 'another issuer');
  for (const c of ['iss', 'sub', 'iat', 'exp', 'jti']) {
    const payload = claims();
    delete payload[c];
    await refused(ta, signed(payload), 'malformed', `no ${c}`);
  }
  await refused(ta, signed(claims({ exp: String(now + 60) })), 'malformed', 'exp not a number');
  await refused(ta, signed(claims({ iat: String(now) })), 'malformed', 'iat not a number');
  await refused(ta, signed(claims({ sub: 'm.other' })), 'malformed', 'sub not mesh.name');
  await refused(ta, signed(claims({ labels: { a: 1 } })), 'malformed', 'labels not strings');
  await refused(ta, signed(claims({ exp: now - 1 })), 'expired', 'expired');
  await refused(ta, signed(claims({ exp: now - 120 })), 'expired', 'long expired');
  await refused(ta, signed(claims({ nbf: now + 60 })), 'malformed', 'nbf in the future');
  await refused(ta, signed(claims({ nbf: String(now) })), 'malformed', 'nbf not a number');
  assert.equal((await ta.verify(signed(claims({ nbf: now - 60 })))).name, 'n', 'nbf in the past is fine');
  // exp is compared with the given time: valid up to the second before it, expired at it.
  const issued = new Date('2030-01-01T00:00:00Z');
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: 60_000, now: issued });
  assert.equal((await ta.verify(token, new Date(issued.getTime() + 59_999))).name, 'n');
  await assert.rejects(ta.verify(token, new Date(issued.getTime() + 60_000)), (e: unknown) => e instanceof TokenError && e.reason === 'expired');
  // A forged expired token is a bad signature, a genuine expired one is expired.
  const forged = await new SignJWT(claims({ exp: now - 10 })).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: ta.keyId }).sign(randomBytes(32));
  await refused(ta, forged, 'signature', 'forged and expired');
  // revokeToken ignores expiry (and nbf), not the MAC or the claims.
  assert.equal(typeof (await ta.revokeToken(signed(claims({ exp: now - 10, jti: 'old' })))), 'string');
  assert.ok(ta.isRevoked('old'));
  await assert.rejects(ta.revokeToken(forged), (e: unknown) => e instanceof TokenError && e.reason === 'signature');
  await assert.rejects(ta.revokeToken(signed(claims({ iss: 'x' }))), (e: unknown) => e instanceof TokenError && e.reason === 'malformed');
});

test('an exp or iat that is not a safe integer (3.6e+26, 1e400, fractional) is malformed, for verify and revokeToken alike', async () => {
  const { ta, secret } = await fresh();
  const h = enc({ alg: 'HS256', typ: 'JWT', kid: ta.keyId });
  const now = nowSec();
  // As JSON text: `1e400` parses to Infinity, which JSON.stringify cannot write.
  const rawPayload = (exp: string, iat = String(now)) => b64url(`{"mesh":"m","name":"n","iss":"mesh-sds","sub":"m.n","iat":${iat},"exp":${exp},"jti":"j${exp.length}${iat.length}"}`);
  for (const [exp, iat] of [['3.6e+26', String(now)], ['1e400', String(now)], [String(2 ** 53), String(now)], [`${now + 60}.5`, String(now)], [String(now + 60), '1e400'], [String(now + 60), `${now}.5`]]) {
    const token = macd(secret, h, rawPayload(exp!, iat));
    await refused(ta, token, 'malformed', `exp ${exp} iat ${iat}`);
    await assert.rejects(ta.revokeToken(token), (e: unknown) => e instanceof TokenError && e.reason === 'malformed', `revoke: exp ${exp} iat ${iat}`);
  }
  assert.equal((await ta.verify(macd(secret, h, rawPayload(String(now + 60))))).name, 'n', 'an integer exp is fine');
  // generate never signs one: at most 10 years.
  await assert.rejects(ta.generate({ mesh: 'm', name: 'n', validForMs: 3.6e29 }), /validForMs must be at most/);
  await assert.rejects(ta.generate({ mesh: 'm', name: 'n', validForMs: 87_601 * HOUR }), /validForMs must be at most/);
  assert.equal((await ta.verify(await ta.generate({ mesh: 'm', name: 'n', validForMs: 87_600 * HOUR }))).name, 'n');
});

/** `auth/signing-key` as releases before HS256 wrote it, and a token signed the way they did. */
async function legacySigning(state: StateStore): Promise<{ kid: string; privateKey: KeyObject; sign: (o?: { exp?: number; jti?: string; kid?: string; key?: KeyObject }) => Promise<string> }> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const privateKeyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  await state.put(SIGNING_KEY_STATE_KEY, JSON.stringify({ version: 1, alg: 'EdDSA', privateKeyPem }));
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const kid = createHash('sha256').update(spki).digest('base64url').slice(0, 16);
  const sign = (o: { exp?: number; jti?: string; kid?: string; key?: KeyObject } = {}) =>
    // The old generate(), verbatim but for the key and times.
    new SignJWT({ mesh: 'm', name: 'n', labels: { app: 'web' } })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: o.kid ?? kid })
      .setIssuer('mesh-sds')
      .setSubject('m.n')
      .setIssuedAt()
      .setExpirationTime(o.exp ?? nowSec() + 3600)
      .setJti(o.jti ?? randomBytes(16).toString('base64url'))
      .sign(o.key ?? privateKey);
  return { kid, privateKey, sign };
}

test('a legacy EdDSA state: tokens the old code signed still verify (until expired or revoked); new tokens are HS256', async () => {
  const state = new MemoryStateStore();
  const legacy = await legacySigning(state);
  const before = await state.get(SIGNING_KEY_STATE_KEY);
  const ta = await TokenAuthority.open(state);
  assert.equal(ta.legacyKeyId, legacy.kid);
  assert.notEqual(ta.keyId, legacy.kid);
  assert.equal(await state.get(SIGNING_KEY_STATE_KEY), before, 'the legacy key is read, never rewritten');

  const old = await legacy.sign({ jti: 'old-1' });
  const c = await ta.verify(old);
  assert.deepEqual({ jti: c.jti, sub: c.sub, labels: c.labels }, { jti: 'old-1', sub: 'm.n', labels: { app: 'web' } });
  const noKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).sign(legacy.privateKey);
  assert.equal((await ta.verify(noKid)).name, 'n', 'kid is optional for EdDSA too');

  const fresh = await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR });
  assert.deepEqual(decodeProtectedHeader(fresh), { alg: 'HS256', typ: 'JWT', kid: ta.keyId });
  assert.equal((await ta.verify(fresh)).name, 'n');

  await refused(ta, await legacy.sign({ exp: nowSec() - 5 }), 'expired', 'an expired legacy token');
  await refused(ta, await legacy.sign({ key: generateKeyPairSync('ed25519').privateKey }), 'signature', 'another Ed25519 key under the legacy kid');
  await refused(ta, await legacy.sign({ kid: ta.keyId }), 'signature', 'the legacy key under the MAC kid');
  const [h, p, s] = old.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  await refused(ta, `${h}.${enc({ ...payload, name: 'admin', sub: 'm.admin' })}.${s}`, 'signature', 'a tampered legacy token');
  await refused(ta, `${h}.${p}.${b64url(Buffer.from(s, 'base64url').subarray(0, 32))}`, 'signature', 'a legacy signature cut to HS256 length');
  const macUnderLegacyKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: legacy.kid }).sign(await macSecretOf(state));
  await refused(ta, macUnderLegacyKid, 'signature', 'HS256 under the legacy kid');

  // Revocation works for legacy tokens, by the token and by a second authority on the same state.
  const other = await TokenAuthority.open(state);
  assert.equal(await other.revokeToken(old), 'old-1');
  await other.refreshRevocations();
  await ta.refreshRevocations();
  await refused(ta, old, 'revoked', 'a revoked legacy token');
  assert.equal((await other.verify(fresh)).name, 'n', 'both authorities share the MAC key');
});

test('a state whose legacy key record is broken refuses to open, without quoting it', async () => {
  const state = new MemoryStateStore();
  await state.put(SIGNING_KEY_STATE_KEY, '{"version":1,"alg":"ES256","privateKeyPem":"-----BEGIN PRIVATE KEY-----"}');
  await assert.rejects(TokenAuthority.open(state), (e: Error) => /does not hold an EdDSA signing key/.test(e.message) && !e.message.includes('BEGIN'));
  const bad = new MemoryStateStore();
  await bad.put(MAC_KEY_STATE_KEY, JSON.stringify({ version: 1, alg: 'HS256', secret: randomBytes(16).toString('base64url') }));
  await assert.rejects(TokenAuthority.open(bad), /auth\/mac-key does not hold a version 1 HS256 key of 32 bytes/);
  await bad.put(MAC_KEY_STATE_KEY, 'not json');
  await assert.rejects(TokenAuthority.open(bad), /auth\/mac-key is not a JSON object/);
});

test('authorities opened concurrently on one fresh state dir (two store instances) agree on one MAC key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-mac-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const stores = await Promise.all([1, 2].map(() => FileStateStore.open(join(dir, 'state'))));
  const [a, b, c] = await Promise.all([stores[0]!, stores[1]!, stores[0]!].map((s) => TokenAuthority.open(s)));
  assert.equal(new Set([a!.keyId, b!.keyId, c!.keyId]).size, 1);
  const fromA = await a!.generate({ mesh: 'm', name: 'a', validForMs: HOUR });
  const fromB = await b!.generate({ mesh: 'm', name: 'b', validForMs: HOUR });
  assert.equal((await b!.verify(fromA)).name, 'a');
  assert.equal((await a!.verify(fromB)).name, 'b');
  assert.deepEqual(await readdir(join(dir, 'state', 'auth')), ['mac-key'], 'no Ed25519 key is created');
});

test('with a state key the MAC secret is sealed: no state file holds it in any encoding', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-mac-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'state.key');
  await generateStateKeyFile(keyFile);
  const stateDir = join(dir, 'state');
  const state = await openSealedState(await FileStateStore.open(stateDir), { stateKeyFile: keyFile, postgres: false });
  const ta = await TokenAuthority.open(state);
  await ta.revokeToken(await ta.generate({ mesh: 'm', name: 'n', validForMs: HOUR }));
  const secret = await macSecretOf(state);
  assert.equal(secret.length, 32);
  const raw = await readFile(join(stateDir, 'auth', 'mac-key'), 'utf8');
  assert.ok(isSealed(raw), 'auth/mac-key is sealed');
  const forms = [secret.toString('base64url'), secret.toString('base64').replace(/=+$/, ''), secret.toString('hex'), secret.toString('latin1')];
  for (const name of ['mac-key', 'revoked']) {
    const text = await readFile(join(stateDir, 'auth', name), 'utf8');
    for (const f of forms) assert.ok(!text.includes(f.slice(0, 24)) && !text.includes(f.slice(-24)), `auth/${name} holds the MAC secret`);
  }
  // Reopened with the key, the same MAC key: tokens keep verifying.
  const again = await TokenAuthority.open(await openSealedState(await FileStateStore.open(stateDir), { stateKeyFile: keyFile, postgres: false }));
  assert.equal(again.keyId, ta.keyId);
});

test('the verifier\'s HMAC-SHA256 matches RFC 4231 and createHmac for short, block-size and long keys', () => {
  // RFC 4231 test cases 2 and 6 (key longer than the block: hashed first).
  assert.equal(verifyingHmacSha256(createSecretKey(Buffer.from('Jefe')), 'what do ya want for nothing?').toString('hex'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  assert.equal(
    verifyingHmacSha256(createSecretKey(Buffer.alloc(131, 0xaa)), 'Test Using Larger Than Block-Size Key - Hash Key First').toString('hex'),
    '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  );
  for (const keyLength of [1, 32, 63, 64, 65, 200]) {
    const key = createSecretKey(randomBytes(keyLength));
    for (const message of ['', 'a', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0', 'x'.repeat(1000)]) {
      assert.deepEqual(verifyingHmacSha256(key, message), createHmac('sha256', key).update(message).digest(), `key ${keyLength} B, message ${message.length} B`);
    }
  }
});
