// setDomains while the state store stalls: views given meanwhile are superseded by the newest one,
// not queued one by one (Dataplane churn gives ~20 a second), and every caller's promise resolves
// once a view at least as new as its own is in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSpiffeBundle } from '../../src/federation/bundle.js';
import { startBundleEndpoint } from '../../src/federation/endpoint.js';
import type { CertificateAuthority } from '../../src/pki/types.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { makeCa } from '../helpers/openssl.js';
import { waitFor } from '../conformance/world.js';
import { loadTestCa, publishedDomain } from './helpers.js';

const load = loadTestCa;
const domain = publishedDomain;

/** The certificate's DER in base64, as a JWK's x5c carries it. */
const der64 = (ca: CertificateAuthority): string => ca.trustPem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');

/** A real in-memory state whose reads wait while `stalled` (a store that stopped answering). */
class StallingState extends MemoryStateStore {
  stalled = false;
  reads = 0;
  private release: (() => void)[] = [];
  override async get(key: string): Promise<string | undefined> {
    this.reads++;
    if (this.stalled) await new Promise<void>((resolve) => this.release.push(resolve));
    return super.get(key);
  }
  unstall(): void {
    this.stalled = false;
    for (const r of this.release.splice(0)) r();
  }
}

test('views given while an update waits on a stalled store are coalesced into the newest, and every caller resolves once it is applied', async () => {
  const a = load(makeCa('a', { trustDomain: 'co.test' }));
  const b = load(makeCa('b', { trustDomain: 'co.test' }));
  const c = load(makeCa('c', { trustDomain: 'co.test' }));
  const state = new StallingState();
  const ep = await startBundleEndpoint({ listen: '127.0.0.1:0', state });
  try {
    await ep.setDomains([domain('co.test', a)]);
    const settled = state.reads;
    state.stalled = true;
    const first = ep.setDomains([domain('co.test', b, a)]);
    await waitFor('the update to wait on the store', () => state.reads > settled, 5000);
    const readsBefore = state.reads;
    // Churn: alternating CA sets, each would need its own store round trip; c+a is the newest.
    const later: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) later.push(ep.setDomains([domain('co.test', ...(i % 2 === 0 ? [c, a] : [b, a]))]));
    later.push(ep.setDomains([domain('co.test', c, a)]));
    let lastDone = false;
    void later.at(-1)!.then(() => (lastDone = true));
    state.unstall();
    await first;
    await Promise.all(later);
    // The stalled update's read, then one for the newest view: not one per superseded view.
    assert.ok(state.reads - readsBefore <= 2, `${state.reads - readsBefore} store reads after the stall for 41 views`);
    for (const p of later) {
      await p;
      // Resolved only once a view at least as new as its own is served: the newest one, c + a.
      const body = ep.document('co.test')!.body;
      assert.equal(decodeSpiffeBundle(body).cas.length, 2);
      assert.ok(body.includes(der64(c)) && body.includes(der64(a)), 'the bundle served is c + a');
    }
    assert.ok(lastDone);
  } finally {
    await ep.close();
  }
});
