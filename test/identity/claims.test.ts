import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimMismatch, claimsHash, proxyKeyOf } from '../../src/identity/claims.js';

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
