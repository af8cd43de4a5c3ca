import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { restrictTo, sameVersionsAs, versionsOf, type EncodedResource } from '../../src/xds/resource.js';
import { res } from './fixtures.js';

const mapOf = (...rs: EncodedResource[]) => new Map(rs.map((r) => [r.name, r]));

describe('restrictTo', () => {
  it('drops what the resolver returned beyond the subscribed names', () => {
    const got = restrictTo({ wildcard: false, names: ['a', 'c'] }, mapOf(res('a', '1'), res('b', '1'), res('c', '2')));
    assert.deepEqual([...got.keys()], ['a', 'c']);
  });

  it('hands back a resolution that holds only subscribed names as it is (no copy per push)', () => {
    const resolved = mapOf(res('default', '3'));
    assert.equal(restrictTo({ wildcard: false, names: ['default', 'system_trust_bundle'] }, resolved), resolved);
    assert.equal(restrictTo({ wildcard: true, names: [] }, resolved), resolved);
  });

  it('still filters when a subscription lists many names', () => {
    const names = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    const got = restrictTo({ wildcard: false, names }, mapOf(res('n03', '1'), res('zz', '1')));
    assert.deepEqual([...got.keys()], ['n03']);
  });
});

describe('sameVersionsAs', () => {
  it('is true only for the same names with the same versions', () => {
    const sent = versionsOf(mapOf(res('a', '1'), res('b', '2')));
    assert.equal(sameVersionsAs(mapOf(res('b', '2'), res('a', '1')), sent), true);
    assert.equal(sameVersionsAs(mapOf(res('a', '1'), res('b', '3')), sent), false);
    assert.equal(sameVersionsAs(mapOf(res('a', '1')), sent), false);
    assert.equal(sameVersionsAs(mapOf(res('a', '1'), res('c', '2')), sent), false);
    assert.equal(sameVersionsAs(new Map(), new Map()), true);
  });
});
