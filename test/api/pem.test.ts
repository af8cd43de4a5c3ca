// PEM bundle splitting, shared with trust aggregation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callInWorker } from '../helpers/in-worker.js';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { derToPem, splitPemCertificates } from '../../src/api/pem.js';
import { pem } from './helpers.js';

test('splits concatenated certificates into DER, ignoring text between blocks', () => {
  const text = `# roots\n${pem('root-ca')}\nsome comment\n${pem('intermediate-ca')}`;
  const { ders, error } = splitPemCertificates(text);
  assert.equal(error, undefined);
  assert.equal(ders.length, 2);
  assert.match(new X509Certificate(ders[0] as Buffer).subject, /CN=Test Root CA/);
  assert.match(new X509Certificate(ders[1] as Buffer).subject, /CN=Test Intermediate CA/);
});

test('reports no block, a non-certificate block, bad base64 and non-X.509 bodies', () => {
  assert.equal(splitPemCertificates('').error, 'no PEM certificate found');
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  assert.equal(splitPemCertificates(pem('root-ca') + key).error, 'PEM block 2 is a PRIVATE KEY, not a CERTIFICATE');
  assert.equal(splitPemCertificates('-----BEGIN CERTIFICATE-----\n... (x) ...\n-----END CERTIFICATE-----').error, 'PEM block 1 is not valid base64');
  assert.equal(splitPemCertificates('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----').error, 'PEM block 1 is not an X.509 certificate');
});

test('re-encodes DER to the same PEM', () => {
  const root = splitPemCertificates(pem('root-ca')).ders[0] as Buffer;
  assert.equal(derToPem(root), pem('root-ca'));
});

// The lazy BEGIN…END regex scanned the rest of the text again from every BEGIN without an END:
// 56 KB of BEGIN lines took 29 ms, 112 KB 158 ms, a 4 MB MeshTrust minutes, in validation.
test('a bundle of 100,000 BEGIN lines without an END is refused in one pass', async () => {
  const text = '-----BEGIN CERTIFICATE-----\n'.repeat(100_000);
  const r = await callInWorker(new URL('../../src/api/pem.ts', import.meta.url), 'splitPemCertificates', [text]);
  assert.deepEqual(r, { ders: [], error: 'no PEM certificate found' });
});
