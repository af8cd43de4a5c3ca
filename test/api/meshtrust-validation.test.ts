// MeshTrust rules of SPEC §1: each has an input that fails with an exact `path: message` and one that passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { encodeSpiffeBundle } from '../../src/api/spiffe-bundle.js';
import type { MeshTrust } from '../../src/api/types.js';
import { makeCaUntil, openssl } from '../helpers/openssl.js';
import { assertAccepted, assertRejected, meshTrust, pem, withField } from './helpers.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A self-signed CA:TRUE certificate with the keyUsage given (openssl -addext syntax). */
function makeCaWithKeyUsage(cn: string, keyUsage: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-ku-'));
  try {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'k')]);
    openssl(['req', '-x509', '-new', '-key', join(dir, 'k'), '-out', join(dir, 'c'), '-subj', `/CN=${cn}`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', `keyUsage=${keyUsage}`]);
    return readFileSync(join(dir, 'c'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a valid MeshTrust is accepted as written', () => {
  const mt = assertAccepted<MeshTrust>(meshTrust());
  assert.equal(mt.kind, 'MeshTrust');
  assert.equal(mt.spec.trustDomain, 'example.org');
  assert.equal(mt.spec.caBundles[0]?.pem.value, pem('root-ca'));
  assert.equal(mt.spec.origin, undefined);
});

test('caBundles must not be empty or absent', () => {
  assertRejected(withField(meshTrust(), 'spec.caBundles', []), 'spec.caBundles: must not be empty');
  assertRejected(withField(meshTrust(), 'spec.caBundles', undefined), 'spec.caBundles: must not be empty');
});

test('trustDomain must not be empty or absent', () => {
  assertRejected(withField(meshTrust(), 'spec.trustDomain', ''), 'spec.trustDomain: must not be empty');
  assertRejected(withField(meshTrust(), 'spec.trustDomain', undefined), 'spec.trustDomain: must not be empty');
});

test('trustDomain may have 253 characters but not 254', () => {
  assertAccepted(withField(meshTrust(), 'spec.trustDomain', 'a'.repeat(253)));
  assertRejected(
    withField(meshTrust(), 'spec.trustDomain', 'a'.repeat(254)),
    'spec.trustDomain: must not be longer than 253 characters',
  );
});

test('trustDomain must be a SPIFFE trust domain (lowercase, no scheme)', () => {
  const msg = "spec.trustDomain: must contain only lowercase letters, digits, '.', '-' and '_'";
  assertRejected(withField(meshTrust(), 'spec.trustDomain', 'Example.org'), msg);
  assertRejected(withField(meshTrust(), 'spec.trustDomain', 'spiffe://example.org'), msg);
  assertAccepted(withField(meshTrust(), 'spec.trustDomain', 'default.zone-2.mesh.local'));
});

test('a PEM value that is not an X.509 certificate has incorrect format', () => {
  const msg = 'spec.caBundles[0].pem.value: provided certificate has incorrect format';
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const bad = [
    'not a certificate',
    '',
    '-----BEGIN CERTIFICATE-----\n... (Root CA certificate) ...\n-----END CERTIFICATE-----\n',
    '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    key,
    pem('root-ca') + key,
  ];
  for (const value of bad) {
    assertRejected(withField(meshTrust(), 'spec.caBundles.0.pem.value', value), msg);
  }
});

test('a certificate with CA:TRUE whose keyUsage lacks keyCertSign is not a CA (OpenSSL refuses chains through it), and the message names both requirements', () => {
  const noKeyCertSign = makeCaWithKeyUsage('no-kcs', 'critical,digitalSignature,cRLSign');
  assertRejected(withField(meshTrust(), 'spec.caBundles.0.pem.value', noKeyCertSign), 'spec.caBundles[0].pem.value: certificate 1 is not a CA (a CA certificate has basicConstraints CA:TRUE and, when it has a keyUsage, keyCertSign)');
  assertAccepted(withField(meshTrust(), 'spec.caBundles.0.pem.value', makeCaWithKeyUsage('kcs', 'critical,keyCertSign,cRLSign')));
});

test('every certificate of a bundle must be a CA, and the first that is not is named', () => {
  assertRejected(
    withField(meshTrust(), 'spec.caBundles.0.pem.value', pem('root-ca') + pem('leaf-not-ca')),
    'spec.caBundles[0].pem.value: certificate 2 is not a CA (a CA certificate has basicConstraints CA:TRUE and, when it has a keyUsage, keyCertSign)',
  );
  assertRejected(
    withField(meshTrust(), 'spec.caBundles.0.pem.value', pem('leaf-not-ca')),
    'spec.caBundles[0].pem.value: certificate 1 is not a CA (a CA certificate has basicConstraints CA:TRUE and, when it has a keyUsage, keyCertSign)',
  );
  const mt = assertAccepted<MeshTrust>(
    withField(meshTrust(), 'spec.caBundles.0.pem.value', pem('root-ca') + pem('intermediate-ca')),
  );
  assert.equal(mt.spec.caBundles.length, 1);
});

test('a CA whose validity OpenSSL cannot read is refused naming it, in a Pem or a SpiffeBundle source, though it is valid now', async () => {
  // notBefore in the year 1000: OpenSSL parses the certificate but gives "Bad time value" for the time.
  const odd = await makeCaUntil('Odd Times', new Date('2100-01-01T00:00:00Z'), { notBefore: new Date('1000-01-01T00:00:00Z') });
  assert.equal(new X509Certificate(odd.certPem).validFrom, 'Bad time value', 'the CA was meant to have an unreadable validity');
  assertRejected(
    withField(meshTrust(), 'spec.caBundles.0.pem.value', pem('root-ca') + odd.certPem),
    'spec.caBundles[0].pem.value: certificate 2 has a validity that cannot be read',
  );
  assertRejected(
    withField(meshTrust(), 'spec.caBundles', [{ type: 'SpiffeBundle', spiffeBundle: { value: encodeSpiffeBundle({ cas: [pem('root-ca'), odd.certPem] }) } }]),
    'spec.caBundles[0].spiffeBundle.value: certificate 2 has a validity that cannot be read',
  );
  assertAccepted(withField(meshTrust(), 'spec.caBundles', [{ type: 'SpiffeBundle', spiffeBundle: { value: encodeSpiffeBundle({ cas: [pem('root-ca')] }) } }]));
});

test('problems in a later bundle are reported at its index', () => {
  const obj = withField(meshTrust(), 'spec.caBundles', [
    { type: 'Pem', pem: { value: pem('root-ca') } },
    { type: 'Pem', pem: { value: 'garbage' } },
  ]);
  assertRejected(obj, 'spec.caBundles[1].pem.value: provided certificate has incorrect format');
});

test('bundle type must be Pem', () => {
  assertRejected(withField(meshTrust(), 'spec.caBundles.0.type', 'Jks'), 'spec.caBundles[0].type: must be one of Pem, SpiffeBundle');
  assertRejected(withField(meshTrust(), 'spec.caBundles.0.type', undefined), 'spec.caBundles[0].type: must be one of Pem, SpiffeBundle');
});

test('a Pem bundle needs its pem object', () => {
  assertRejected(withField(meshTrust(), 'spec.caBundles.0.pem', undefined), 'spec.caBundles[0].pem: must be defined');
});

test('a misspelled spec field is an unknown field, naming its path', () => {
  const obj = withField(withField(meshTrust(), 'spec.trustDomain', undefined), 'spec.trustDomian', 'example.org');
  assertRejected(obj, 'spec.trustDomian: unknown field', 'spec.trustDomain: must not be empty');
  assertRejected(withField(meshTrust(), 'spec.caBundles.0.pem.valu', 'x'), 'spec.caBundles[0].pem.valu: unknown field');
});

test('origin.kri is an optional string', () => {
  const mt = assertAccepted<MeshTrust>(withField(meshTrust(), 'spec.origin', { kri: 'kri_mid_default_z__id_' }));
  assert.deepEqual(mt.spec.origin, { kri: 'kri_mid_default_z__id_' });
  assertRejected(withField(meshTrust(), 'spec.origin.kri', 42), 'spec.origin.kri: must be a string');
});

test('a MeshTrust without spec is rejected', () => {
  assertRejected(withField(meshTrust(), 'spec', undefined), 'spec: must be defined');
});
