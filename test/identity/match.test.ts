import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectIdentity } from '../../src/identity/match.js';
import { meshIdentity } from '../helpers/resources.js';

const web = { mesh: 'default', labels: { app: 'web', env: 'prod', team: 'a' } };

test('an identity without selector or without selector.dataplane matches nothing', () => {
  const noSelector = meshIdentity('a', { matchLabels: null });
  const r = selectIdentity([noSelector], web);
  assert.equal(r.winner, undefined);
  assert.match(r.candidates[0]!.reason, /selects nothing/);
});

test('empty matchLabels matches every dataplane of its own mesh only', () => {
  const all = meshIdentity('all', { matchLabels: {} });
  assert.equal(selectIdentity([all], web).winner?.name, 'all');
  assert.equal(selectIdentity([all], { mesh: 'other', labels: {} }).winner, undefined);
});

test('the identity with the most matching labels wins over broader ones', () => {
  const ids = [
    meshIdentity('a-broad', { matchLabels: {} }),
    meshIdentity('z-specific', { matchLabels: { app: 'web', env: 'prod' } }),
    meshIdentity('m-one', { matchLabels: { app: 'web' } }),
  ];
  const r = selectIdentity(ids, web);
  assert.equal(r.winner?.name, 'z-specific');
  assert.deepEqual(
    r.candidates.map((c) => c.identity.name),
    ['z-specific', 'm-one', 'a-broad'],
  );
  assert.match(r.candidates[1]!.reason, /lost to z-specific \(fewer labels\)/);
});

test('ties in label count go to the lexicographically smallest name', () => {
  const ids = [meshIdentity('beta', { matchLabels: { app: 'web' } }), meshIdentity('alpha', { matchLabels: { env: 'prod' } })];
  const r = selectIdentity(ids, web);
  assert.equal(r.winner?.name, 'alpha');
  assert.match(r.candidates[1]!.reason, /name order/);
});

test('an identity whose label differs does not match and says why', () => {
  const ids = [meshIdentity('api', { matchLabels: { app: 'api' } })];
  const r = selectIdentity(ids, web);
  assert.equal(r.winner, undefined);
  assert.equal(r.candidates[0]!.reason, 'label "app" is "web", not "api"');
  const missing = selectIdentity([meshIdentity('x', { matchLabels: { tier: 'db' } })], web);
  assert.equal(missing.candidates[0]!.reason, 'label "tier" missing');
});

test('kuma.io/mesh in matchLabels matches the Dataplane\'s mesh, as Kuma labels every mesh-scoped resource with it', () => {
  const byMesh = meshIdentity('by-mesh', { matchLabels: { 'kuma.io/mesh': 'default' } });
  const all = meshIdentity('all', { matchLabels: {} });
  assert.equal(selectIdentity([all, byMesh], web).winner?.name, 'by-mesh', 'one matching label: more specific than {}');
  const wrong = meshIdentity('wrong', { matchLabels: { 'kuma.io/mesh': 'other' } });
  const r = selectIdentity([wrong], web);
  assert.equal(r.winner, undefined);
  assert.match(r.candidates[0]!.reason, /label "kuma\.io\/mesh" is "default", not "other"/);
});
