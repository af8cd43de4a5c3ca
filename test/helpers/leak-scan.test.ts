// The leak scan must itself catch leaks: planted keys, key fragments and tokens are found; the
// certificate and public key of the same key, and ordinary log lines, are not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { TokenAuthority } from '../../src/server/tokens.js';
import { LeakScan } from './leak-scan.js';
import { makeCa } from './openssl.js';

function ecKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    der: privateKey.export({ type: 'pkcs8', format: 'der' }),
    sec1: privateKey.export({ type: 'sec1', format: 'der' }),
    spkiPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

async function findings(setup: (s: LeakScan) => void): Promise<string[]> {
  const s = new LeakScan();
  setup(s);
  return (await s.findings()).map((f) => f.what);
}

test('leak scan: clean logs and admin responses pass, including the served key\'s public key and certificate', async () => {
  const k = ecKey();
  const ca = makeCa('leak-scan-test');
  const out = await findings((s) => {
    s.addKeyPem(k.pem);
    s.addKeyPem(ca.keyPem);
    s.addText('log', JSON.stringify({ level: 'info', msg: 'SVID issued', serial: 'ab12cd34ef56ab12cd34ef56ab12cd34', spiffeId: 'spiffe://td/ns/a/sa/b' }));
    s.addText('admin /debug/secrets', JSON.stringify({ cert: ca.certPem, pub: k.spkiPem }));
  });
  assert.deepEqual(out, []);
});

test('leak scan: fails on a planted PRIVATE KEY block, a 24-character fragment of a served key (any alignment, PEM or JSON-escaped), and a traditional-form copy', async () => {
  const k = ecKey();
  assert.deepEqual(await findings((s) => s.addText('log', '-----BEGIN EC PRIVATE KEY-----')), ['a PRIVATE KEY block']);
  // The private scalar sits after the 36-byte PKCS#8 header: take bytes from there, at each alignment.
  for (const shift of [0, 1, 2]) {
    const fragment = k.der.subarray(36 + shift, 36 + shift + 18).toString('base64'); // 24 characters
    assert.equal(fragment.length, 24);
    const out = await findings((s) => {
      s.addKeyPem(k.pem);
      s.addText('stderr', `oops key=${fragment}" more`);
    });
    assert.deepEqual(out, ['a 24+ character fragment of SVID private key #1'], `shift ${shift}`);
  }
  const jsonEscapedPem = JSON.stringify({ msg: k.pem.replace(/-----[A-Z ]+-----/g, '') });
  assert.equal((await findings((s) => (s.addKeyPem(k.pem), s.addText('log', jsonEscapedPem)))).length, 1);
  const sec1 = k.sec1.toString('base64');
  assert.equal((await findings((s) => (s.addKeyPem(k.pem), s.addText('log', sec1)))).length, 1);
});

test('leak scan: fails on a planted token, whole or a fragment of its signature', async () => {
  const ta = await TokenAuthority.open(new MemoryStateStore());
  const token = await ta.generate({ mesh: 'm', name: 'n', validForMs: 60_000 });
  const sig = token.split('.')[2]!;
  assert.deepEqual(await findings((s) => s.addText('log', `authorization: Bearer ${token}`)), ['a JWT']);
  assert.deepEqual(
    await findings((s) => (s.addToken(token), s.addText('log', `value "${sig.slice(10, 40)}" refused`))),
    ['a 24+ character fragment of token #1'],
  );
  // A 23-character piece is below the threshold.
  assert.deepEqual(await findings((s) => (s.addToken(token), s.addText('log', sig.slice(10, 33)))), []);
});

test('leak scan: assertClean names the source and never prints the secret', async () => {
  const k = ecKey();
  const s = new LeakScan();
  s.addKeyPem(k.pem);
  s.addText('admin /debug/proxies', k.pem);
  await assert.rejects(s.assertClean(), (e: Error) => {
    assert.match(e.message, /admin \/debug\/proxies: a PRIVATE KEY block/);
    assert.ok(!e.message.includes(k.der.subarray(36, 54).toString('base64')));
    return true;
  });
});
