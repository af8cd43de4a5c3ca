import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SotwStream, initialSotwState, sotwStep, sotwSubscription, type SotwAction, type SotwSendAction } from '../../src/xds/sotw.js';
import { normaliseNames } from '../../src/xds/resource.js';
import type { DiscoveryRequest } from '../../src/xds/messages.js';
import { TYPE, World, ctxFor } from './fixtures.js';

const node = { id: 'default.web-1', cluster: 'web' };

function sends(actions: SotwAction[]): SotwSendAction[] {
  return actions.filter((a): a is SotwSendAction => a.type === 'send');
}
function onlySend(actions: SotwAction[]): SotwSendAction {
  const s = sends(actions);
  assert.equal(s.length, 1, `expected exactly one send, got ${JSON.stringify(actions.map((a) => a.type))}`);
  return s[0]!;
}
function names(send: SotwSendAction): string[] {
  return send.resources.map((r) => `${r.name}@${r.version}`);
}
function req(p: Partial<DiscoveryRequest>): DiscoveryRequest {
  return { type_url: TYPE, version_info: '', response_nonce: '', resource_names: [], ...p };
}
/** A stream that has sent `first` for `resource_names` and had it ACKed. */
function acked(world: World, resource_names: string[]) {
  const s = new SotwStream(ctxFor(world));
  const first = onlySend(s.onRequest(req({ node, resource_names })));
  s.onRequest(req({ resource_names, version_info: first.response.version_info, response_nonce: first.response.nonce }));
  return { s, first };
}

