import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resourceKey, type Resource } from '../../src/api/types.js';
import type { AuthorityView, IdentityState } from '../../src/identity/authorities.js';
import { ProxyIndex } from '../../src/identity/proxy-index.js';
import { dataplane, meshIdentity, meshTrust } from '../helpers/resources.js';

const labels = (sa: string) => ({ 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': sa });

function view(resources: Resource[], identities: IdentityState[] = []): AuthorityView {
  return {
    revision: 0,
    zone: 'default',
    snapshot: { revision: 0, resources: new Map(resources.map((r) => [resourceKey(r), r])), errors: [] },
    identities: new Map(identities.map((s) => [s.key, s])),
    trusts: [],
  };
}

const state = (identity: ReturnType<typeof meshIdentity>, fingerprint: string): IdentityState =>
  ({ identity, key: resourceKey(identity), kri: 'kri', conditions: [], ready: true, ca: { fingerprint } }) as unknown as IdentityState;

test('a Dataplane label change concerns only that Dataplane; unchanged objects and re-created equal ones concern nothing', () => {
  const idx = new ProxyIndex();
  const a = dataplane('a', labels('a'));
  const b = dataplane('b', labels('b'));
  idx.update(view([a, b]));
  assert.deepEqual(idx.update(view([dataplane('a', labels('a')), b])), { meshes: [], dataplanes: [], duplicated: [] });
  assert.deepEqual(idx.update(view([dataplane('a', labels('a2')), b])), { meshes: [], dataplanes: ['default.a'], duplicated: [] });
  assert.deepEqual(idx.dataplane({ mesh: 'default', name: 'a' })?.labels, labels('a2'));
});

test('a Dataplane added or removed concerns that Dataplane only', () => {
  const idx = new ProxyIndex();
  const a = dataplane('a', labels('a'));
  idx.update(view([a]));
  assert.deepEqual(idx.update(view([a, dataplane('b', labels('b'))])).dataplanes, ['default.b']);
  assert.deepEqual(idx.update(view([dataplane('b', labels('b'))])).dataplanes, ['default.a']);
  assert.equal(idx.dataplane({ mesh: 'default', name: 'a' }), undefined);
});

test('Kubernetes-form Dataplanes of one name in two namespaces are each served by <mesh>.<name>.<namespace>; the short <mesh>.<name> serves one only while it is the only one, and is ambiguous otherwise, whatever the order', () => {
  const inNs = (ns: string, sa: string) => ({ ...dataplane('a', labels(sa)), namespace: ns });
  const shop = inNs('shop', 'first');
  const moved = inNs('moved', 'second');
  const short = { mesh: 'default', name: 'a' };
  for (const order of [
    [shop, moved],
    [moved, shop],
  ]) {
    const idx = new ProxyIndex();
    const c1 = idx.update(view([order[0]!]));
    assert.deepEqual(c1.dataplanes.sort(), ['default.a', `default.a.${order[0]!.namespace}`].sort());
    assert.equal(idx.dataplane(short), order[0], 'the only one of its name answers to the short node id');
    const c2 = idx.update(view(order));
    assert.deepEqual(c2.duplicated, [], 'not duplicates: two pods');
    assert.ok(c2.dataplanes.includes('default.a'), 'proxies connected by the short id are re-evaluated');
    assert.equal(idx.dataplane({ mesh: 'default', name: 'a.shop' }), shop);
    assert.equal(idx.dataplane({ mesh: 'default', name: 'a.moved' }), moved);
    assert.equal(idx.dataplane(short), undefined, 'never one namespace\'s identity for the other\'s pod');
    assert.equal(idx.ambiguity(short), 'node id default.a is ambiguous: Dataplanes of that name exist in 2 Kubernetes namespaces; connect as default.a.moved or default.a.shop');
    assert.equal(idx.ambiguity({ mesh: 'default', name: 'a.shop' }), undefined);
    const c3 = idx.update(view([shop]));
    assert.equal(idx.dataplane(short), shop);
    assert.equal(idx.ambiguity(short), undefined);
    assert.deepEqual(c3.dataplanes.sort(), ['default.a', 'default.a.moved']);
    assert.equal(idx.dataplane({ mesh: 'default', name: 'a.moved' }), undefined);
    idx.update(view([]));
    assert.equal(idx.dataplane(short), undefined);
    assert.equal(idx.dataplane({ mesh: 'default', name: 'a.shop' }), undefined);
  }
});

test('two Dataplanes stored for one node id (a Universal "a.shop" and a Kubernetes "a" in shop): the smallest resource key is served whatever the order, the duplicate is reported, and deleting one serves the other', () => {
  const k8s = { ...dataplane('a', labels('k8s')), namespace: 'shop' };
  const universal = dataplane('a.shop', labels('universal'));
  const node = { mesh: 'default', name: 'a.shop' };
  const first = resourceKey(k8s) < resourceKey(universal) ? k8s : universal;
  const second = first === k8s ? universal : k8s;
  for (const order of [
    [k8s, universal],
    [universal, k8s],
  ]) {
    const idx = new ProxyIndex();
    assert.deepEqual(idx.update(view([order[0]!])).duplicated, []);
    const c2 = idx.update(view(order));
    assert.equal(idx.dataplane(node), first);
    assert.deepEqual(c2.duplicated, [{ dataplane: 'default.a.shop', stored: [resourceKey(k8s), resourceKey(universal)].sort(), served: resourceKey(first) }]);
    const c3 = idx.update(view([second]));
    assert.equal(idx.dataplane(node), second, 'one copy deleted: the other is served, not none');
    assert.ok(c3.dataplanes.includes('default.a.shop'));
    idx.update(view([]));
    assert.equal(idx.dataplane(node), undefined);
  }
});

test('an identity change concerns only its mesh; a MeshTrust-only change concerns nothing', () => {
  const idx = new ProxyIndex();
  const inA = meshIdentity('id', { mesh: 'a' });
  const inB = meshIdentity('id', { mesh: 'b' });
  idx.update(view([inA, inB], [state(inA, 'ca1'), state(inB, 'ca1')]));
  const trust = meshTrust('t', 'partner.example', []);
  assert.deepEqual(idx.update(view([inA, inB, trust], [state(inA, 'ca1'), state(inB, 'ca1')])), { meshes: [], dataplanes: [], duplicated: [] });
  assert.deepEqual(idx.update(view([inA, inB, trust], [state(inA, 'ca1'), state(inB, 'ca2')])).meshes, ['b']);
  assert.deepEqual(idx.update(view([inA, trust], [state(inA, 'ca1')])).meshes, ['b']);
});

test('proxies are found by their Dataplane and their mesh until removed', () => {
  const idx = new ProxyIndex();
  idx.add('p1', { mesh: 'default', name: 'a' });
  idx.add('p2', { mesh: 'default', name: 'a' });
  idx.add('p3', { mesh: 'other', name: 'a' });
  assert.deepEqual([...idx.proxiesOfDataplane('default.a')], ['p1', 'p2']);
  assert.deepEqual([...idx.proxiesOfMesh('other')], ['p3']);
  idx.remove('p1', { mesh: 'default', name: 'a' });
  assert.deepEqual([...idx.proxiesOfDataplane('default.a')], ['p2']);
  idx.remove('p3', { mesh: 'other', name: 'a' });
  assert.deepEqual([...idx.proxiesOfMesh('other')], []);
});
