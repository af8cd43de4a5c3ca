import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isValidSpiffeId, parseSpiffeId } from '../../src/identity/spiffe-id.js';

const valid: Array<[string, string, string]> = [
  ['spiffe://example.org', 'example.org', ''],
  ['spiffe://default.default.mesh.local/ns/kuma-system/sa/backend', 'default.default.mesh.local', '/ns/kuma-system/sa/backend'],
  ['spiffe://td_with-all.chars0/Path_With-All.Chars9', 'td_with-all.chars0', '/Path_With-All.Chars9'],
  ['spiffe://a/.../x', 'a', '/.../x'], // only exactly "." and ".." are dot segments
];

const invalid: Array<[string, RegExp]> = [
  ['', /empty/],
  ['SPIFFE://example.org/a', /scheme/],
  ['spiffe:/example.org/a', /scheme/],
  ['https://example.org/a', /scheme/],
  ['spiffe://', /trust domain is missing/],
  ['spiffe:///path', /trust domain is missing/],
  ['spiffe://Example.org/a', /trust domain characters/],
  ['spiffe://example.org:8443/a', /trust domain characters/],
  ['spiffe://user@example.org/a', /trust domain characters/],
  ['spiffe://example.org/', /trailing slash/],
  ['spiffe://example.org/a/', /trailing slash/],
  ['spiffe://example.org//a', /empty segments/],
  ['spiffe://example.org/a/./b', /dot segments/],
  ['spiffe://example.org/a/..', /dot segments/],
  ['spiffe://example.org/a%20b', /segment characters/],
  ['spiffe://example.org/a?x=1', /segment characters/],
  ['spiffe://example.org/a#frag', /segment characters/],
  [`spiffe://example.org/${'a'.repeat(2048)}`, /2048 bytes/],
];

test('parseSpiffeId splits valid SPIFFE IDs into trust domain and path', () => {
  for (const [id, trustDomain, path] of valid) {
    assert.deepEqual(parseSpiffeId(id), { trustDomain, path }, id);
    assert.equal(isValidSpiffeId(id), true, id);
  }
});

test('parseSpiffeId rejects IDs that break the SPIFFE spec, saying why', () => {
  for (const [id, reason] of invalid) {
    const r = parseSpiffeId(id);
    assert.ok('error' in r, `${id} should be rejected`);
    assert.match(r.error, reason, id);
    assert.equal(isValidSpiffeId(id), false, id);
  }
});

test('a SPIFFE ID of exactly 2048 bytes is accepted', () => {
  const prefix = 'spiffe://example.org/';
  const id = prefix + 'a'.repeat(2048 - prefix.length);
  assert.equal(id.length, 2048);
  assert.equal(isValidSpiffeId(id), true);
});
