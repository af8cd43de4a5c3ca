// MeshTrust CA source `SpiffeBundle`: a SPIFFE bundle document (JWK Set) instead of PEM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { toUniversalObject } from '../../src/api/serialize.js';
import type { MeshTrust } from '../../src/api/types.js';
import { aggregateTrust } from '../../src/trust/aggregate.js';
import { assertAccepted, assertRejected, meshTrust, pem, withField } from './helpers.js';

const FIX = fileURLToPath(new URL('../fixtures/spiffe-bundle/', import.meta.url));
const spire = readFileSync(FIX + 'spire-bundle-show.json', 'utf8');
const spirePem = readFileSync(FIX + 'spire-bundle-show.pem', 'utf8');
const standard = readFileSync(FIX + 'standard-appendix-a.json', 'utf8');

/** A MeshTrust of the SPIRE fixture's trust domain. */
const ofSpire = () => withField(meshTrust(), 'spec.trustDomain', 'domain.test');
const spiffeTrust = (value: unknown) => withField(ofSpire(), 'spec.caBundles', [{ type: 'SpiffeBundle', spiffeBundle: { value } }]);

test('a MeshTrust CA source of type SpiffeBundle is decoded into its X.509 authorities and aggregated like PEM', () => {
  const t = assertAccepted<MeshTrust>(
    withField(ofSpire(), 'spec.caBundles', [
      { type: 'SpiffeBundle', spiffeBundle: { value: spire } },
      { type: 'Pem', pem: { value: pem('root-ca') } },
    ]),
  );
  const std = assertAccepted<MeshTrust>(
    withField(withField(withField(meshTrust(), 'name', 'standard'), 'spec.trustDomain', 'example.com'), 'spec.caBundles', [
      { type: 'SpiffeBundle', spiffeBundle: { value: standard } },
    ]),
  );
  assert.equal(t.spec.caBundles[0]!.pem.value, spirePem);
  const bundle = aggregateTrust([t, std], 'default');
  assert.deepEqual(
    bundle.domains.map((d) => [d.trustDomain, d.cas.length]),
    [
      ['domain.test', 2],
      ['example.com', 2],
    ],
    'one EC authority (the JWT key ignored) and one PEM root; two RSA roots',
  );
  // Serialised back as written: the document, not the decoded PEM.
  const obj = toUniversalObject(t) as any;
  assert.deepEqual(obj.spec.caBundles[0], { type: 'SpiffeBundle', spiffeBundle: { value: spire } });
  assert.deepEqual(obj.spec.caBundles[1], { type: 'Pem', pem: { value: pem('root-ca') } });
});

test('a CA whose URI SAN names another trust domain is refused: it would sign identities of this one', () => {
  assertRejected(
    withField(meshTrust(), 'spec.caBundles', [{ type: 'SpiffeBundle', spiffeBundle: { value: spire } }]),
    'spec.caBundles[0]: certificate 1 is the CA of trust domain "domain.test" (its URI SAN), not of "example.org"',
  );
});

test('a SpiffeBundle CA source that does not read is rejected naming the field and the path inside the document', () => {
  const two = JSON.parse(spire);
  two.keys[0].x5c.push(two.keys[0].x5c[0]);
  assertRejected(spiffeTrust(JSON.stringify(two)), 'spec.caBundles[0].spiffeBundle.value: SPIFFE bundle: keys[0].x5c: must hold exactly one certificate');
  assertRejected(spiffeTrust('{"keys": []}'), 'spec.caBundles[0].spiffeBundle.value: SPIFFE bundle holds no X.509 authority (no key with use "x509-svid")');
  assertRejected(spiffeTrust('not json'), `spec.caBundles[0].spiffeBundle.value: SPIFFE bundle: not valid JSON: ${jsonError('not json')}`);
  assertRejected(spiffeTrust(''), 'spec.caBundles[0].spiffeBundle.value: must not be empty');
  assertRejected(spiffeTrust(7), 'spec.caBundles[0].spiffeBundle.value: must be a string');
  assertRejected(withField(ofSpire(), 'spec.caBundles', [{ type: 'SpiffeBundle' }]), 'spec.caBundles[0].spiffeBundle: must be defined');
  assertRejected(
    withField(ofSpire(), 'spec.caBundles', [{ type: 'SpiffeBundle', spiffeBundle: { value: spire }, pem: { value: pem('root-ca') } }]),
    'spec.caBundles[0].pem: must not be set when type is SpiffeBundle',
  );
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

test('a bundle that is not JSON is refused naming the text JSON.parse quotes with its control characters escaped (for a fetched bundle they are the endpoint\'s bytes)', async () => {
  const { decodeSpiffeBundle } = await import('../../src/api/spiffe-bundle.js');
  assert.throws(
    () => decodeSpiffeBundle('\x1b]0;pwned\x07\x1b[2J'),
    (e: Error) => {
      assert.match(e.message, /^not valid JSON: Unexpected token '\\u001b', "\\u001b\]0;pwned\\u0007/);
      // eslint-disable-next-line no-control-regex -- finding them is the point
      assert.doesNotMatch(e.message, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
      return true;
    },
  );
  assertRejected(spiffeTrust('\x1b[2J'), `spec.caBundles[0].spiffeBundle.value: SPIFFE bundle: not valid JSON: ${jsonError('\x1b[2J').replaceAll('\x1b', '\\u001b')}`);
});
