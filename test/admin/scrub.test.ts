import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { scrubSecrets } from '../../src/server/admin.js';

const PEM_KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n';

test('scrubSecrets drops secret-named properties at any depth and keeps metadata', () => {
  const input = {
    proxies: [
      {
        id: 'm.web',
        spiffeId: 'spiffe://td/ns/a/sa/b',
        notAfter: new Date('2030-01-01T00:00:00Z'),
        certChainPem: '-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n',
        svid: { keyPem: 'k1', privateKey: 'k2', key: 'k3', caPrivateKey: 'k4', serialHex: 'ab' },
        auth: { token: 't1', authorization: 'Bearer t2', Authorization: 'Bearer t3', bearerToken: 't4' },
      },
    ],
  };
  const out = scrubSecrets(input) as any;
  const text = JSON.stringify(out);
  for (const s of ['k1', 'k2', 'k3', 'k4', 't1', 't2', 't3', 't4']) assert.ok(!text.includes(`"${s}"`) && !text.includes(`Bearer ${s}`), s);
  assert.deepEqual(out.proxies[0].svid, { serialHex: 'ab' });
  assert.deepEqual(out.proxies[0].auth, {});
  assert.equal(out.proxies[0].spiffeId, 'spiffe://td/ns/a/sa/b');
  assert.equal(out.proxies[0].notAfter, '2030-01-01T00:00:00.000Z');
  assert.match(out.proxies[0].certChainPem, /BEGIN CERTIFICATE/);
  assert.equal(input.proxies[0]!.svid.keyPem, 'k1', 'input is not mutated');
});

test('scrubSecrets drops any string holding a private key PEM block (even cut short) whatever its property name, and KeyObjects', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const out = scrubSecrets({
    material: PEM_KEY,
    list: ['fine', `prefix ${PEM_KEY}`],
    cut: '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA',
    escaped: 'detail: -----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMG',
    keyObject: privateKey,
    nested: { innocent: PEM_KEY, ok: 1 },
    map: new Map<string, unknown>([['a', PEM_KEY], ['b', 'x']]),
  }) as any;
  assert.ok(!JSON.stringify(out).includes('PRIVATE KEY'));
  assert.ok(!('material' in out) && !('cut' in out) && !('escaped' in out) && !('keyObject' in out));
  assert.deepEqual(out.list, ['fine', '[REDACTED]']);
  assert.deepEqual(out.nested, { ok: 1 });
  assert.deepEqual(out.map, { b: 'x' });
});

test('scrubSecrets keeps a message that only names a private key, blanks a bare key header, and scrubs tokens and base64 key bytes out of other strings', () => {
  const der = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'der' }).toString('base64');
  const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZWZhdWx0LndlYiJ9.xOgzzKDB2y_lDTQwFlyZusv_busckcZUwg7tUlwtdhc';
  const out = scrubSecrets({
    conditions: [{ type: 'Ready', status: 'False', message: 'PEM block 1 is a PRIVATE KEY, not a CERTIFICATE' }],
    header: 'expected a certificate, got -----BEGIN RSA PRIVATE KEY-----',
    lastNack: { detail: `x509 error; token ${jwt} raw ${der} end`, nonce: 'UdRu5', version: 'b5827e0b67023bbc' },
    names: ['kri_mid_default_default_kuma-system_identity_', 'spiffe://default.default.mesh.local/ns/shop/sa/backend', der],
    node: 'default.backend-1-7d9f8c6b5-x2x4z',
  }) as any;
  assert.equal(out.conditions[0].message, 'PEM block 1 is a PRIVATE KEY, not a CERTIFICATE');
  assert.equal(out.header, 'expected a certificate, got [REDACTED]');
  assert.deepEqual(out.lastNack, { detail: 'x509 error; token [REDACTED] raw [REDACTED] end', nonce: 'UdRu5', version: 'b5827e0b67023bbc' });
  assert.deepEqual(out.names, ['kri_mid_default_default_kuma-system_identity_', 'spiffe://default.default.mesh.local/ns/shop/sa/backend', '[REDACTED]']);
  assert.equal(out.node, 'default.backend-1-7d9f8c6b5-x2x4z');
});

test('scrubSecrets copes with cycles, buffers, sets, bigint and toJSON', () => {
  const a: Record<string, unknown> = { name: 'a' };
  a.self = a;
  const out = scrubSecrets({ a, buf: Buffer.from('abc'), set: new Set([1, 2]), big: 10n, j: { toJSON: () => ({ keyPem: 'x', v: 1 }) } }) as any;
  assert.equal(out.a.self, '[Circular]');
  assert.equal(out.buf, '<3 bytes>');
  assert.deepEqual(out.set, [1, 2]);
  assert.equal(out.big, '10');
  assert.deepEqual(out.j, { v: 1 });
  // Shared (non-cyclic) references are copied, not marked circular.
  const shared = { v: 1 };
  assert.deepEqual(scrubSecrets({ x: shared, y: shared }), { x: { v: 1 }, y: { v: 1 } });
});

test('/debug drops by the same field-name rule as the logs: caKey, client_secret, dbPassword, Cookie, jwt go; stateKey, keyId, publicKey stay', () => {
  const out = scrubSecrets({ caKey: 's1', client_secret: 's2', dbPassword: 's3', Cookie: 's4', jwt: 's5', stateKey: 'ca/m/n', keyId: 'k-1', publicKey: 'pub' });
  assert.deepEqual(out, { stateKey: 'ca/m/n', keyId: 'k-1', publicKey: 'pub' });
});
