// The SPIFFE bundle codec against documents written from the standard and in SPIRE's shape, and
// its own output read back with the same rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  decodeSpiffeBundle,
  encodeSpiffeBundle,
  readBundleDocument,
  spiffeBundleDocument,
  SpiffeBundleError,
} from '../../src/federation/bundle.js';
import { makeCa, makeLeaf, openssl } from '../helpers/openssl.js';

const DIR = fileURLToPath(new URL('../fixtures/spiffe-bundle/', import.meta.url));
const fixture = (name: string): string => readFileSync(DIR + name, 'utf8');
const pemsOf = (text: string): string[] => text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g) ?? [];

function rejects(doc: unknown, expected: string): void {
  assert.throws(
    () => decodeSpiffeBundle(typeof doc === 'string' ? doc : JSON.stringify(doc)),
    (e: unknown) => e instanceof SpiffeBundleError && e.message === expected,
    `expected "${expected}"`,
  );
}

test('the Appendix A bundle of the SPIFFE standard decodes: both RSA roots of the roll, sequence and refresh hint', () => {
  const b = decodeSpiffeBundle(fixture('standard-appendix-a.json'));
  assert.deepEqual(b.caPems, pemsOf(fixture('standard-appendix-a.pem')));
  assert.equal(b.cas.length, 2);
  assert.ok(b.cas.every((c) => c.ca && c.subject === 'O=example.com'));
  assert.equal(b.sequence, 2);
  assert.equal(b.refreshHintSeconds, 2419200);
  assert.deepEqual(b.ignored, []);
});

test('the shape spire-server bundle show --format spiffe prints decodes, and its JWT-SVID key is ignored', () => {
  const b = decodeSpiffeBundle(fixture('spire-bundle-show.json'));
  assert.deepEqual(b.caPems, pemsOf(fixture('spire-bundle-show.pem')));
  assert.equal(b.refreshHintSeconds, 60);
  assert.equal(b.sequence, 3);
  assert.deepEqual(b.ignored, ['keys[1]: use "jwt-svid"']);
});

