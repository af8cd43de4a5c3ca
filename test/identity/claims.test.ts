import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimMismatch, claimsHash, proxyKeyOf, shortNameTokenProblem } from '../../src/identity/claims.js';

test('proxy key: the node id for a plain token, node id + canonical claims hash otherwise', () => {
  assert.equal(proxyKeyOf({ mesh: 'default', name: 'gw' }), 'default.gw');
  assert.equal(proxyKeyOf({ mesh: 'default', name: 'gw', labels: {} }), 'default.gw');
  const a = proxyKeyOf({ mesh: 'default', name: 'gw', labels: { a: '1', b: '2' } });
  assert.match(a, /^default\.gw#[0-9a-f]{16}$/);
  assert.equal(proxyKeyOf({ mesh: 'default', name: 'gw', labels: { b: '2', a: '1' } }), a, 'label order does not matter');
  const distinct = [
    a,
    proxyKeyOf({ mesh: 'default', name: 'gw', labels: { a: '1' } }),
    proxyKeyOf({ mesh: 'default', name: 'gw', labels: { a: '1', b: '3' } }),
    proxyKeyOf({ mesh: 'default', name: 'gw', labels: { a: '1', b: '2' }, workload: 'w' }),
    proxyKeyOf({ mesh: 'default', name: 'gw', workload: 'w' }),
    proxyKeyOf({ mesh: 'default', name: 'gw', workload: '' }),
    // A label cannot be confused with the workload claim.
    proxyKeyOf({ mesh: 'default', name: 'gw', labels: { w: '' } }),
  ];
  assert.equal(new Set(distinct).size, distinct.length);
  assert.equal(claimsHash({ mesh: 'm', name: 'n' }), '');
});

test('claim mismatch names the first claim that differs from the Dataplane, or nothing when all match', () => {
  const dp = { labels: { app: 'web', 'kuma.io/workload': 'shop' } };
  assert.equal(claimMismatch({ mesh: 'm', name: 'n' }, dp), undefined);
  assert.equal(claimMismatch({ mesh: 'm', name: 'n', labels: { app: 'web' }, workload: 'shop' }, dp), undefined);
  assert.match(claimMismatch({ mesh: 'm', name: 'n', labels: { app: 'pay' } }, dp)!, /label "app"="pay" does not match Dataplane m\.n \("web"\)/);
  assert.match(claimMismatch({ mesh: 'm', name: 'n', labels: { zone: 'x' } }, dp)!, /label "zone"="x" .*no such label/);
  assert.match(claimMismatch({ mesh: 'm', name: 'n', workload: 'other' }, dp)!, /workload "other" does not match .*"shop"/);
  assert.match(claimMismatch({ mesh: 'm', name: 'n', workload: 'w' }, { labels: {} })!, /workload "w" .*no "kuma\.io\/workload" label/);
});

test('shortNameTokenProblem: a namespaced Dataplane named without its namespace is a problem naming the full name; by its full name, or a Dataplane without namespace, is not', () => {
  const dp = { name: 'db-0', namespace: 'team-a' };
  const p = shortNameTokenProblem({ mesh: 'default', name: 'db-0' }, dp);
  assert.ok(p?.includes('(token generate --mesh default --name db-0.team-a) and Envoy connect as default.db-0.team-a'), p);
  assert.equal(shortNameTokenProblem({ mesh: 'default', name: 'db-0.team-a' }, dp), undefined);
  assert.equal(shortNameTokenProblem({ mesh: 'default', name: 'db-0' }, { name: 'db-0', namespace: '' }), undefined);
  // Names of the full name's length and ends that are not it are not it.
  for (const name of ['db-0xteam-a', 'db-0.team-b', 'db-1.team-a', 'db-0.team-a.x', 'db-0.tea']) assert.ok(shortNameTokenProblem({ mesh: 'default', name }, dp), name);
});

test('a claimed label named like an Object property (constructor, toString) that the Dataplane lacks is "no such label", not the text of a function', () => {
  const dp = { labels: { app: 'web' } };
  for (const k of ['constructor', 'toString', 'hasOwnProperty']) {
    assert.equal(claimMismatch({ mesh: 'm', name: 'n', labels: { [k]: 'x' } }, dp), `token claim label "${k}"="x" does not match Dataplane m.n (no such label)`);
  }
});
