// The CAs of a federated bundle are a set: the order a remote lists them in is no change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FederationFollower, type FederationState } from '../../src/federation/follower.js';
import { withFederatedTrusts } from '../../src/federation/mesh-trusts.js';
import type { AuthorityView } from '../../src/identity/authorities.js';
import { resourceKey } from '../../src/api/types.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { dataplane } from '../helpers/resources.js';
import { bundleOf, cftd, endpointId, fakeEndpoint, ManualTimers, newCa } from './remote.js';

const TD = 'zone-b.test';

test('the same CAs in another order with the same sequence publish nothing, and the federated MeshTrust PEM is the same either way', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-fedorder-'));
  const caB = newCa(TD);
  const caB2 = newCa(TD);
  const ep = await fakeEndpoint(caB, endpointId(TD), bundleOf([caB, caB2], 3, 120));
  const follower = new FederationFollower({ state: await FileStateStore.open(dir), timers: new ManualTimers() });
  const published: FederationState[] = [];
  const sub = follower.state$.subscribe((s) => published.push(s));
  const dp = dataplane('web', {}, 'default');
  const view = { revision: 1, snapshot: { revision: 1, resources: new Map([[resourceKey(dp), dp]]), errors: [] }, zone: 'a', identities: new Map(), trusts: [] } as unknown as AuthorityView;
  const pemOf = (st: FederationState) => withFederatedTrusts(view, st).trusts.find((t) => t.name === 'federated-zone-b-test')!.spec.caBundles[0]!.pem.value;
  try {
    await follower.setResources([cftd('zone-b', TD, ep.url, caB.trustPem)]);
    await follower.refreshNow('zone-b');
    const count = published.length;
    const pem = pemOf(published.at(-1)!);
    for (let i = 0; i < 4; i++) {
      ep.serve(bundleOf(i % 2 ? [caB, caB2] : [caB2, caB], 3, 120));
      await follower.refreshNow('zone-b');
      assert.equal(follower.current.domains.get('zone-b')!.lastError, undefined);
    }
    assert.equal(published.length, count, 'a reordering of the same CAs published a new state (a push to every proxy)');
    // Either order, however it reaches the view, makes the same MeshTrust PEM.
    assert.equal(pemOf(follower.current), pem);
    assert.match(pem, /BEGIN CERTIFICATE[\s\S]+BEGIN CERTIFICATE/);
    // A real change (a CA dropped) is still published.
    ep.serve(bundleOf([caB], 4, 120));
    await follower.refreshNow('zone-b');
    assert.equal(published.length, count + 1);
  } finally {
    sub.unsubscribe();
    await follower.close();
    await ep.close();
    await rm(dir, { recursive: true, force: true });
  }
});
