import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DeltaStream, type DeltaAction, type DeltaSendAction } from '../../src/xds/delta.js';
import type { DeltaDiscoveryRequest } from '../../src/xds/messages.js';
import { TYPE, World, ctxFor } from './fixtures.js';
import { arrayWork } from '../helpers/array-work.js';

const node = { id: 'default.web-1', cluster: 'web' };

function sends(actions: DeltaAction[]): DeltaSendAction[] {
  return actions.filter((a): a is DeltaSendAction => a.type === 'send');
}
function onlySend(actions: DeltaAction[]): DeltaSendAction {
  const s = sends(actions);
  assert.equal(s.length, 1, `expected exactly one send, got ${JSON.stringify(actions.map((a) => a.type))}`);
  return s[0]!;
}
/** "name@version" of sent resources, and "-name" of removals. */
function diff(send: DeltaSendAction): string[] {
  return [...send.response.resources.map((r) => `${r.name}@${r.version}`), ...send.response.removed_resources.map((n) => `-${n}`)];
}
function req(p: Partial<DeltaDiscoveryRequest>): DeltaDiscoveryRequest {
  return { type_url: TYPE, response_nonce: '', resource_names_subscribe: [], resource_names_unsubscribe: [], initial_resource_versions: {}, ...p };
}
function ack(send: DeltaSendAction): DeltaDiscoveryRequest {
  return req({ response_nonce: send.response.nonce });
}