test('our encoder output decodes with the same rules, and its key parameters are the ones openssl reads from the certificate', () => {
  const ec = makeCa('enc-ec', { trustDomain: 'enc.test' });
  const rsa = fixture('standard-appendix-a.pem');
  const text = encodeSpiffeBundle({ cas: [ec.certPem, rsa], sequence: 7, refreshHintSeconds: 300 });
  assert.ok(text.endsWith('\n'));
  const doc = JSON.parse(text);
  assert.deepEqual(Object.keys(doc), ['keys', 'spiffe_refresh_hint', 'spiffe_sequence']);
  assert.deepEqual(doc.keys.map((k: any) => [k.use, k.kty, k.x5c.length]), [
    ['x509-svid', 'EC', 1],
    ['x509-svid', 'RSA', 1],
    ['x509-svid', 'RSA', 1],
  ]);
  // EC point 04||x||y: the last 65 bytes of the SubjectPublicKeyInfo openssl prints.
  const spki = Buffer.from(openssl(['x509', '-noout', '-pubkey'], ec.certPem).replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const point = spki.subarray(spki.length - 65);
  assert.equal(point[0], 4);
  assert.equal(Buffer.from(doc.keys[0].x, 'base64url').toString('hex'), point.subarray(1, 33).toString('hex'));
  assert.equal(Buffer.from(doc.keys[0].y, 'base64url').toString('hex'), point.subarray(33).toString('hex'));
  // x5c is the DER that openssl converts the PEM to, in standard base64.
  const der = execFileSync('openssl', ['x509', '-outform', 'DER'], { input: ec.certPem });
  assert.equal(doc.keys[0].x5c[0], der.toString('base64'));
  const back = decodeSpiffeBundle(text);
  assert.deepEqual(back.caPems, [...pemsOf(ec.certPem), ...pemsOf(rsa)]);
  assert.equal(back.sequence, 7);
  assert.equal(back.refreshHintSeconds, 300);
  assert.doesNotMatch(text, /"d"|PRIVATE/);
});

test('the encoder drops a duplicate CA and refuses a certificate that is not a CA', () => {
  const ca = makeCa('dup');
  const doc = spiffeBundleDocument({ cas: [ca.certPem, ca.certPem] });
  assert.equal((doc.keys as unknown[]).length, 1);
  assert.equal(doc.spiffe_sequence, undefined);
  assert.throws(() => encodeSpiffeBundle({ cas: [makeLeaf('leaf')] }), /is not a CA/);
});

const valid = () => JSON.parse(fixture('spire-bundle-show.json'));

test('x5c must hold exactly one certificate, in standard base64, that is a CA', () => {
  const two = valid();
  two.keys[0].x5c.push(two.keys[0].x5c[0]);
  rejects(two, 'keys[0].x5c: must hold exactly one certificate');
  const none = valid();
  delete none.keys[0].x5c;
  rejects(none, 'keys[0].x5c: must hold exactly one certificate');
  const url = valid();
  url.keys[0].x5c[0] = Buffer.from(url.keys[0].x5c[0], 'base64').toString('base64url');
  rejects(url, 'keys[0].x5c[0]: must be standard base64 (not base64url)');
  const junk = valid();
  junk.keys[0].x5c[0] = Buffer.from('not a certificate').toString('base64');
  rejects(junk, 'keys[0].x5c[0]: is not an X.509 certificate');
  const leaf = valid();
  const leafCert = new X509Certificate(makeLeaf('leaf'));
  const jwk = leafCert.publicKey.export({ format: 'jwk' });
  leaf.keys[0] = { use: 'x509-svid', kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y, x5c: [leafCert.raw.toString('base64')] };
  rejects(leaf, 'keys[0].x5c[0]: certificate is not a CA');
});

test("the public key parameters must be the certificate's key, and the position of the bad key is named", () => {
  const other = new X509Certificate(makeCa('other').certPem).publicKey.export({ format: 'jwk' });
  const doc = JSON.parse(fixture('standard-appendix-a.json'));
  doc.keys.push({ ...valid().keys[0], x: other.x });
  rejects(doc, "keys[2].x: does not match the certificate's public key");
  const kty = valid();
  kty.keys[0].kty = 'RSA';
  rejects(kty, "keys[0].kty: is RSA but the certificate's key is EC");
  const crv = valid();
  crv.keys[0].crv = 'P-384';
  rejects(crv, "keys[0].crv: does not match the certificate's public key");
  const missing = JSON.parse(fixture('standard-appendix-a.json'));
  delete missing.keys[1].n;
  rejects(missing, 'keys[1].n: must be set');
  const noKty = valid();
  delete noKty.keys[0].kty;
  rejects(noKty, 'keys[0].kty: must be set');
});

test('a key carrying private key material is refused, whatever its use', () => {
  const d = valid();
  d.keys[1].d = 'AAAA';
  rejects(d, 'keys[1].d: a bundle must not carry private key material');
});

test('keys of unknown use or key type are ignored as the standard requires; keys must be present', () => {
  const doc = valid();
  doc.keys.push({ use: 'wit-svid', kty: 'EC' }, { kty: 'EC' }, { use: 'x509-svid', kty: 'AKP', alg: 'ML-DSA-44', pub: 'AA' });
  const b = decodeSpiffeBundle(JSON.stringify(doc));
  assert.equal(b.cas.length, 1);
  assert.deepEqual(b.ignored, ['keys[1]: use "jwt-svid"', 'keys[2]: use "wit-svid"', 'keys[3]: use missing', 'keys[4]: kty "AKP"']);
  rejects({ spiffe_sequence: 1 }, 'keys: must be present');
  rejects({ keys: {} }, 'keys: must be a list');
  rejects({ keys: [1] }, 'keys[0]: must be an object');
  assert.deepEqual(decodeSpiffeBundle('{"keys":[]}').cas, []);
});

test('the document, sequence and refresh hint are checked', () => {
  assert.throws(() => decodeSpiffeBundle('{"keys":'), /^SpiffeBundleError: not valid JSON: /);
  rejects('[]', 'must be a JSON object (a JWK Set)');
  rejects({ keys: [], spiffe_sequence: -1 }, 'spiffe_sequence: must be a non-negative integer');
  rejects({ keys: [], spiffe_sequence: '3' }, 'spiffe_sequence: must be a non-negative integer');
  rejects({ keys: [], spiffe_sequence: 2 ** 60 }, 'spiffe_sequence: must not be larger than 2^53-1');
  rejects({ keys: [], spiffe_refresh_hint: 1.5 }, 'spiffe_refresh_hint: must be a non-negative integer');
});

test('readBundleDocument reads a SPIFFE bundle or PEM certificates, and names what is wrong otherwise', () => {
  const json = readBundleDocument('\n  ' + fixture('spire-bundle-show.json'));
  assert.equal(json.format, 'spiffe');
  assert.equal(json.sequence, 3);
  const pem = readBundleDocument(fixture('standard-appendix-a.pem'));
  assert.equal(pem.format, 'pem');
  assert.deepEqual(pem.caPems, pemsOf(fixture('standard-appendix-a.pem')));
  assert.equal(pem.sequence, undefined);
  assert.throws(() => readBundleDocument(makeCa('a').certPem + makeLeaf('b')), { message: 'PEM block 2 is not a CA' });
  assert.throws(() => readBundleDocument('hello'), { message: 'neither a SPIFFE bundle (JSON object) nor PEM certificates' });
  assert.throws(() => readBundleDocument('{"keys": [{"use": "x509-svid", "kty": "EC"}]}'), { message: 'keys[0].x5c: must hold exactly one certificate' });
});

/** A self-signed Ed25519 CA made by openssl. */
function ed25519Ca(cn: string): string {
  const key = openssl(['genpkey', '-algorithm', 'ed25519']);
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-ed-'));
  try {
    writeFileSync(join(dir, 'k'), key);
    return openssl(['req', '-x509', '-new', '-key', join(dir, 'k'), '-subj', `/CN=${cn}`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('an Ed25519 CA is encoded as an OKP key (RFC 8037) and decodes back; its x must be the certificate key', () => {
  const ed = ed25519Ca('ed-root');
  const ec = makeCa('ec').certPem;
  const doc = spiffeBundleDocument({ cas: [ec, ed], sequence: 1 }) as { keys: Record<string, unknown>[] };
  const okp = doc.keys[1]!;
  const x = new X509Certificate(ed).publicKey.export({ format: 'jwk' }).x;
  assert.deepEqual(Object.keys(okp), ['use', 'kty', 'crv', 'x', 'x5c']);
  assert.deepEqual([okp.kty, okp.crv, okp.x], ['OKP', 'Ed25519', x]);
  const back = decodeSpiffeBundle(JSON.stringify(doc));
  assert.deepEqual(back.caPems, pemsOf(ec + ed).map((p) => new X509Certificate(p).toString()));
  assert.deepEqual(back.ignored, []);
  okp.x = Buffer.alloc(32, 1).toString('base64url');
  rejects(doc, "keys[1].x: does not match the certificate's public key");
});
