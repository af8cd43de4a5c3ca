// The view merge: a followed trust domain becomes a MeshTrust in every mesh the resources mention,
// unless a MeshTrust of that trust domain is already there (it wins, and that is reported).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resourceKey, type Resource } from '../../src/api/types.js';
import type { AuthorityView } from '../../src/identity/authorities.js';
import { followedResources, initialDomain, type FederationState } from '../../src/federation/follower.js';
import { federatedMeshTrustName, withFederatedTrusts } from '../../src/federation/mesh-trusts.js';
import { dataplane, meshTrust } from '../helpers/resources.js';
import { cftd, newCa } from './remote.js';

const TD = 'zone-b.test';

function view(resources: Resource[]): AuthorityView {
  const map = new Map(resources.map((r) => [resourceKey(r), r]));
  return {
    revision: 1,
    snapshot: { revision: 1, resources: map, errors: [] },
    zone: 'a',
    identities: new Map(),
    trusts: resources.filter((r) => r.kind === 'MeshTrust'),
  } as AuthorityView;
}

test('a followed trust domain is a MeshTrust in every mesh, named after it, with the resource as origin', () => {
  const ca = newCa(TD);
  const c = cftd('zone-b', TD, 'https://127.0.0.1:1/zone-b.test', ca.trustPem);
  const fed: FederationState = { revision: 1, domains: new Map([['zone-b', initialDomain(c, undefined)]]) };
  const v = withFederatedTrusts(view([dataplane('web', {}, 'default'), dataplane('api', {}, 'payments')]), fed);
  const fedTrusts = v.trusts.filter((t) => t.spec.origin?.kri === 'kri_cftd____zone-b_');
  assert.deepEqual(fedTrusts.map((t) => [t.mesh, t.name, t.spec.trustDomain]), [
    ['default', 'federated-zone-b-test', TD],
    ['payments', 'federated-zone-b-test', TD],
  ]);
  assert.equal(fedTrusts[0]!.spec.caBundles[0]!.pem.value, ca.trustPem);
  assert.equal(v.federation[0]!.source, 'bootstrap');
  assert.equal(federatedMeshTrustName('a_b.c'), 'federated-a-b-c');
});

test('a MeshTrust of the same trust domain wins in its mesh; the override is reported', () => {
  const c = cftd('zone-b', TD, 'https://127.0.0.1:1/zone-b.test', newCa(TD).trustPem);
  const fed: FederationState = { revision: 1, domains: new Map([['zone-b', initialDomain(c, undefined)]]) };
  const pinned = meshTrust('pinned', TD, [newCa(TD).trustPem], 'default');
  const v = withFederatedTrusts(view([pinned, dataplane('api', {}, 'payments')]), fed);
  assert.deepEqual(v.trusts.filter((t) => t.spec.trustDomain === TD).map((t) => `${t.mesh}/${t.name}`), ['default/pinned', 'payments/federated-zone-b-test']);
  assert.deepEqual(v.federation[0]!.overriddenIn, { default: ['pinned'] });
  const created = v.federation[0]!.conditions.find((x) => x.type === 'MeshTrustCreated')!;
  assert.equal(created.reason, 'OverriddenByMeshTrust');
  assert.match(created.message, /wins in mesh default \(pinned\)/);
});

test('of two resources naming one trust domain, the first by name is followed', () => {
  const pem = newCa(TD).trustPem;
  const { followed, shadowed } = followedResources([cftd('zz', TD, 'https://h/x', pem), cftd('aa', TD, 'https://h/y', pem)]);
  assert.deepEqual(followed.map((c) => c.name), ['aa']);
  assert.deepEqual(shadowed.map((s) => [s.resource.name, s.winner]), [['zz', 'aa']]);
});

test('the merged trusts are the very same array while nothing they come from changed, so consumers can skip the view', () => {
  const local = meshTrust('local', 'default.test', [newCa('default.test').trustPem], 'default');
  const none: FederationState = { revision: 1, domains: new Map() };
  const plain = view([local, dataplane('web', {}, 'default')]);
  assert.equal(withFederatedTrusts(plain, none).trusts, plain.trusts, 'without federation: the view\'s own array');

  const c = cftd('zone-b', TD, 'https://127.0.0.1:1/zone-b.test', newCa(TD).trustPem);
  const fed: FederationState = { revision: 1, domains: new Map([['zone-b', initialDomain(c, undefined)]]) };
  const first = withFederatedTrusts(plain, fed);
  // A Dataplane change in a known mesh: same trusts, same federation state, same meshes.
  const again = withFederatedTrusts({ ...plain, snapshot: { ...plain.snapshot, revision: 2 } }, fed);
  assert.equal(again.trusts, first.trusts);
  // A Dataplane in a new mesh gets the federated trust there too: a new array.
  const newMesh = withFederatedTrusts(view([local, dataplane('web', {}, 'default'), dataplane('api', {}, 'payments')]), fed);
  assert.notEqual(newMesh.trusts, first.trusts);
  assert.deepEqual(newMesh.trusts.filter((t) => t.spec.trustDomain === TD).map((t) => t.mesh), ['default', 'payments']);
});
