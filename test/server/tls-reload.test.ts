// The listener key pair reloader on its own: when a pair on disk is served, refused, or looked at again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchTlsKeyPair } from '../../src/server/tls-reload.js';
import { makeCa, makeCaUntil } from '../helpers/openssl.js';

function setup(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-tls-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = makeCa('pair-a');
  const b = makeCa('pair-b', { days: 3660 }); // ends ten days after pair-a
  const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
  writeFileSync(files.certFile, a.certPem);
  writeFileSync(files.keyFile, a.keyPem);
  const applied: string[] = [];
  const errors: string[] = [];
  let clock = new Date();
  const reloader = watchTlsKeyPair(
    {
      ...files,
      intervalMs: 3600_000, // driven by check() below
      apply: (p) => applied.push(new X509Certificate(p.cert).subject.split('\n').pop()!),
      log: { info: () => undefined, error: (o) => errors.push((o as { reason: string }).reason) },
      now: () => clock,
    },
    { cert: Buffer.from(a.certPem), key: Buffer.from(a.keyPem) },
  );
  t.after(() => reloader.close());
  return { files, a, b, applied, errors, reloader, setClock: (d: Date) => (clock = d) };
}

test('a certificate not valid yet (an issuer clock ahead) is refused, logged once, and served once it becomes valid without the files changing', async (t) => {
  const s = setup(t);
  writeFileSync(s.files.certFile, s.b.certPem);
  writeFileSync(s.files.keyFile, s.b.keyPem);
  const validFrom = Date.parse(new X509Certificate(s.b.certPem).validFrom);
  s.setClock(new Date(validFrom - 5000));
  for (let i = 0; i < 4; i++) await s.reloader.check();
  assert.deepEqual(s.applied, []);
  assert.equal(s.errors.length, 1, JSON.stringify(s.errors));
  assert.match(s.errors[0]!, /not valid before/);
  s.setClock(new Date(validFrom + 60_000));
  await s.reloader.check();
  assert.deepEqual(s.applied, ['CN=pair-b']);
});

test('a certificate whose validity OpenSSL cannot read is refused naming why, and the served pair is kept', async (t) => {
  const s = setup(t);
  // notBefore in the year 1000: OpenSSL reads the certificate but gives "Bad time value" for that time.
  const odd = await makeCaUntil('pair-odd', new Date('2100-01-01T00:00:00Z'), { notBefore: new Date('1000-01-01T00:00:00Z') });
  writeFileSync(s.files.certFile, odd.certPem);
  writeFileSync(s.files.keyFile, odd.keyPem);
  for (let i = 0; i < 3; i++) await s.reloader.check();
  assert.deepEqual(s.applied, []);
  assert.deepEqual(s.errors, ['the certificate has a validity that cannot be read (not before "Bad time value", not after "Jan  1 00:00:00 2100 GMT")']);
  assert.equal(s.reloader.health().ok, true, 'the pair served before is still served');
});

test('a pair is read only once its files stood still for a poll: one changing between polls is not applied half-way', async (t) => {
  const s = setup(t);
  await s.reloader.check(); // the start-up pair: nothing to do
  writeFileSync(s.files.certFile, s.b.certPem); // the certificate first…
  await s.reloader.check();
  assert.deepEqual(s.applied, []);
  writeFileSync(s.files.keyFile, s.b.keyPem); // …then its key, before the next poll
  await s.reloader.check();
  assert.deepEqual(s.applied, [], 'changed since the last poll: not read yet');
  assert.deepEqual(s.errors, [], 'no refusal for a pair caught between its two files');
  await s.reloader.check();
  assert.deepEqual(s.applied, ['CN=pair-b']);
});

test('health: ready while the served certificate is valid, not ready naming the file once it has expired (TLS clients refuse it), ready again once a new pair is served', async (t) => {
  const s = setup(t);
  assert.equal(s.reloader.health().ok, true);
  const end = Date.parse(new X509Certificate(s.a.certPem).validTo);
  s.setClock(new Date(end + 1000));
  const h = s.reloader.health();
  assert.equal(h.ok, false);
  assert.match(h.detail ?? '', /listener certificate expired at .*tls\.crt/);
  s.setClock(new Date());
  writeFileSync(s.files.certFile, s.b.certPem);
  writeFileSync(s.files.keyFile, s.b.keyPem);
  await s.reloader.check();
  await s.reloader.check();
  assert.deepEqual(s.applied, ['CN=pair-b']);
  s.setClock(new Date(end + 1000)); // pair-a's end; pair-b (made later, 10 years) is valid
  assert.equal(s.reloader.health().ok, true);
});

test('a pair file swapped for a FIFO, /dev/zero or a 2 MiB file is refused once in the log, naming the flag, the file and why; the served pair is kept', { timeout: 20_000 }, async (t) => {
  const s = setup(t);
  const fifo = `${s.files.certFile}.fifo`;
  execFileSync('mkfifo', [fifo]);
  const { certFile, keyFile } = s.files;
  const bad = [
    { file: certFile, swap: () => symlinkSync(fifo, certFile), problem: `cannot read --tls-cert ${certFile}: is a FIFO, not a regular file` },
    { file: keyFile, swap: () => symlinkSync('/dev/zero', keyFile), problem: `cannot read --tls-key ${keyFile}: is a character device, not a regular file` },
    { file: certFile, swap: () => writeFileSync(certFile, Buffer.alloc(2 * 1024 * 1024, 'a')), problem: `cannot read --tls-cert ${certFile}: is larger than 1 MiB: not read` },
  ];
  for (const b of bad) {
    rmSync(certFile);
    rmSync(keyFile);
    writeFileSync(certFile, s.a.certPem);
    writeFileSync(keyFile, s.a.keyPem);
    rmSync(b.file);
    b.swap();
    s.errors.length = 0;
    // A hung read would hold every later check (one runs at a time): each must end.
    for (let i = 0; i < 4; i++) await s.reloader.check();
    assert.equal(s.errors.length, 1, JSON.stringify(s.errors));
    assert.ok(s.errors[0]!.includes(b.problem), s.errors[0]);
    assert.deepEqual(s.applied, []);
  }
  rmSync(certFile);
  writeFileSync(certFile, s.b.certPem);
  writeFileSync(keyFile, s.b.keyPem);
  await s.reloader.check();
  await s.reloader.check();
  assert.deepEqual(s.applied, ['CN=pair-b'], 'a good pair on disk again is served');
});
