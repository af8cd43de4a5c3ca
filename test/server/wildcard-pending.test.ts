// A wildcard delta stream that reconnects while its proxy's identity is still undecided (a server
// restart's connect storm) must not be told its SVID is removed: its names (default, the KRI, the
// SPIFFE ID, ROOTCA) are not known before the identity is, so no list of pending names holds them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SecretCache } from '../../src/xds/cache.js';
import { SecretPublisher } from '../../src/server/publisher.js';
import type { SvidManager } from '../../src/identity/svids.js';
import { DeltaStream, type DeltaSendAction } from '../../src/xds/delta.js';

const CLAIMED = {
  default: 'a1',
  ROOTCA: 'b2',
  'kri_mid_default_default_kuma-system_identity_': 'c3',
  'spiffe://default.default.mesh.local/ns/shop/sa/web': 'd4',
  system_trust_bundle: 'e5',
  'spiffe://gone.example': 'f6',
};

describe('wildcard delta reconnect before the identity is decided', () => {
  it('reports no identity secret removed while the identity is undecided; a trust domain that is gone still is', () => {
    const cache = new SecretCache({ delivery: 'manual' });
    // No identity decision yet for this proxy (svids.get → undefined).
    const svids = { get: () => undefined } as unknown as SvidManager;
    const publisher = new SecretPublisher(cache, svids, { zone: 'default' });
    const stream = new DeltaStream(publisher.resolverFor('default.web', 'default'));
    const actions = stream.onRequest({ type_url: '', resource_names_subscribe: [], initial_resource_versions: CLAIMED });
    const sends = actions.filter((a): a is DeltaSendAction => a.type === 'send');
    assert.equal(sends.length, 1, 'a wildcard stream gets its first response');
    assert.deepEqual(sends[0]!.response.removed_resources, ['spiffe://gone.example']);
  });

  it('an explicit subscription to the same names is held the same way (unchanged behaviour)', () => {
    const cache = new SecretCache({ delivery: 'manual' });
    const svids = { get: () => undefined } as unknown as SvidManager;
    const publisher = new SecretPublisher(cache, svids, { zone: 'default' });
    const stream = new DeltaStream(publisher.resolverFor('default.web', 'default'));
    const names = ['default', 'ROOTCA'];
    const actions = stream.onRequest({ type_url: '', resource_names_subscribe: names, initial_resource_versions: { default: 'a1', ROOTCA: 'b2' } });
    assert.deepEqual(actions.filter((a) => a.type === 'send'), []);
  });
});
