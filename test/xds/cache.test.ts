import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SecretCache } from '../../src/xds/cache.js';
import { res } from './fixtures.js';
import { arrayWork } from '../helpers/array-work.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('SecretCache', () => {
  it('stores, replaces and deletes versioned resources; an unchanged version is a no-op that keeps the stored bytes', () => {
    const c = new SecretCache({ delivery: 'manual' });
    const a1 = res('default', 'v1');
    assert.equal(c.set('k', a1), true);
    assert.equal(c.get('k'), a1);
    assert.equal(c.set('k', res('default', 'v1')), false);
    assert.equal(c.get('k'), a1, 'the first encoding stays shared');
    assert.equal(c.pendingCount, 1);
    assert.equal(c.set('k', res('default', 'v2')), true);
    assert.equal(c.set('k', undefined), true);
    assert.equal(c.set('k', undefined), false);
    assert.equal(c.has('k'), false);
  });

  it('notifies each watcher once per batch with all of its changed keys (one snapshot update touching many keys)', async () => {
    const c = new SecretCache();
    const calls: Record<string, string[][]> = { ab: [], b: [], z: [] };
    c.watch(['a', 'b'], (keys) => calls.ab!.push(keys));
    c.watch(['b'], (keys) => calls.b!.push(keys));
    c.watch(['z'], (keys) => calls.z!.push(keys));
    c.set('a', res('a', '1'));
    c.set('b', res('b', '1'));
    c.set('c', res('c', '1'));
    c.set('a', res('a', '2'));
    assert.deepEqual(calls.ab, [], 'nothing is delivered synchronously inside the update');
    await Promise.resolve();
    assert.deepEqual(calls, { ab: [['a', 'b']], b: [['b']], z: [] });
  });

  it('delivers only on flush() in manual mode', () => {
    const c = new SecretCache({ delivery: 'manual' });
    const seen: string[][] = [];
    c.watch(['a'], (k) => seen.push(k));
    c.setMany([
      ['a', res('a', '1')],
      ['b', res('b', '1')],
    ]);
    assert.deepEqual(seen, []);
    c.flush();
    assert.deepEqual(seen, [['a']]);
    c.flush();
    assert.deepEqual(seen, [['a']], 'a batch is delivered once');
  });

  it('frees the index when watches are cancelled (1000 watch/cancel cycles leave nothing behind)', () => {
    const c = new SecretCache({ delivery: 'manual' });
    for (let i = 0; i < 1000; i++) {
      const cancel = c.watch([`svid/${i}`, 'trust/default', `alias/${i % 7}`], () => {});
      cancel();
      cancel(); // idempotent
    }
    assert.equal(c.watchCount, 0);
    assert.equal(c.indexedKeyCount, 0);
    const keep = c.watch(['trust/default'], () => {});
    assert.equal(c.indexedKeyCount, 1);
    keep();
    assert.equal(c.indexedKeyCount, 0);
  });

  it('never calls a watch after it is cancelled, even by another watcher of the same batch', () => {
    const c = new SecretCache({ delivery: 'manual' });
    const seen: string[] = [];
    let cancelSecond = (): void => {};
    c.watch(['k'], () => {
      seen.push('first');
      cancelSecond();
    });
    cancelSecond = c.watch(['k'], () => seen.push('second'));
    c.set('k', res('k', '1'));
    c.flush();
    assert.deepEqual(seen, ['first']);
  });

  it('lets a watcher write the cache from its callback without recursion or half-applied state', () => {
    const c = new SecretCache({ delivery: 'manual' });
    let depth = 0;
    let maxDepth = 0;
    const order: string[] = [];
    // Like an alias updater: when `svid` changes, derive `default` from it.
    c.watch(['svid'], () => {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      order.push('svid-watcher');
      const svid = c.get('svid');
      c.set('default', svid && res('default', svid.version));
      c.flush(); // a re-entrant flush must not recurse
      assert.equal(c.get('default')?.version, svid?.version, 'reads see the completed write');
      order.push('svid-watcher-end');
      depth--;
    });
    c.watch(['default'], (keys) => order.push(`default-watcher:${keys.join(',')}:${c.get('default')?.version}`));
    c.set('svid', res('svid', 'v1'));
    c.flush();
    assert.equal(maxDepth, 1);
    // The write's notification is delivered after the callback returns, never from inside it.
    assert.deepEqual(order, ['svid-watcher', 'svid-watcher-end', 'default-watcher:default:v1']);
    assert.equal(c.pendingCount, 0);
  });

  it('does not spin forever on a watcher that changes its own key every time (it yields to the event loop)', { timeout: 5000 }, async () => {
    const c = new SecretCache();
    let n = 0;
    const cancel = c.watch(['k'], () => {
      n++;
      c.set('k', res('k', String(n)));
    });
    c.set('k', res('k', '0'));
    // If delivery looped in microtasks only, this timer would never fire.
    await new Promise<void>((r) => setTimeout(r, 5));
    cancel();
    const calls = n;
    assert.ok(calls > 0);
    await tick();
    await tick();
    assert.equal(n, calls, 'no calls after cancel');
  });

  it('keeps notifying the other watchers when one throws, and reports the error', () => {
    const errors: unknown[] = [];
    const c = new SecretCache({ delivery: 'manual', onError: (e) => errors.push(e) });
    const seen: string[] = [];
    c.watch(['k'], () => {
      throw new Error('boom');
    });
    c.watch(['k'], () => seen.push('ok'));
    c.set('k', res('k', '1'));
    c.flush();
    assert.deepEqual(seen, ['ok']);
    assert.equal((errors[0] as Error).message, 'boom');
  });

  it('touch() notifies watchers of a key without storing anything', () => {
    const c = new SecretCache({ delivery: 'manual' });
    const seen: string[][] = [];
    c.watch(['index/mesh/default'], (k) => seen.push(k));
    c.touch('index/mesh/default');
    c.flush();
    assert.deepEqual(seen, [['index/mesh/default']]);
    assert.equal(c.size, 0);
  });

  it('notifies only the watchers of a changed key, with 10,000 watches in place', () => {
    const c = new SecretCache({ delivery: 'manual' });
    let trustCalls = 0;
    let svidCalls = 0;
    const cancels: (() => void)[] = [];
    for (let i = 0; i < 10_000; i++) {
      cancels.push(
        c.watch([`svid/${i}`, 'trust/default'], (keys) => {
          for (const k of keys) {
            if (k === 'trust/default') trustCalls++;
            else svidCalls++;
          }
        }),
      );
    }
    c.set('svid/42', res('default', 'v2'));
    c.flush();
    assert.equal(svidCalls, 1);
    assert.equal(trustCalls, 0);
    const t0 = performance.now();
    c.set('trust/default', res('system_trust_bundle', 't2'));
    c.flush();
    const ms = performance.now() - t0;
    assert.equal(trustCalls, 10_000, 'every stream of the mesh notified exactly once');
    assert.ok(ms < 500, `fan-out to 10,000 watches took ${ms.toFixed(1)} ms`);
    for (const cancel of cancels) cancel();
    assert.equal(c.indexedKeyCount, 0);
  });
});

