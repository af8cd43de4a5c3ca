// The publisher's name-classification cache is bounded in bytes: names a client sends (up to 1 MiB
// each, across any number of streams) must not pin server memory once their streams are gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyCached, nameCacheStats } from '../../src/server/publisher.js';

test('invalid names are classified but not remembered', () => {
  const before = nameCacheStats();
  for (let i = 0; i < 50; i++) assert.equal(classifyCached(`bad-${i}-${'x'.repeat(100_000)}`).kind, 'invalid');
  assert.deepEqual(nameCacheStats(), before);
});

test('a name longer than any servable secret name is invalid and not remembered, even if its shape is valid', () => {
  const before = nameCacheStats();
  // A KRI of valid characters, but far longer than four resource names (≤253 each) can make.
  const kri = `kri_mid_${'m'.repeat(100_000)}_zone_ns_name_`;
  assert.equal(classifyCached(kri).kind, 'invalid');
  assert.deepEqual(nameCacheStats(), before);
});

test('many distinct valid names stay within the byte budget, and the hot fixed names stay cached', () => {
  const hot = ['default', 'system_trust_bundle', 'ALL', 'ROOTCA'].map((n) => classifyCached(n));
  const path = 'p'.repeat(1_900);
  for (let i = 0; i < 5_000; i++) assert.equal(classifyCached(`spiffe://td.example/${i}/${path}`).kind, 'svid');
  const { bytes, maxBytes } = nameCacheStats();
  assert.ok(bytes <= maxBytes, `cache holds ${bytes} bytes, budget ${maxBytes}`);
  assert.ok(maxBytes < 5_000 * 1_900, 'the budget is below what this flood would pin');
  // Same object back: still cached, not classified again.
  ['default', 'system_trust_bundle', 'ALL', 'ROOTCA'].forEach((n, i) => assert.equal(classifyCached(n), hot[i]));
  // Recent names are served from the cache (one classification, the same object after).
  const recent = `spiffe://td.example/4999/${path}`;
  assert.equal(classifyCached(recent), classifyCached(recent));
});

test('a full cache of short names is trimmed a quarter at a time: 50,000 new names start a few eviction scans, not one each', () => {
  const name = (i: number) => `spiffe://td.example/scan/${i}`;
  // Fill it first (about 22,000 names of this length fit).
  for (let i = 0; i < 30_000; i++) classifyCached(name(i));
  const before = nameCacheStats();
  for (let i = 30_000; i < 80_000; i++) assert.equal(classifyCached(name(i)).kind, 'svid');
  const after = nameCacheStats();
  // Each scan walks past what earlier evictions deleted (a Map keeps them until it is resized).
  assert.ok(after.evictionScans - before.evictionScans <= 20, `${after.evictionScans - before.evictionScans} scans for 50,000 names`);
  assert.ok(after.bytes <= after.maxBytes);
  assert.equal(classifyCached(name(79_999)), classifyCached(name(79_999)), 'the newest are cached');
});
