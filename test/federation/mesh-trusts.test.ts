// The view merge: a followed trust domain becomes a MeshTrust in every mesh the resources mention,
// unless a MeshTrust of that trust domain is already there (it wins, and that is reported).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resourceKey, type Resource } from '../../src/api/types.js';
import type { AuthorityView } from '../../src/identity/authorities.js';
import { followedResources, initialDomain, type FederationState } from '../../src/federation/follower.js';
import { federatedMeshTrustName, withFederatedTrusts } from '../../src/federation/mesh-trusts.js';
import { dataplane, meshIdentity, meshTrust } from '../helpers/resources.js';
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

test('a federated trust domain this server issues from is trusted in no mesh: the conditions name the local identity and ask for a distinct trust domain', () => {
  // Two zones both left at --zone default: the peer's trust domain is this server's own.
  const own = 'default.default.mesh.local';
  const local = meshIdentity('identity', { mesh: 'default' });
  const peerCa = newCa(own);
  const c = cftd('zone-b', own, 'https://127.0.0.1:1/x', peerCa.trustPem);
  // And a peer of another trust domain, trusted as usual.
  const c2 = cftd('zone-c', TD, 'https://127.0.0.1:1/y', newCa(TD).trustPem);
  const fed: FederationState = { revision: 1, domains: new Map([['zone-b', initialDomain(c, undefined)], ['zone-c', initialDomain(c2, undefined)]]) };
  const ownTrust = meshTrust('identity', own, [newCa(own).trustPem], 'default');
  const base = view([ownTrust, dataplane('web', {}, 'default'), dataplane('api', {}, 'payments')]);
  // Before the identity is known (its MeshTrust alone does not make the domain this server's own).
  const before = withFederatedTrusts(base, fed);
  assert.deepEqual(before.trusts.filter((t) => t.spec.trustDomain === own).map((t) => `${t.mesh}/${t.name}`), ['default/identity', 'payments/federated-default-default-mesh-local']);
  // The same trusts array and federation state, now with the identity: not the cached merge.
  const v = withFederatedTrusts(
    { ...base, identities: new Map([['default/identity', { identity: local, key: 'default/identity', kri: 'kri_mid_default_default_kuma-system_identity_', trustDomain: own, conditions: [], ready: true }]]) },
    fed,
  );
  // Not in the mesh that issues it (its own MeshTrust stays alone), nor in another mesh.
  assert.deepEqual(v.trusts.filter((t) => t.spec.trustDomain === own).map((t) => `${t.mesh}/${t.name}`), ['default/identity']);
  assert.ok(!v.trusts.some((t) => t.spec.caBundles.some((b) => b.pem.value.includes(peerCa.trustPem))), 'the peer CA is trusted nowhere');
  const cond = (type: string) => v.federation[0]!.conditions.find((x) => x.type === type)!;
  assert.deepEqual([cond('MeshTrustCreated').status, cond('MeshTrustCreated').reason], ['False', 'LocalTrustDomain']);
  assert.match(cond('MeshTrustCreated').message, /default\.default\.mesh\.local is the trust domain of MeshIdentity default\/identity of this server/);
  assert.match(cond('MeshTrustCreated').message, /--zone/);
  assert.deepEqual([cond('Ready').status, cond('Ready').reason], ['False', 'LocalTrustDomain']);
  assert.doesNotMatch(cond('Ready').message, /every mesh/);
  assert.deepEqual(v.federation[0]!.overriddenIn, {});
  assert.deepEqual(v.trusts.filter((t) => t.spec.trustDomain === TD).map((t) => t.mesh), ['default', 'payments']);
  assert.equal(v.federation[1]!.conditions.find((x) => x.type === 'Ready')!.status, 'True');

  // Another trust domain is still trusted everywhere, and Ready says where.
  const other = withFederatedTrusts(base, { revision: 2, domains: new Map([['zone-b', initialDomain(cftd('zone-b', TD, 'https://127.0.0.1:1/x', newCa(TD).trustPem), undefined)]]) });
  assert.deepEqual(other.trusts.filter((t) => t.spec.trustDomain === TD).map((t) => t.mesh), ['default', 'payments']);
  assert.match(other.federation[0]!.conditions.find((x) => x.type === 'Ready')!.message, /trusted in every mesh \(2\)/);
});