describe('Delta stream', () => {
  it('sends the subscribed secrets with their versions on the first request', () => {
    const w = new World();
    const a = w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const s = new DeltaStream(ctxFor(w));
    const actions = s.onRequest(req({ node, resource_names_subscribe: ['default', 'ROOTCA'] }));
    assert.deepEqual(actions[0], { type: 'subscribe', subscription: { wildcard: false, names: ['ROOTCA', 'default'] } });
    const send = onlySend(actions);
    assert.deepEqual(diff(send), ['ROOTCA@r1', 'default@v1']);
    assert.equal(send.response.system_version_info, '1');
    assert.equal(send.response.type_url, TYPE);
    assert.equal(send.response.resources[1]!.resource, a.any, 'shared encoded bytes');
  });

  describe('initial_resource_versions (a reconnecting client, go-control-plane#615)', () => {
    it('does not resend a secret whose version the client already has', () => {
      const w = new World();
      w.put('default', 'v1');
      const s = new DeltaStream(ctxFor(w));
      const actions = s.onRequest(req({ node, resource_names_subscribe: ['default'], initial_resource_versions: { default: 'v1' } }));
      assert.equal(sends(actions).length, 0);
      assert.equal(s.state.known.get('default'), 'v1');
      w.put('default', 'v2');
      assert.deepEqual(diff(onlySend(s.onChange())), ['default@v2']);
    });

    it('sends a secret whose version differs and removes one the client claims that no longer exists', () => {
      const w = new World();
      w.put('default', 'v2');
      const s = new DeltaStream(ctxFor(w));
      const actions = s.onRequest(
        req({ node, resource_names_subscribe: ['default', 'spiffe://gone.td'], initial_resource_versions: { default: 'v1', 'spiffe://gone.td': 'g1' } }),
      );
      assert.deepEqual(diff(onlySend(actions)), ['default@v2', '-spiffe://gone.td']);
    });

    it("keeps a claimed version too long to be one of ours as unconfirmed, not as the peer's text, while the secret is pending; it is sent once there", () => {
      const w = new World();
      let pending = true;
      const s = new DeltaStream(ctxFor(w, { resolve: (sub) => ({ ...w.resolve(sub), pending: pending ? ['default'] : [] }) }));
      const actions = s.onRequest(req({ node, resource_names_subscribe: ['default'], initial_resource_versions: { default: 'v'.repeat(100_000) } }));
      assert.deepEqual(sends(actions), []);
      assert.ok([...s.state.known.values()].every((v) => v.length < 100), 'no claimed text kept');
      pending = false;
      w.put('default', 'v1');
      assert.deepEqual(diff(onlySend(s.onChange())), ['default@v1']);
    });

    it('does not report removed a claimed secret whose fate is still pending (SVID being reissued after a restart)', () => {
      const w = new World();
      const pendingResolve: typeof w.resolve = (sub) => ({ ...w.resolve(sub), pending: ['default'] });
      const s = new DeltaStream(ctxFor(w, { resolve: pendingResolve }));
      const actions = s.onRequest(req({ node, resource_names_subscribe: ['default'], initial_resource_versions: { default: 'v1' } }));
      assert.deepEqual(sends(actions), []);
      w.put('default', 'v2');
      assert.deepEqual(diff(onlySend(s.onChange())), ['default@v2']);
    });

    it('starts each stream clean, so the same client on a new stream is judged only by what it now claims', () => {
      const w = new World();
      w.put('default', 'v1');
      const old = new DeltaStream(ctxFor(w));
      onlySend(old.onRequest(req({ node, resource_names_subscribe: ['default'] })));
      // Reconnect that lost its cache: no initial versions → gets everything again.
      const fresh = new DeltaStream(ctxFor(w));
      assert.deepEqual(diff(onlySend(fresh.onRequest(req({ node, resource_names_subscribe: ['default'] })))), ['default@v1']);
      // Reconnect that kept its cache: nothing to send.
      const warm = new DeltaStream(ctxFor(w));
      assert.deepEqual(sends(warm.onRequest(req({ node, resource_names_subscribe: ['default'], initial_resource_versions: { default: 'v1' } }))), []);
    });

    it('ignores initial versions of names outside the subscription', () => {
      const w = new World();
      w.put('default', 'v1');
      const s = new DeltaStream(ctxFor(w));
      const send = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default'], initial_resource_versions: { other: 'x' } })));
      assert.deepEqual(diff(send), ['default@v1'], 'no removal of a name the stream never subscribed to');
    });

    it('ignores initial_resource_versions on later requests', () => {
      const w = new World();
      w.put('default', 'v1');
      w.put('ROOTCA', 'r1');
      const s = new DeltaStream(ctxFor(w));
      const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default'] })));
      const more = s.onRequest(req({ response_nonce: first.response.nonce, resource_names_subscribe: ['ROOTCA'], initial_resource_versions: { ROOTCA: 'r1' } }));
      assert.deepEqual(diff(onlySend(more)), ['ROOTCA@r1']);
    });
  });

  it('sends only the secrets that changed', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const s = new DeltaStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default', 'ROOTCA'] })));
    s.onRequest(ack(first));
    w.put('ROOTCA', 'r2');
    w.put('default', 'v1'); // re-put, same version
    const send = onlySend(s.onChange());
    assert.deepEqual(diff(send), ['ROOTCA@r2']);
    assert.equal(send.response.system_version_info, '2');
    assert.deepEqual(s.onChange(), [], 'nothing changed since');
  });

  it('announces the removal of a subscribed secret that stops resolving, and sends it again when it returns', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new DeltaStream(ctxFor(w));
    onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default'] })));
    w.drop('default');
    assert.deepEqual(diff(onlySend(s.onChange())), ['-default']);
    assert.deepEqual(s.onChange(), [], 'removal announced once');
    w.put('default', 'v1');
    assert.deepEqual(diff(onlySend(s.onChange())), ['default@v1']);
  });

  it('holds a subscribed name until it resolves (no removal for a name the client never had)', () => {
    const w = new World();
    const s = new DeltaStream(ctxFor(w));
    assert.equal(sends(s.onRequest(req({ node, resource_names_subscribe: ['default'] }))).length, 0);
    assert.deepEqual(s.onChange(), []);
    w.put('default', 'v1');
    assert.deepEqual(diff(onlySend(s.onChange())), ['default@v1']);
  });

  it('ACK sends nothing; NACK sends nothing and does not loop; a later change is sent', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new DeltaStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default'] })));
    assert.deepEqual(s.onRequest(ack(first)), [{ type: 'ack', nonce: first.response.nonce, version_info: '' }]);
    w.put('default', 'v2');
    const second = onlySend(s.onChange());
    const nack = req({ response_nonce: second.response.nonce, error_detail: { code: 13, message: 'rejected' } });
    assert.deepEqual(s.onRequest(nack), [{ type: 'nack', nonce: second.response.nonce, version_info: '', detail: { code: 13, message: 'rejected' } }]);
    // The same NACK again answers nothing new: not counted twice, nothing sent.
    for (let i = 0; i < 2; i++) assert.deepEqual(s.onRequest(nack), [{ type: 'ignore', reason: 'unknown-nonce', nonce: second.response.nonce }]);
    assert.deepEqual(s.onChange(), []);
    w.put('default', 'v3');
    assert.deepEqual(diff(onlySend(s.onChange())), ['default@v3']);
  });

  it('only a nonce this stream sent and not yet answered is an ACK or a NACK; a made-up or repeated one is ignored, its subscription change still applied', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const s = new DeltaStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default'] })));
    for (let i = 0; i < 3; i++) assert.deepEqual(s.onRequest(req({ response_nonce: `never-sent-${i}` })), [{ type: 'ignore', reason: 'unknown-nonce', nonce: `never-sent-${i}` }]);
    assert.deepEqual(s.onRequest(req({ response_nonce: 'never-sent', error_detail: { code: 13, message: 'x' } })), [{ type: 'ignore', reason: 'unknown-nonce', nonce: 'never-sent' }]);
    assert.deepEqual(s.onRequest(ack(first)), [{ type: 'ack', nonce: first.response.nonce, version_info: '' }]);
    assert.deepEqual(s.onRequest(ack(first)), [{ type: 'ignore', reason: 'unknown-nonce', nonce: first.response.nonce }]);
    const sub = s.onRequest(req({ response_nonce: 'made-up', resource_names_subscribe: ['ROOTCA'] }));
    assert.deepEqual(sub.map((a) => a.type), ['ignore', 'subscribe', 'send']);
    assert.deepEqual(diff(onlySend(sub)), ['ROOTCA@r1']);
  });

  it('applies subscription changes even when they carry an older nonce (delta requests are never repeated)', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const s = new DeltaStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default'] })));
    w.put('default', 'v2');
    onlySend(s.onChange());
    const actions = s.onRequest(req({ response_nonce: first.response.nonce, resource_names_subscribe: ['ROOTCA'] }));
    assert.deepEqual(diff(onlySend(actions)), ['ROOTCA@r1']);
  });

  it('unsubscribing sends no removal; subscribing again resends even an unchanged version', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const s = new DeltaStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['default', 'ROOTCA'] })));
    const un = s.onRequest(req({ response_nonce: first.response.nonce, resource_names_unsubscribe: ['ROOTCA'] }));
    assert.deepEqual(un.map((a) => a.type), ['ack', 'subscribe']);
    assert.equal(s.state.known.has('ROOTCA'), false);
    w.put('ROOTCA', 'r2');
    assert.deepEqual(s.onChange(), [], 'unsubscribed secrets are not pushed');
    w.put('ROOTCA', 'r1');
    assert.deepEqual(diff(onlySend(s.onRequest(req({ resource_names_subscribe: ['ROOTCA'] })))), ['ROOTCA@r1']);
    // Subscribing again to a name already held by the client resends it too (xDS: the client may have lost it).
    assert.deepEqual(diff(onlySend(s.onRequest(req({ resource_names_subscribe: ['default'] })))), ['default@v1']);
  });

  describe('a name unsubscribed while a response carrying it was unanswered, then subscribed again', () => {
    const X = 'spiffe://x.td';
    it('gets its removal when it is gone by then: the response in flight would otherwise leave the client holding the deleted secret', () => {
      const w = new World();
      w.put(X, 'x1');
      const s = new DeltaStream(ctxFor(w));
      onlySend(s.onRequest(req({ node, resource_names_subscribe: [X] })));
      // The client unsubscribes before it has read the response (no ACK yet)...
      assert.deepEqual(s.onRequest(req({ resource_names_unsubscribe: [X] })).map((a) => a.type), ['subscribe']);
      w.drop(X);
      // ...and subscribes again before reading it: that response, read now, gives it x1.
      assert.deepEqual(diff(onlySend(s.onRequest(req({ resource_names_subscribe: [X] })))), [`-${X}`]);
      w.put(X, 'x2');
      assert.deepEqual(diff(onlySend(s.onChange())), [`${X}@x2`]);
    });

    it('gets the current version when it was recreated by then', () => {
      const w = new World();
      w.put(X, 'x1');
      const s = new DeltaStream(ctxFor(w));
      onlySend(s.onRequest(req({ node, resource_names_subscribe: [X] })));
      s.onRequest(req({ resource_names_unsubscribe: [X] }));
      w.drop(X);
      w.put(X, 'x2');
      assert.deepEqual(diff(onlySend(s.onRequest(req({ resource_names_subscribe: [X] })))), [`${X}@x2`]);
    });

    it('also when it was dropped with the wildcard ("*" unsubscribed)', () => {
      const w = new World();
      w.put(X, 'x1');
      const s = new DeltaStream(ctxFor(w));
      assert.deepEqual(diff(onlySend(s.onRequest(req({ node, resource_names_subscribe: ['*'] })))), [`${X}@x1`]);
      s.onRequest(req({ resource_names_unsubscribe: ['*'] }));
      w.drop(X);
      assert.deepEqual(diff(onlySend(s.onRequest(req({ resource_names_subscribe: [X] })))), [`-${X}`]);
    });

    it('is held without a removal when the client had answered that response (it never held the name again)', () => {
      const w = new World();
      w.put(X, 'x1');
      const s = new DeltaStream(ctxFor(w));
      const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: [X] })));
      s.onRequest(ack(first));
      s.onRequest(req({ resource_names_unsubscribe: [X] }));
      w.drop(X);
      assert.deepEqual(s.onRequest(req({ resource_names_subscribe: [X] })).map((a) => a.type), ['subscribe']);
    });
  });

  describe('wildcard', () => {
    it('a name unsubscribed by name while the wildcard also covers it is sent again, so the client knows to keep it (Envoy waits for that)', () => {
      const w = new World();
      w.put('default', 'v1');
      w.put('ALL', 'a1');
      const s = new DeltaStream(ctxFor(w));
      const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['*', 'default'] })));
      s.onRequest(ack(first));
      const un = s.onRequest(req({ resource_names_unsubscribe: ['default'] }));
      assert.deepEqual(diff(onlySend(un)), ['default@v1']);
      assert.deepEqual(s.state.subscription, { wildcard: true, names: [] });
    });

    it('a name unsubscribed by name that the wildcard does not cover is removed, so the client drops it', () => {
      const w = new World();
      w.put('default', 'v1');
      const explicitOnly = 'spiffe://other.td';
      w.put(explicitOnly, 'o1');
      // The wildcard lists everything but explicitOnly, which resolves only when named.
      const resolve: typeof w.resolve = (sub) => {
        const r = w.resolve(sub);
        if (sub.names.includes(explicitOnly)) return r;
        const resources = new Map(r.resources);
        resources.delete(explicitOnly);
        return { ...r, resources };
      };
      const s = new DeltaStream(ctxFor(w, { resolve }));
      const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['*', explicitOnly] })));
      assert.deepEqual(diff(first), ['default@v1', `${explicitOnly}@o1`]);
      s.onRequest(ack(first));
      assert.deepEqual(diff(onlySend(s.onRequest(req({ resource_names_unsubscribe: [explicitOnly] })))), [`-${explicitOnly}`]);
    });


    it('treats an empty initial subscription as a wildcard and sends everything', () => {
      const w = new World();
      w.put('default', 'v1');
      w.put('ALL', 'a1');
      const s = new DeltaStream(ctxFor(w));
      const actions = s.onRequest(req({ node }));
      assert.deepEqual(actions[0], { type: 'subscribe', subscription: { wildcard: true, names: [] } });
      assert.deepEqual(diff(onlySend(actions)), ['ALL@a1', 'default@v1']);
    });

    it('accepts "*" and sends the first response even when there is nothing yet', () => {
      const w = new World();
      const s = new DeltaStream(ctxFor(w));
      const send = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['*'] })));
      assert.deepEqual(diff(send), []);
      w.put('spiffe://new.td', 'n1');
      assert.deepEqual(diff(onlySend(s.onChange())), ['spiffe://new.td@n1']);
      w.drop('spiffe://new.td');
      assert.deepEqual(diff(onlySend(s.onChange())), ['-spiffe://new.td']);
    });

    it('removes a claimed secret that no longer exists for a wildcard reconnect', () => {
      const w = new World();
      w.put('default', 'v1');
      const s = new DeltaStream(ctxFor(w));
      const send = onlySend(s.onRequest(req({ node, initial_resource_versions: { default: 'v1', old: 'o1' } })));
      assert.deepEqual(diff(send), ['-old']);
    });

    it('leaving the wildcard with "*" in unsubscribe keeps explicit names only', () => {
      const w = new World();
      w.put('default', 'v1');
      w.put('ALL', 'a1');
      const s = new DeltaStream(ctxFor(w));
      const first = onlySend(s.onRequest(req({ node, resource_names_subscribe: ['*', 'default'] })));
      s.onRequest(req({ response_nonce: first.response.nonce, resource_names_unsubscribe: ['*'] }));
      assert.deepEqual(s.state.subscription, { wildcard: false, names: ['default'] });
      assert.deepEqual([...s.state.known.keys()], ['default']);
      w.put('ALL', 'a2');
      assert.deepEqual(s.onChange(), []);
    });
  });

  it('fails with INVALID_ARGUMENT naming a name that can never exist', () => {
    const w = new World();
    const s = new DeltaStream(ctxFor(w));
    const actions = s.onRequest(req({ node, resource_names_subscribe: ['bogus-x'] }));
    const f = actions.find((a) => a.type === 'fail');
    assert.ok(f && f.type === 'fail' && f.code === 'INVALID_ARGUMENT' && f.message.includes('"bogus-x"'));
    assert.equal(s.state.closed, true);
  });

  it('names the first invalid names, cut, and how many more there were: never a whole request echoed back', () => {
    const s = new DeltaStream(ctxFor(new World()));
    const names = Array.from({ length: 1000 }, (_, i) => `bogus-${String(i).padStart(4, '0')}-${'x'.repeat(900)}`);
    const f = s.onRequest(req({ node, resource_names_subscribe: names })).find((a) => a.type === 'fail');
    assert.ok(f?.type === 'fail' && f.code === 'INVALID_ARGUMENT');
    assert.ok(f.message.length < 2000, `${f.message.length} characters`);
    assert.match(f.message, /^unknown resource names "bogus-0000-x+"\.\.\. \(711 more characters\), "bogus-0001-/);
    assert.match(f.message, /"bogus-0004-x+"\.\.\. \(711 more characters\) and 995 more: no such secret can exist/);
  });

  it('fails a request that would take the whole subscription above maxSubscribedNames, naming the limit', () => {
    const w = new World();
    const s = new DeltaStream(ctxFor(w, { maxSubscribedNames: 5 }));
    const batch = (from: number) => Array.from({ length: 3 }, (_, i) => `spiffe://td-${from + i}.example`);
    s.onRequest(req({ node, resource_names_subscribe: batch(0) }));
    // Unsubscribing makes room: 3 - 1 + 3 = 5 is within the limit.
    const within = s.onRequest(req({ resource_names_subscribe: batch(10), resource_names_unsubscribe: ['spiffe://td-0.example'] }));
    assert.ok(!within.some((a) => a.type === 'fail'), JSON.stringify(within));
    assert.equal(s.state.subscription.names.length, 5);
    const over = s.onRequest(req({ resource_names_subscribe: ['spiffe://td-20.example'] }));
    const failure = over.find((a) => a.type === 'fail');
    assert.ok(failure?.type === 'fail' && /too many resource names subscribed on one stream \(limit 5\)/.test(failure.message), JSON.stringify(over));
    assert.ok(!over.some((a) => a.type === 'subscribe' || a.type === 'send'));
    assert.equal(s.state.closed, true);
  });

  it('a request changing one name of 1,000 subscribed sorts only its own names, not the whole subscription again', () => {
    const s = new DeltaStream(ctxFor(new World()));
    const names = Array.from({ length: 1000 }, (_, i) => `spiffe://td-${String(i).padStart(4, '0')}.example`);
    s.onRequest(req({ node, resource_names_subscribe: names }));
    const sorted = arrayWork('sort', () => {
      for (let i = 0; i < 100; i++) {
        s.onRequest(req({ resource_names_subscribe: [`spiffe://extra-${i}.example`], resource_names_unsubscribe: [names[i]!] }));
        s.onRequest(req({}));
      }
    });
    // Before: each request sorted the whole subscription (200 × ~1,000 names).
    assert.ok(sorted <= 400, `${sorted} names sorted for 200 requests`);
    const expected = [...names.slice(100), ...Array.from({ length: 100 }, (_, i) => `spiffe://extra-${i}.example`)].sort();
    assert.deepEqual(s.state.subscription.names, expected);
    assert.equal(s.state.closed, false);
  });

  it('refuses another type_url', () => {
    const s = new DeltaStream(ctxFor(new World()));
    const [a] = s.onRequest(req({ node, type_url: 'type.googleapis.com/envoy.config.listener.v3.Listener' }));
    assert.ok(a?.type === 'fail' && a.message.includes('envoy.config.listener.v3.Listener'));
  });
});