describe('SotW stream', () => {
  it('answers the first request with the subscribed secret, a version and a fresh nonce, sharing the encoded bytes', () => {
    const w = new World();
    const a = w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w));
    const actions = s.onRequest(req({ node, resource_names: ['default'] }));
    assert.deepEqual(actions[0], { type: 'subscribe', subscription: { wildcard: false, names: ['default'] } });
    const send = onlySend(actions);
    assert.equal(send.response.version_info, '1');
    assert.equal(send.response.nonce, 'n1');
    assert.equal(send.response.type_url, TYPE);
    assert.equal(send.response.resources.length, 1);
    assert.equal(send.response.resources[0], a.any, 'the Any is the shared object, not a copy');
  });

  it('ACK sends nothing', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names: ['default'] })));
    const actions = s.onRequest(req({ resource_names: ['default'], version_info: '1', response_nonce: first.response.nonce }));
    assert.deepEqual(actions, [{ type: 'ack', nonce: 'n1', version_info: '1' }]);
    assert.equal(s.state.acked?.version_info, '1');
  });

  it("keeps the version of the response ACKed, not the peer's version_info text (a megabyte of it was kept for the stream's life)", () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names: ['default'] })));
    const actions = s.onRequest(req({ resource_names: ['default'], version_info: 'x'.repeat(1 << 20), response_nonce: first.response.nonce }));
    assert.deepEqual(actions, [{ type: 'ack', nonce: 'n1', version_info: '1' }]);
    assert.equal(s.state.acked?.version_info, '1');
  });

  it('answers an ACK or NACK of the last response without resolving: a change since then arrives as its own event', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w));
    const first = onlySend(s.onRequest(req({ node, resource_names: ['default'] })));
    const resolved = w.calls.length;
    w.put('default', 'v2'); // its 'changed' event has not been delivered yet
    assert.deepEqual(s.onRequest(req({ resource_names: ['default'], version_info: '1', response_nonce: first.response.nonce })), [{ type: 'ack', nonce: 'n1', version_info: '1' }]);
    assert.equal(w.calls.length, resolved, 'the ACK did not consult the resolver');
    assert.deepEqual(names(onlySend(s.onChange())), ['default@v2'], 'the change is pushed by its event');
    // A request that changes the subscription is resolved even when it carries the last nonce.
    const second = s.state.lastNonce;
    const actions = s.onRequest(req({ resource_names: ['default', 'other'], version_info: '2', response_nonce: second }));
    assert.ok(w.calls.length > resolved + 1, 'the new subscription was resolved');
    assert.ok(actions.some((a) => a.type === 'subscribe'));
  });

  it('NACK keeps the last ACKed version, does not resend the rejected one, and a later change is pushed', () => {
    const w = new World();
    w.put('default', 'v1');
    const { s } = acked(w, ['default']);
    w.put('default', 'v2');
    const pushed = onlySend(s.onChange());
    assert.deepEqual(names(pushed), ['default@v2']);

    const nack = req({
      resource_names: ['default'],
      version_info: '1',
      response_nonce: pushed.response.nonce,
      error_detail: { code: 3, message: 'bad key' },
    });
    const actions = s.onRequest(nack);
    assert.deepEqual(actions, [{ type: 'nack', nonce: pushed.response.nonce, version_info: '1', detail: { code: 3, message: 'bad key' } }]);
    assert.equal(s.state.acked?.version_info, '1', 'still the last ACKed version');
    assert.equal(s.state.acked?.versions.get('default'), 'v1');
    // The client repeats itself and nothing changed: no loop, and the NACK is counted once.
    for (let i = 0; i < 5; i++) assert.deepEqual(s.onRequest(nack), [], 'a repeated NACK of an answered nonce is neither resent to nor counted again');
    assert.equal(sends(s.onChange()).length, 0, 'an unrelated wake-up does not resend the NACKed version');

    w.put('default', 'v3');
    assert.deepEqual(names(onlySend(s.onChange())), ['default@v3']);
  });

  it('counts only a NACK of a response this stream sent: before its first response, a request with error_detail is no NACK however often it comes, and is still served', () => {
    const w = new World();
    const s = new SotwStream(ctxFor(w));
    const nack = (nonce: string) => req({ resource_names: ['default'], response_nonce: nonce, error_detail: { code: 3, message: 'made up' } });
    // 'default' is held: nothing is sent, so there is nothing the client could have rejected.
    for (const nonce of ['', 'from-an-earlier-stream', 'from-an-earlier-stream', 'x']) {
      const actions = s.onRequest({ ...nack(nonce), node });
      assert.deepEqual(actions.filter((a) => a.type === 'nack'), [], `nonce ${JSON.stringify(nonce)}: ${JSON.stringify(actions)}`);
    }
    w.put('default', 'v1');
    const first = onlySend(s.onChange());
    assert.deepEqual(names(first), ['default@v1']);
    // A NACK of that response is one.
    assert.deepEqual(s.onRequest(nack(first.response.nonce)).map((a) => a.type), ['nack']);
  });

  describe('stale nonces', () => {
    const cases: { name: string; nonce: (sent: string[]) => string }[] = [
      { name: 'the nonce of an older response', nonce: (sent) => sent[0]! },
      { name: 'an unknown nonce', nonce: () => 'nope' },
      { name: 'an empty nonce once something was sent', nonce: () => '' },
    ];
    for (const c of cases) {
      it(`ignores a request carrying ${c.name}`, () => {
        const w = new World();
        w.put('default', 'v1');
        w.put('ROOTCA', 'r1');
        const s = new SotwStream(ctxFor(w));
        const sent = [onlySend(s.onRequest(req({ node, resource_names: ['default'] }))).response.nonce];
        w.put('default', 'v2');
        sent.push(onlySend(s.onChange()).response.nonce);
        const before = s.state;
        const actions = s.onRequest(req({ resource_names: ['default', 'ROOTCA'], response_nonce: c.nonce(sent) }));
        assert.deepEqual(actions, [{ type: 'ignore', reason: 'stale-nonce', nonce: c.nonce(sent) }]);
        assert.equal(s.state, before, 'state untouched: the name change in a stale request is not applied');
      });
    }
  });

  it('answers a first request that carries a nonce from a previous stream (spire#813)', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w));
    const send = onlySend(s.onRequest(req({ node, resource_names: ['default'], version_info: '7', response_nonce: 'old-stream-nonce' })));
    assert.deepEqual(names(send), ['default@v1']);
  });

  it('answers a resubscribe after an unsubscribe even though no version changed (go-control-plane#431)', () => {
    const w = new World();
    w.put('default', 'v1');
    const { s, first } = acked(w, ['default']);
    const unsub = s.onRequest(req({ resource_names: [], version_info: '1', response_nonce: first.response.nonce }));
    assert.deepEqual(unsub, [
      { type: 'subscribe', subscription: { wildcard: false, names: [] } },
    ], 'an empty list after explicit names unsubscribes (not a wildcard) and sends nothing; the nonce, ACKed already, is not ACKed again');
    const again = s.onRequest(req({ resource_names: ['default'], version_info: '1', response_nonce: first.response.nonce }));
    assert.deepEqual(names(onlySend(again)), ['default@v1']);
  });

  it('holds a name that is not resolvable yet and answers the moment it resolves', () => {
    const w = new World();
    const s = new SotwStream(ctxFor(w));
    const actions = s.onRequest(req({ node, resource_names: ['default'] }));
    assert.equal(sends(actions).length, 0, 'no empty response for a held name');
    assert.equal(sends(s.onChange()).length, 0);
    w.put('default', 'v1');
    const send = onlySend(s.onChange());
    assert.deepEqual(names(send), ['default@v1']);
    assert.equal(send.response.version_info, '1');
  });

  it('pushes a version change of a subscribed secret', () => {
    const w = new World();
    w.put('system_trust_bundle', 't1');
    const { s } = acked(w, ['system_trust_bundle']);
    w.put('system_trust_bundle', 't2');
    const send = onlySend(s.onChange());
    assert.deepEqual(names(send), ['system_trust_bundle@t2']);
    assert.equal(send.response.version_info, '2');
    assert.equal(send.response.nonce, 'n2');
  });

  it('pushes nothing when the resolution is unchanged (same versions, even re-encoded objects)', () => {
    const w = new World();
    w.put('default', 'v1');
    const { s } = acked(w, ['default']);
    w.put('default', 'v1'); // a new object with the same version
    w.put('unrelated', 'u1'); // not subscribed
    assert.deepEqual(s.onChange(), []);
  });

  it('does not push a change of a secret the stream is not subscribed to', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const { s } = acked(w, ['default']);
    w.put('ROOTCA', 'r2');
    assert.deepEqual(s.onChange(), []);
  });

  it('answers every change of the subscribed names with the resolvable subset', () => {
    const w = new World();
    w.put('default', 'v1');
    const { s, first } = acked(w, ['default']);
    // Adding a held name still answers (the names changed), with what is resolvable.
    const a = s.onRequest(req({ resource_names: ['default', 'ROOTCA'], version_info: '1', response_nonce: first.response.nonce }));
    const send = onlySend(a);
    assert.deepEqual(names(send), ['default@v1']);
    w.put('ROOTCA', 'r1');
    assert.deepEqual(names(onlySend(s.onChange())), ['ROOTCA@r1', 'default@v1'], 'sorted by name, full state of the subscription');
  });

  it('sends only the subscribed names even if the resolver returns more', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w, { resolve: (sub) => ({ resources: w.resolve({ wildcard: true, names: sub.names }).resources, invalid: [] }) }));
    w.put('ROOTCA', 'r1');
    assert.deepEqual(names(onlySend(s.onRequest(req({ node, resource_names: ['default'] })))), ['default@v1']);
  });

  describe('wildcard', () => {
    it('treats an empty first request as a wildcard and sends everything the proxy may have', () => {
      const w = new World();
      w.put('default', 'v1');
      w.put('ALL', 'a1');
      const s = new SotwStream(ctxFor(w));
      const actions = s.onRequest(req({ node, resource_names: [] }));
      assert.deepEqual(actions[0], { type: 'subscribe', subscription: { wildcard: true, names: [] } });
      assert.deepEqual(names(onlySend(actions)), ['ALL@a1', 'default@v1']);
    });

    it('pushes a newly appearing secret and the removal of one (full state)', () => {
      const w = new World();
      w.put('default', 'v1');
      const { s, first } = acked(w, []);
      assert.equal(first.response.resources.length, 1);
      w.put('spiffe://other.td', 'o1');
      assert.deepEqual(names(onlySend(s.onChange())), ['default@v1', 'spiffe://other.td@o1']);
      w.drop('spiffe://other.td');
      const last = onlySend(s.onChange());
      assert.deepEqual(names(last), ['default@v1']);
      // A later empty list (Envoy's ACK) keeps the legacy wildcard rather than unsubscribing.
      const ack = s.onRequest(req({ resource_names: [], version_info: last.response.version_info, response_nonce: last.response.nonce }));
      assert.deepEqual(ack.map((a) => a.type), ['ack']);
      assert.deepEqual(s.state.subscription, { wildcard: true, names: [] });
    });

    it('answers a wildcard first request even when the proxy has nothing yet', () => {
      const w = new World();
      const s = new SotwStream(ctxFor(w));
      const send = onlySend(s.onRequest(req({ node })));
      assert.deepEqual(send.response.resources, []);
    });

    it('accepts "*" as an explicit wildcard', () => {
      const w = new World();
      w.put('default', 'v1');
      const s = new SotwStream(ctxFor(w));
      assert.deepEqual(names(onlySend(s.onRequest(req({ node, resource_names: ['*'] })))), ['default@v1']);
      assert.equal(s.state.subscription.wildcard, true);
    });
  });

  it('fails with INVALID_ARGUMENT naming a name that can never exist, then ignores the stream', () => {
    const w = new World();
    w.put('default', 'v1');
    const s = new SotwStream(ctxFor(w));
    const actions = s.onRequest(req({ node, resource_names: ['default', 'bogus-b', 'bogus-a'] }));
    const fail = actions.find((a) => a.type === 'fail');
    assert.ok(fail && fail.type === 'fail');
    assert.equal(fail.code, 'INVALID_ARGUMENT');
    assert.match(fail.message, /"bogus-a", "bogus-b"/);
    assert.equal(sends(actions).length, 0);
    assert.equal(s.state.closed, true);
    w.put('default', 'v2');
    assert.deepEqual(s.onChange(), []);
  });

  describe('type_url', () => {
    const cases: { name: string; type_url: string; opts?: { allowEmptyTypeUrl: boolean }; ok: boolean }[] = [
      { name: 'the Secret type is served', type_url: TYPE, ok: true },
      { name: 'an empty type_url on the SDS service means Secret', type_url: '', ok: true },
      { name: 'an empty type_url is refused when the transport says so (ADS)', type_url: '', opts: { allowEmptyTypeUrl: false }, ok: false },
      { name: 'another type is refused, naming it', type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', ok: false },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const w = new World();
        w.put('default', 'v1');
        const s = new SotwStream(ctxFor(w, c.opts));
        const actions = s.onRequest(req({ node, resource_names: ['default'], type_url: c.type_url }));
        if (c.ok) {
          onlySend(actions);
        } else {
          assert.equal(actions.length, 1);
          const a = actions[0]!;
          assert.ok(a.type === 'fail' && a.code === 'INVALID_ARGUMENT');
          assert.ok(a.message.includes(`"${c.type_url}"`), a.message);
        }
      });
    }
  });

  it('remembers the node from the first request and refuses a different node id later', () => {
    const w = new World();
    w.put('default', 'v1');
    w.put('ROOTCA', 'r1');
    const { s, first } = acked(w, ['default']);
    assert.equal(s.state.node?.id, node.id);
    // A later request without node is fine and keeps the first node.
    const more = s.onRequest(req({ resource_names: ['default', 'ROOTCA'], version_info: '1', response_nonce: first.response.nonce }));
    const send = onlySend(more);
    assert.equal(s.state.node?.id, node.id);
    const swapped = s.onRequest(req({ node: { id: 'default.other' }, resource_names: ['default'], response_nonce: send.response.nonce }));
    assert.ok(swapped[0]?.type === 'fail' && /node\.id changed/.test(swapped[0].message));
  });

  it('gives every response a new version_info and a nonce no other stream of the process has', () => {
    const w = new World();
    w.put('default', 'v1');
    const a = new SotwStream(ctxFor(w, { nonce: undefined }));
    const b = new SotwStream(ctxFor(w, { nonce: undefined }));
    const seen = new Set<string>();
    const versions: string[] = [];
    for (const s of [a, b]) seen.add(onlySend(s.onRequest(req({ node, resource_names: ['default'] }))).response.nonce);
    for (let i = 2; i <= 5; i++) {
      w.put('default', `v${i}`);
      for (const s of [a, b]) {
        const r = onlySend(s.onChange()).response;
        if (s === a) versions.push(r.version_info);
        assert.ok(!seen.has(r.nonce), `nonce ${r.nonce} repeated`);
        assert.ok(r.nonce.length <= 10, 'nonces are short (two per stream are kept)');
        seen.add(r.nonce);
      }
    }
    assert.equal(seen.size, 10);
    assert.deepEqual(versions, ['2', '3', '4', '5']);
  });

  it('is pure: a step returns a new state and leaves the old one unchanged', () => {
    const w = new World();
    w.put('default', 'v1');
    const ctx = ctxFor(w);
    const s0 = initialSotwState();
    const r1 = sotwStep(s0, { type: 'request', request: req({ node, resource_names: ['default'] }) }, ctx);
    assert.equal(s0.started, false);
    assert.equal(s0.sent.size, 0);
    assert.equal(r1.state.sent.get('default'), 'v1');
    // Replaying the same event on the same old state gives the same decision.
    const r2 = sotwStep(s0, { type: 'request', request: req({ node, resource_names: ['default'] }) }, ctx);
    assert.deepEqual(names(onlySend(r2.actions)), names(onlySend(r1.actions)));
  });

  it('does not consult the resolver for a change before the first request', () => {
    const w = new World();
    const s = new SotwStream(ctxFor(w));
    assert.deepEqual(s.onChange(), []);
    assert.equal(w.calls.length, 0);
  });
});

