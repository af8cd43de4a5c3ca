// A proxy that stops reading its stream (Envoy's main thread stuck, a half-dead peer) while its
// secrets keep changing: what waits for it is the latest state, not one response per change.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage } from '../../src/xds/protos.js';
import { decodeAnySecret, tlsCertificate } from './envoy-client.js';
import { serverFixture } from './fixture.js';
import { PATHS, SECRET_TYPE, deltaRequest, discoveryRequest, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const f = serverFixture();
const CHANGES = 1000;

/** Reissues the proxy's SVID `times` times, each delivered to its streams before the next. */
async function rotate(proxy: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const before = f.server.svids.get(proxy);
    assert.ok(f.server.svids.rotate(proxy));
    const deadline = Date.now() + 10_000;
    while (f.server.svids.get(proxy) === before) {
      if (Date.now() > deadline) throw new Error(`rotation ${i} not issued within 10 s`);
      await new Promise((r) => setImmediate(r));
    }
    // The cache delivers the change in a microtask; a turn of the loop lets the stream act on it.
    await new Promise((r) => setImmediate(r));
  }
}

function currentChain(proxy: string): string {
  const id = f.server.svids.get(proxy);
  assert.ok(id?.state === 'issued', `${proxy} has an SVID`);
  return id.svid.certChainPem;
}

/** The certificate chain of `default` in the last response that carried it. */
function lastDefaultChain(messages: Buffer[], api: 'delta' | 'sotw'): string | undefined {
  let chain: string | undefined;
  for (const m of messages) {
    const res = decodeMessage(`envoy.service.discovery.v3.${api === 'delta' ? 'DeltaDiscoveryResponse' : 'DiscoveryResponse'}`, m) as Record<string, any>;
    const anys = api === 'delta' ? (res.resources ?? []).map((r: any) => r.resource) : (res.resources ?? []);
    for (const any of anys) {
      const s = decodeAnySecret(any);
      if (s.name === 'default') chain = tlsCertificate(s).certChainPem;
    }
  }
  return chain;
}

describe('a client that does not read while its secret changes 1,000 times', () => {
  for (const api of ['delta', 'sotw'] as const) {
    it(`${api}: is not queued a response per change, and gets the latest secret once it reads`, async () => {
      const proxy = 'default.pay';
      const session = rawConnect(f.server.address);
      try {
        const call = rawCall(session, api === 'delta' ? PATHS.DeltaSecrets : PATHS.StreamSecrets, { keepMessages: true });
        const first = { node: proxy, typeUrl: SECRET_TYPE, names: ['default'] };
        call.stream.write(grpcFrame(api === 'delta' ? deltaRequest(first) : discoveryRequest(first)));
        await call.waitForMessages(1, 10_000);
        call.stream.pause();
        await rotate(proxy, CHANGES);
        const stream = [...f.server.registry.streams.values()].find((s) => s.info.proxy === proxy && s.info.api === (api === 'delta' ? 'delta' : 'sotw'));
        assert.ok(stream, 'the stream is still open');
        // Before: one response written per change (1,000, ~1.6 MB waiting in the server for this one client).
        assert.ok(stream.info.pushes < CHANGES / 4, `${stream.info.pushes} responses written to a client that reads none`);
        call.stream.resume();
        const want = currentChain(proxy);
        const deadline = Date.now() + 10_000;
        while (lastDefaultChain(call.messages, api) !== want) {
          if (Date.now() > deadline) assert.fail(`the client did not get the latest SVID (${call.messages.length} responses read, ${stream.info.pushes} sent)`);
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        session.destroy();
      }
    });
  }
});