describe('chunked delivery of large batches', () => {
  it('calls at most `chunk` watchers per event-loop turn, and every watcher exactly once', async () => {
    const cache = new SecretCache({ chunk: 500 });
    const calls = new Map<number, number>();
    for (let i = 0; i < 2000; i++) cache.watch(['trust'], () => calls.set(i, (calls.get(i) ?? 0) + 1));
    cache.set('trust', res('system_trust_bundle', 'v1'));
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(calls.size, 500, 'first chunk only, before any I/O turn');
    for (let turn = 0; turn < 10 && calls.size < 2000; turn++) await new Promise((r) => setImmediate(r));
    assert.equal(calls.size, 2000);
    assert.ok([...calls.values()].every((n) => n === 1));
  });

  it('merges a change that arrives while a batch is half delivered into one call per deferred watcher', async () => {
    const cache = new SecretCache({ chunk: 1 });
    const seen: string[][] = [];
    cache.watch(['a', 'b'], (keys) => seen.push(['w1', ...keys]));
    cache.watch(['a', 'b'], (keys) => seen.push(['w2', ...keys]));
    cache.set('a', res('a', '1'));
    await Promise.resolve();
    cache.set('b', res('b', '1'));
    for (let turn = 0; turn < 5; turn++) await new Promise((r) => setImmediate(r));
    const w2 = seen.filter((s) => s[0] === 'w2');
    assert.equal(w2.length, 1, 'the deferred watcher is called once with both keys');
    assert.deepEqual(w2[0]!.slice(1).sort(), ['a', 'b']);
  });

  it('tells a deferred watcher of a key changed again while it waits once, not twice', async () => {
    const cache = new SecretCache({ chunk: 1 });
    const seen: string[][] = [];
    cache.watch(['a', 'b', 'c'], (keys) => seen.push(['w1', ...keys]));
    cache.watch(['a', 'b', 'c'], (keys) => seen.push(['w2', ...keys]));
    cache.set('a', res('a', '1'));
    cache.set('b', res('b', '1'));
    await Promise.resolve();
    cache.set('c', res('c', '1'));
    cache.set('a', res('a', '2'));
    for (let turn = 0; turn < 5; turn++) await new Promise((r) => setImmediate(r));
    const w2 = seen.filter((s) => s[0] === 'w2');
    assert.equal(w2.length, 1);
    assert.deepEqual(w2[0]!.slice(1).sort(), ['a', 'b', 'c']);
  });

  it('collects a watcher of 2,000 keys that all changed without searching its list for each key', () => {
    const cache = new SecretCache({ delivery: 'manual' });
    const keys = Array.from({ length: 2000 }, (_, i) => `mesh|m|spiffe://td-${i}.example`);
    let told: string[] = [];
    cache.watch(keys, (changed) => (told = changed));
    for (const k of keys) cache.touch(k);
    const searched = arrayWork('includes', () => cache.flush());
    // Before: each key searched the list collected so far (2,000²/2 = 2 million entries).
    assert.ok(searched < 10_000, `${searched} entries searched`);
    assert.equal(told.length, 2000);
    assert.equal(new Set(told).size, 2000);
  });
});
