// What a refused bundle says: enough for an operator to act on without reading the peer's document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acceptBundle, MAX_BUNDLE_CAS } from '../../src/federation/accept.js';
import { encodeSpiffeBundle } from '../../src/federation/bundle.js';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';
import { FederationFailure } from '../../src/federation/fetch.js';
import { bundleOf, newCa, unreadableTimesCa } from './remote.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openssl } from '../helpers/openssl.js';
import { caTrustDomains } from '../../src/api/pem.js';

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

test('a bundle carrying more CAs than MAX_BUNDLE_CAS is refused naming the count and the bound, before its certificates are parsed; one at the bound is accepted', () => {
  const cas = Array.from({ length: MAX_BUNDLE_CAS + 1 }, () => generateCertificateAuthority(TD).certPem);
  const atBound = acceptBundle(encodeSpiffeBundle({ cas: cas.slice(0, MAX_BUNDLE_CAS), sequence: 2 }), TD, undefined);
  assert.equal(atBound.caPems.length, MAX_BUNDLE_CAS);
  const f = refusal(() => acceptBundle(encodeSpiffeBundle({ cas, sequence: 2 }), TD, undefined));
  assert.equal(f.reason, 'too_many_cas');
  assert.equal(f.message, `the bundle carries ${MAX_BUNDLE_CAS + 1} X.509 CAs; at most ${MAX_BUNDLE_CAS} are accepted from a peer`);
  // Counted before decoding: 1,050 keys (the copies of one CA, under the 1 MiB cap) are refused
  // without parsing 1,050 certificates, which blocked the event loop for about a second.
  const key = (JSON.parse(encodeSpiffeBundle({ cas: [cas[0]!] })) as { keys: unknown[] }).keys[0];
  const huge = JSON.stringify({ keys: Array.from({ length: 1050 }, () => key), spiffe_sequence: 3 });
  assert.ok(huge.length < 1024 * 1024);
  assert.match(refusal(() => acceptBundle(huge, TD, undefined)).message, new RegExp(`^the bundle carries 1050 X\\.509 CAs; at most ${MAX_BUNDLE_CAS} are accepted`));
  // Counted before any certificate is parsed (0.2–1 s for these): keys whose certificates are not
  // certificates at all get the same refusal, not a parse error.
  const garbage = JSON.stringify({ keys: Array.from({ length: 1050 }, () => ({ ...(key as object), x5c: ['AAAA'] })), spiffe_sequence: 3 });
  assert.equal(refusal(() => acceptBundle(garbage, TD, undefined)).reason, 'too_many_cas');
});

test("a refusal quoting the peer's document carries no terminal control character and no megabyte of it (it reaches logs, the stored record, get and inspect)", () => {
  // eslint-disable-next-line no-control-regex -- control characters are what this looks for
  const acting = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
  // V8's JSON.parse error quotes the document's first bytes raw: an escape sequence setting the
  // terminal title and clearing the screen of whoever runs `mesh-sds get`.
  const json = refusal(() => acceptBundle('\u001b]0;pwned\u0007\u001b[2J\n{}', TD, undefined));
  assert.equal(json.reason, 'malformed');
  assert.doesNotMatch(json.message, acting);
  assert.match(json.message, /\\u001b\]0;pwned\\u0007/);
  // A `use` of half a megabyte opening with a C1 CSI (JSON.stringify leaves C1 raw) and a bidi override.
  const doc = JSON.stringify({ keys: [{ use: `\u009b2J\u202e${'x'.repeat(500_000)}`, kty: 'EC' }] });
  const big = refusal(() => acceptBundle(doc, TD, undefined));
  assert.equal(big.reason, 'no_ca');
  assert.doesNotMatch(big.message, acting);
  assert.ok(big.message.length < 5000, `message of ${big.message.length} characters`);
  assert.match(big.message, /more characters/);
});

test('a bundle with a CA whose validity cannot be read is refused as malformed naming the CA, in any order (after a valid CA it was accepted and sent to every mesh)', async () => {
  const good = newCa(TD);
  const unreadable = await unreadableTimesCa('zone-b-unreadable');
  for (const [cas, n] of [[[good.trustPem, unreadable], 2], [[unreadable, good.trustPem], 1]] as const) {
    const f = refusal(() => acceptBundle(encodeSpiffeBundle({ cas: [...cas], sequence: 3 }), TD, undefined));
    assert.equal(f.reason, 'malformed');
    assert.match(f.message, new RegExp(`CA ${n} of 2 has a validity that cannot be read`));
  }
});

/** A self-signed P-256 CA with this one URI SAN, written by openssl from a config section (where a comma is a character). */
function caWithUriSan(uri: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-san-'));
  try {
    const cnf = join(dir, 'cnf');
    writeFileSync(cnf, `[req]\ndistinguished_name=dn\n[dn]\n[ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=@alt\n[alt]\nURI.1=${uri}\n`);
    return openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k'), '-subj', '/CN=hidden', '-days', '30', '-config', cnf, '-extensions', 'ext']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a CA whose URI SAN names another trust domain is refused even when node quotes that SAN (a comma in it hid it from the check)', () => {
  const good = newCa(TD);
  // Node prints a SAN holding a comma, quote or backslash as a JSON string (URI:"spiffe://…"),
  // which a split on ", " misread: the CA was accepted as one of zone-b's.
  for (const id of ['spiffe://other.test/a,b', 'spiffe://other.test/a\\b']) {
    const f = refusal(() => acceptBundle(encodeSpiffeBundle({ cas: [good.trustPem, caWithUriSan(id)], sequence: 3 }), TD, undefined));
    assert.equal(f.reason, 'wrong_trust_domain', id);
    assert.equal(f.message, `the bundle is for trust domain other.test, not ${TD}`);
  }
  // Decoded, such a name may hold an escape sequence: it is quoted escaped, here and in validate.
  const esc = caWithUriSan('spiffe://other.test\u001b[2J/a,b');
  assert.equal(refusal(() => acceptBundle(encodeSpiffeBundle({ cas: [good.trustPem, esc], sequence: 3 }), TD, undefined)).message, `the bundle is for trust domain other.test\\u001b[2J, not ${TD}`);
  assert.deepEqual(caTrustDomains(esc), ['other.test\\u001b[2J']);
});