describe('sotwSubscription on a started stream (the ACK path)', () => {
  const lists: string[][] = [['a'], ['a', 'b'], ['b', 'a'], ['a', 'a'], ['a', 'b', 'b'], ['a', '*'], ['*'], ['', 'a'], ['a', ''], [], ['b'], ['a', 'b', 'c']];
  it('gives exactly what normalising the names gives, for any list after any subscription', () => {
    for (const current of [['a'], ['a', 'b']]) {
      const state = { started: true, legacyWildcard: false, subscription: { wildcard: false, names: current } };
      for (const got of lists) {
        const r = sotwSubscription(state, got);
        const { names, star } = normaliseNames(got);
        const expected = names.length === 0 && !star ? { wildcard: false, names: [] } : { wildcard: star, names };
        assert.deepEqual({ ...r.subscription, names: [...r.subscription.names] }, expected, `after ${JSON.stringify(current)}: ${JSON.stringify(got)}`);
        assert.equal(r.legacyWildcard, false);
      }
    }
  });

  it('keeps the stream\'s own subscription object when an ACK repeats its names', () => {
    const state = { started: true, legacyWildcard: false, subscription: { wildcard: false, names: ['a', 'b'] } };
    assert.equal(sotwSubscription(state, ['a', 'b']).subscription, state.subscription);
    const legacy = { started: true, legacyWildcard: true, subscription: { wildcard: true, names: [] as string[] } };
    assert.deepEqual(sotwSubscription(legacy, ['a']).subscription, { wildcard: false, names: ['a'] }, 'names after a legacy wildcard leave it');
  });
});
