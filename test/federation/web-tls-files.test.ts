// https_web: a certificate and key that cannot be served together are refused naming the flags
// and files, at start and on reload (openssl's own text named neither).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBundleEndpoint } from '../../src/federation/endpoint.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { makeCa } from '../helpers/openssl.js';

test('https_web: a key that is not the certificate\'s, a file with no certificate or no key, are refused naming the flag and file (never the key)', async () => {
  const a = makeCa('web-a');
  const b = makeCa('web-b');
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-web-'));
  const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
  const cert = file('cert.pem', a.certPem);
  const otherKey = file('other.key', b.keyPem);
  const garbage = file('garbage.pem', 'not a PEM file\n');
  try {
    const cases: [string, string, RegExp][] = [
      [cert, otherKey, /--bundle-endpoint-tls-key .*other\.key is not the private key of --bundle-endpoint-tls-cert .*cert\.pem/],
      [garbage, otherKey, /--bundle-endpoint-tls-cert .*garbage\.pem: no PEM certificate/],
      [otherKey, cert, /--bundle-endpoint-tls-cert .*other\.key: no PEM certificate/],
      [cert, garbage, /--bundle-endpoint-tls-key .*garbage\.pem: no PEM private key/],
    ];
    for (const [certFile, keyFile, expected] of cases) {
      const err = await startBundleEndpoint({ listen: '127.0.0.1:0', state: new MemoryStateStore(), webTls: { certFile, keyFile } }).then(
        async (ep) => (await ep.close(), undefined),
        (e: Error) => e,
      );
      assert.ok(err, `${certFile} + ${keyFile} refused`);
      assert.match(err.message, expected);
      assert.doesNotMatch(err.message, /PRIVATE KEY-----|MII|MHc/, 'no key material');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