test('the trust domain of a Spire identity (the SPIRE server issues, not this one) may be federated: its bundle is trusted in every mesh', () => {
  const spireTd = 'spire.example';
  const spire = meshIdentity('spire', { mesh: 'default', trustDomain: spireTd });
  spire.spec.provider = { type: 'Spire', spire: { agent: { timeout: '1s', timeoutMs: 1000 } } };
  const c = cftd('spire-server', spireTd, 'https://127.0.0.1:1/spire', newCa(spireTd).trustPem);
  const fed: FederationState = { revision: 1, domains: new Map([['spire-server', initialDomain(c, undefined)]]) };
  const base = view([dataplane('web', {}, 'default'), dataplane('api', {}, 'payments')]);
  const v = withFederatedTrusts({ ...base, identities: new Map([['default/spire', { identity: spire, key: 'default/spire', kri: 'kri_mid_default_default__spire_', trustDomain: spireTd, conditions: [], ready: true }]]) }, fed);
  assert.deepEqual(v.trusts.filter((t) => t.spec.trustDomain === spireTd).map((t) => t.mesh), ['default', 'payments']);
  assert.equal(v.federation[0]!.conditions.find((x) => x.type === 'Ready')!.status, 'True');
});

test('Ready says in which meshes the federated bundle is trusted when a MeshTrust of the trust domain wins in some', () => {
  const c = cftd('zone-b', TD, 'https://127.0.0.1:1/zone-b.test', newCa(TD).trustPem);
  const fed: FederationState = { revision: 1, domains: new Map([['zone-b', initialDomain(c, undefined)]]) };
  const v = withFederatedTrusts(view([meshTrust('pinned', TD, [newCa(TD).trustPem], 'default'), dataplane('api', {}, 'payments')]), fed);
  const ready = v.federation[0]!.conditions.find((x) => x.type === 'Ready')!;
  assert.equal(ready.status, 'True');
  assert.match(ready.message, /trusted in mesh payments; MeshTrust pinned wins in mesh default/);
});

test('federated MeshTrust names that would collide (zone.b.test and zone-b.test, or a MeshTrust already of that name) get a suffix from their trust domain; others keep theirs', () => {
  const dot = 'zone.b.test';
  const dash = 'zone-b.test';
  const other = 'zone-c.test';
  const domain = (name: string, td: string) => initialDomain(cftd(name, td, `https://127.0.0.1:1/${td}`, newCa(td).trustPem), undefined);
  const fed: FederationState = { revision: 1, domains: new Map([['dot', domain('dot', dot)], ['dash', domain('dash', dash)], ['c', domain('c', other)]]) };
  const names = (v: ReturnType<typeof withFederatedTrusts>) => v.trusts.filter((t) => t.spec.origin?.kri?.startsWith('kri_cftd_')).map((t) => `${t.name} ${t.spec.trustDomain}`);
  const v = withFederatedTrusts(view([dataplane('web', {}, 'default')]), fed);
  const got = names(v);
  assert.equal(new Set(got.map((n) => n.split(' ')[0])).size, 3, `distinct names: ${got.join(', ')}`);
  assert.ok(got.includes(`federated-zone-c-test ${other}`), 'no collision: the name is unchanged');
  for (const td of [dot, dash]) assert.ok(got.some((n) => new RegExp(`^federated-zone-b-test-[0-9a-f]{8} ${td.replace('.', '\\.')}$`).test(n)), `${td}: ${got.join(', ')}`);
  assert.deepEqual(v.federation.map((f) => f.meshTrustName).sort(), got.map((n) => n.split(' ')[0]).sort(), 'status names the MeshTrust made');
  // Deterministic: another replica (the resources in another order) names them the same.
  const again = withFederatedTrusts(view([dataplane('web', {}, 'default')]), { revision: 2, domains: new Map([...fed.domains].reverse()) });
  assert.deepEqual(names(again).sort(), [...got].sort());
  // A user MeshTrust already named federated-zone-c-test (of another trust domain): the federated one moves aside.
  const user = meshTrust('federated-zone-c-test', 'elsewhere.test', [newCa('elsewhere.test').trustPem], 'default');
  const withUser = withFederatedTrusts(view([dataplane('web', {}, 'default'), user]), { revision: 3, domains: new Map([['c', fed.domains.get('c')!]]) });
  const cNames = withUser.trusts.filter((t) => t.name.startsWith('federated-zone-c-test')).map((t) => `${t.name} ${t.spec.trustDomain}`);
  assert.equal(cNames.length, 2);
  assert.ok(cNames.includes('federated-zone-c-test elsewhere.test'));
  assert.ok(cNames.some((n) => /^federated-zone-c-test-[0-9a-f]{8} zone-c\.test$/.test(n)), cNames.join(', '));
});
