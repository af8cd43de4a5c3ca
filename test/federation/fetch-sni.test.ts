// https_spiffe fetches of a real bundle endpoint serving two trust domains, reached by a DNS name
// (`localhost`): the host name is the SNI first, the trust domain when that one is not the SVID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSpiffeBundle } from '../../src/federation/bundle.js';
import { ENDPOINT_SPIFFE_PATH } from '../../src/federation/endpoint.js';
import { FederationFailure, fetchBundleText } from '../../src/federation/fetch.js';
import { DEFAULT_TD, makeWorld, PAYMENTS_TD, startWorldServer } from '../conformance/world.js';
import { newCa } from './remote.js';

const profileOf = (td: string) => ({ type: 'https_spiffe', endpointSPIFFEID: `spiffe://${td}${ENDPOINT_SPIFFE_PATH}` }) as const;

test('https_spiffe by DNS name: every trust domain of a multi-domain bundle endpoint is fetched (SNI host name first, then the trust domain); when both fail the error names both attempts', async () => {
  const world = makeWorld();
  const server = await startWorldServer(world, { bundleEndpoint: '127.0.0.1:0' });
  try {
    const port = server.bundleEndpoint!.port;
    // The endpoint answers an unknown SNI (here `localhost`) with the first trust domain in name order.
    assert.equal([DEFAULT_TD, PAYMENTS_TD].sort()[0], DEFAULT_TD);
    const defaultCa = [...server.authorities.current!.identities.values()].find((s) => s.trustDomain === DEFAULT_TD)!.ca!;
    const trusted: Record<string, string[]> = { [DEFAULT_TD]: [defaultCa.trustPem], [PAYMENTS_TD]: [world.cas.payRoot.certPem] };
    for (const td of [DEFAULT_TD, PAYMENTS_TD]) {
      const text = await fetchBundleText(`https://localhost:${port}/${td}`, profileOf(td), trusted[td]!, { timeoutMs: 5000, serverNameForIp: td });
      assert.deepEqual(decodeSpiffeBundle(text).caPems, trusted[td], td);
    }

    // Trusting a CA the endpoint does not chain to: both attempts fail, and the error says so for each.
    const stranger = newCa(PAYMENTS_TD);
    const failed = await fetchBundleText(`https://localhost:${port}/${PAYMENTS_TD}`, profileOf(PAYMENTS_TD), [stranger.trustPem], { timeoutMs: 5000, serverNameForIp: PAYMENTS_TD }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(failed instanceof FederationFailure, String(failed));
    assert.equal(failed.reason, 'tls');
    assert.match(failed.message, /with SNI "localhost": .*TLS authentication failed/);
    assert.match(failed.message, new RegExp(`with SNI "${PAYMENTS_TD.replace(/[.]/g, '\\.')}": .*TLS authentication failed`));
  } finally {
    await server.close();
    world.cleanup();
  }
});
