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

test('scrubSecrets drops any string containing PRIVATE KEY whatever its property name, and KeyObjects', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const out = scrubSecrets({
    material: PEM_KEY,
    list: ['fine', `prefix ${PEM_KEY}`],
    rsa: '-----BEGIN RSA PRIVATE KEY-----',
    keyObject: privateKey,
    nested: { innocent: PEM_KEY, ok: 1 },
    map: new Map<string, unknown>([['a', PEM_KEY], ['b', 'x']]),
  }) as any;
  assert.ok(!JSON.stringify(out).includes('PRIVATE KEY'));
  assert.ok(!('material' in out) && !('rsa' in out) && !('keyObject' in out));
  assert.deepEqual(out.list, ['fine', '[REDACTED]']);
  assert.deepEqual(out.nested, { ok: 1 });
  assert.deepEqual(out.map, { b: 'x' });
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
