// Scenario tests of the state machines driven by the SecretCache the way a transport would.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SecretCache } from '../../src/xds/cache.js';
import { StreamDriver, type KeysFor } from '../../src/xds/driver.js';
import { SotwStream, type SotwAction } from '../../src/xds/sotw.js';
import { DeltaStream, type DeltaAction } from '../../src/xds/delta.js';
import type { DeltaDiscoveryRequest, DiscoveryRequest } from '../../src/xds/messages.js';
import type { EncodedResource, Resolver } from '../../src/xds/resource.js';
import { TYPE, res } from './fixtures.js';

const TRUST_NAMES = ['system_trust_bundle', 'ROOTCA'];
const settle = () => new Promise<void>((r) => setImmediate(r));

/** What a transport would build per proxy: name → cache key, and the keys a subscription reads. */
function proxyView(cache: SecretCache, proxy: string): { resolve: Resolver; keysFor: KeysFor } {
  const keyOf = (name: string): string | undefined =>
    name === 'default' ? `${proxy}/default` : TRUST_NAMES.includes(name) ? `mesh/${name}` : undefined;
  const allNames = ['default', ...TRUST_NAMES];
  return {
    resolve: (sub) => {
      const resources = new Map<string, EncodedResource>();
      const invalid: string[] = [];
      for (const n of sub.wildcard ? [...new Set([...allNames, ...sub.names])] : sub.names) {
        const key = keyOf(n);
        if (key === undefined) invalid.push(n);
        else {
          const r = cache.get(key);
          if (r) resources.set(n, r);
        }
      }
      return { resources, invalid };
    },
    keysFor: (sub) => [...(sub.wildcard ? allNames : sub.names)].flatMap((n) => keyOf(n) ?? []),
  };
}

function sotwClient(cache: SecretCache, proxy: string) {
  const view = proxyView(cache, proxy);
  const out: SotwAction[] = [];
  const driver = new StreamDriver<DiscoveryRequest, SotwAction>(new SotwStream({ resolve: view.resolve }), cache, view.keysFor, (a) => out.push(...a));
  const sent = () => out.filter((a) => a.type === 'send');
  const ackLast = () => {
    const last = sent().at(-1);
    assert.ok(last && last.type === 'send');
    driver.onRequest({ type_url: TYPE, resource_names: names, version_info: last.response.version_info, response_nonce: last.response.nonce });
  };
  let names: string[] = [];
  const subscribe = (n: string[], nonce = '') => {
    names = n;
    driver.onRequest({ type_url: TYPE, node: { id: proxy }, resource_names: n, response_nonce: nonce });
  };
  return { driver, out, sent, ackLast, subscribe };
}

describe('streams driven by the SecretCache', () => {
  it('fans a trust bundle change out to 1,000 streams: one push each, and ACKs send nothing', async () => {
    const cache = new SecretCache();
    cache.set('mesh/system_trust_bundle', res('system_trust_bundle', 't1'));
    const clients = Array.from({ length: 1000 }, (_, i) => sotwClient(cache, `p${i}`));
    for (const c of clients) {
      c.subscribe(['system_trust_bundle']);
      c.ackLast();
    }
    assert.ok(clients.every((c) => c.sent().length === 1));
    cache.set('mesh/system_trust_bundle', res('system_trust_bundle', 't2'));
    assert.ok(clients.every((c) => c.sent().length === 1), 'nothing before the batch is delivered');
    await settle();
    for (const c of clients) {
      const s = c.sent();
      assert.equal(s.length, 2);
      assert.equal(s[1]!.type === 'send' && s[1]!.resources[0]!.version, 't2');
      c.ackLast();
    }
    await settle();
    assert.ok(clients.every((c) => c.sent().length === 2), 'ACKs of the push send nothing more');
    for (const c of clients) c.driver.close();
    assert.equal(cache.watchCount, 0);
    assert.equal(cache.indexedKeyCount, 0);
  });

  it('answers a held identity the moment the cache gets it, once', async () => {
    const cache = new SecretCache();
    const c = sotwClient(cache, 'p1');
    c.subscribe(['default']);
    assert.equal(c.sent().length, 0);
    cache.set('p1/default', res('default', 'v1'));
    cache.set('p2/default', res('default', 'v1')); // another proxy's secret does not wake p1
    await settle();
    assert.equal(c.sent().length, 1);
  });

  it('moves the watch with the subscription: old keys no longer wake the stream, new keys do', async () => {
    const cache = new SecretCache();
    cache.set('p1/default', res('default', 'v1'));
    cache.set('mesh/ROOTCA', res('ROOTCA', 'r1'));
    const c = sotwClient(cache, 'p1');
    c.subscribe(['default']);
    const first = c.sent()[0]!;
    assert.ok(first.type === 'send');
    c.subscribe(['ROOTCA'], first.response.nonce);
    assert.equal(c.sent().length, 2);
    c.ackLast();
    cache.set('p1/default', res('default', 'v2'));
    await settle();
    assert.equal(c.sent().length, 2);
    cache.set('mesh/ROOTCA', res('ROOTCA', 'r2'));
    await settle();
    assert.equal(c.sent().length, 3);
  });

  it('drops the watch when the stream fails', () => {
    const cache = new SecretCache();
    const c = sotwClient(cache, 'p1');
    c.subscribe(['no-such-name']);
    assert.ok(c.out.some((a) => a.type === 'fail'));
    assert.equal(c.driver.closed, true);
    assert.equal(cache.indexedKeyCount, 0);
  });

  it('delta: pushes only the changed secret and announces a deleted one as removed', async () => {
    const cache = new SecretCache();
    cache.set('p1/default', res('default', 'v1'));
    cache.set('mesh/ROOTCA', res('ROOTCA', 'r1'));
    const view = proxyView(cache, 'p1');
    const out: DeltaAction[] = [];
    const d = new StreamDriver<DeltaDiscoveryRequest, DeltaAction>(new DeltaStream({ resolve: view.resolve }), cache, view.keysFor, (a) => out.push(...a));
    d.onRequest({ type_url: TYPE, node: { id: 'p1' }, resource_names_subscribe: ['default', 'ROOTCA'], initial_resource_versions: { ROOTCA: 'r1' } });
    const sends = () => out.flatMap((a) => (a.type === 'send' ? [a.response] : []));
    assert.deepEqual(sends().map((r) => r.resources.map((x) => x.name)), [['default']]);
    cache.set('mesh/ROOTCA', undefined);
    await settle();
    assert.deepEqual(sends()[1]?.removed_resources, ['ROOTCA']);
    assert.deepEqual(sends()[1]?.resources, []);
    d.close();
    assert.equal(cache.indexedKeyCount, 0);
  });
});
