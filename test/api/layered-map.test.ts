import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayeredMap } from '../../src/api/layered-map.js';
import { rng } from '../fuzz/prng.js';

const sorted = (m: ReadonlyMap<string, number>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

test('a layered map agrees with a plain Map through thousands of random changes, across compactions', () => {
  const r = rng(7);
  const rand = () => r.next();
  let map = LayeredMap.from<number>([]);
  const reference = new Map<string, number>();
  for (let round = 0; round < 600; round++) {
    const changes = new Map<string, number | undefined>();
    const n = 1 + Math.floor(rand() * 8);
    for (let i = 0; i < n; i++) {
      const key = `k${Math.floor(rand() * 400)}`;
      changes.set(key, rand() < 0.3 ? undefined : Math.floor(rand() * 5));
    }
    const before = map;
    const beforeEntries = sorted(before);
    const expectedChanged = [...changes].filter(([k, v]) => reference.get(k) !== v).map(([k]) => k).sort();
    for (const [k, v] of changes) {
      if (v === undefined) reference.delete(k);
      else reference.set(k, v);
    }
    map = map.with(changes);
    assert.deepEqual(sorted(map), sorted(reference), `round ${round}: entries`);
    assert.equal(map.size, reference.size, `round ${round}: size`);
    for (const k of changes.keys()) {
      assert.equal(map.get(k), reference.get(k));
      assert.equal(map.has(k), reference.has(k));
    }
    assert.deepEqual(sorted(before), beforeEntries, `round ${round}: the previous map is unchanged`);
    if (expectedChanged.length === 0) assert.equal(map, before, 'no change gives the same map');
    else assert.deepEqual([...(map.changedSince(before) ?? ['<none>'])].sort(), expectedChanged, `round ${round}: changed keys`);
  }
});

test('changedSince answers only for the map it was made from', () => {
  const a = LayeredMap.from([['x', 1]]);
  const b = a.with(new Map([['y', 2]]));
  const c = b.with(new Map([['x', 3]]));
  assert.deepEqual(b.changedSince(a), ['y']);
  assert.deepEqual(c.changedSince(b), ['x']);
  assert.equal(c.changedSince(a), undefined, 'two steps away: the caller must compare in full');
  assert.equal(c.changedSince(new Map(c)), undefined, 'a plain Map is not its parent');
  assert.equal(c.changedSince(undefined), undefined);
});
