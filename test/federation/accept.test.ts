// What a refused bundle says: enough for an operator to act on without reading the peer's document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acceptBundle } from '../../src/federation/accept.js';
import { FederationFailure } from '../../src/federation/fetch.js';
import { bundleOf, newCa } from './remote.js';

const TD = 'zone-b.test';

function refusal(fn: () => unknown): FederationFailure {
  try {
    fn();
  } catch (e) {
    if (e instanceof FederationFailure) return e;
    throw e;
  }
  assert.fail('accepted');
}

test('a bundle whose keys all have another use than x509-svid is refused naming the ignored keys and their use', () => {
  const doc = JSON.stringify({ keys: [{ use: 'jwt-svid', kty: 'EC', kid: 'a' }, { kty: 'EC', kid: 'b' }, { use: 'x509_svid', kty: 'EC' }], spiffe_sequence: 4 });
  const f = refusal(() => acceptBundle(doc, TD, undefined));
  assert.equal(f.reason, 'no_ca');
  assert.equal(
    f.message,
    'the bundle carries no X.509 CA: every key was ignored (keys[0]: use "jwt-svid"; keys[1]: use missing; keys[2]: use "x509_svid"); an X.509 CA is a key with use "x509-svid" and kty EC, RSA or OKP',
  );
  // An empty key list says just that.
  assert.equal(refusal(() => acceptBundle(JSON.stringify({ keys: [] }), TD, undefined)).message, 'the bundle carries no X.509 CA: its key list is empty');
  // Many ignored keys are not all quoted.
  const many = JSON.stringify({ keys: Array.from({ length: 40 }, () => ({ use: 'jwt-svid', kty: 'EC' })) });
  assert.match(refusal(() => acceptBundle(many, TD, undefined)).message, /keys\[4\]: use "jwt-svid" and 35 more\)/);
});

test('a lower spiffe_sequence says how to start afresh from a re-installed peer', () => {
  const ca = newCa(TD);
  const last = { trustDomain: TD, caPems: [ca.trustPem], sequence: 3 };
  const f = refusal(() => acceptBundle(bundleOf([ca], 1), TD, last));
  assert.equal(f.reason, 'sequence_regressed');
  assert.match(f.message, /^spiffe_sequence 1 is lower than the last accepted 3/);
  assert.match(f.message, /to follow a re-installed peer from its new bundle, put that bundle \(with its new CA\) in spec\.trustDomainBundle or point spec\.bundleEndpointURL at a new endpoint: either starts afresh/);
  const none = refusal(() => acceptBundle(JSON.stringify(JSON.parse(bundleOf([ca], 1)), (k, v: unknown) => (k === 'spiffe_sequence' ? undefined : v)), TD, last));
  assert.match(none.message, /^the bundle has no spiffe_sequence; the last accepted one had 3; to follow a re-installed peer/);
});
