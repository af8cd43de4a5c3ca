// One GET of a remote bundle endpoint, against endpoints that misbehave on purpose.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { FederationFailure, fetchBundleText } from '../../src/federation/fetch.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import { endpointId, newCa } from './remote.js';

test('an endpoint that drips its answer a byte at a time is given up on after the timeout (not only when it falls silent)', async (t) => {
  const ca = newCa('drip.example');
  const svid = issueSvidSync(ca, endpointId('drip.example'), 3600_000);
  const timers: NodeJS.Timeout[] = [];
  const server = createServer({ cert: svid.certChainPem, key: svid.keyPem }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    // Never silent for as long as the timeout, never done.
    timers.push(setInterval(() => res.write(' '), 100));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    timers.forEach(clearInterval);
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/drip`;
  const started = Date.now();
  const outcome = await Promise.race([
    fetchBundleText(url, { type: 'https_spiffe', endpointSPIFFEID: endpointId('drip.example') }, [ca.trustPem], { timeoutMs: 600, serverNameForIp: 'drip.example' }).then(
      () => 'answered',
      (e: unknown) => e,
    ),
    new Promise((resolve) => setTimeout(() => resolve('still waiting after 5 s'), 5000)),
  ]);
  assert.ok(outcome instanceof FederationFailure, String(outcome));
  assert.equal(outcome.reason, 'timeout');
  assert.match(outcome.message, /did not answer within 600 ms/);
  assert.ok(Date.now() - started < 2000, `gave up after ${Date.now() - started} ms`);
});
