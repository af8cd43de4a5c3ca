// The https_web profile (SPEC §10): the bundle endpoint is authenticated by Web PKI — system roots
// plus the CAs of --federation-ca-file (FetchOptions.webCaPem) and a host name check — not by the
// remote trust domain's bundle. Real HTTPS server, certificates made by openssl.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { FederationFollower, type FederatedDomain } from '../../src/federation/follower.js';
import { FederationFailure, fetchBundleText } from '../../src/federation/fetch.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import type { ClusterFederatedTrustDomain } from '../../src/api/types.js';
import { run } from './helpers.js';
import { bundleOf, ManualTimers, newCa } from './remote.js';

const TD = 'zone-b.test';

interface WebPki {
  caPem: string;
  /** A server certificate for DNS:localhost / IP:127.0.0.1 signed by the CA, with its key. */
  cert: string;
  key: string;
}

async function openssl(args: string[]): Promise<void> {
  const r = await run('openssl', args);
  assert.equal(r.code, 0, `openssl ${args[0]}: ${r.stderr}`);
}

/** A test Web PKI: a CA and a server certificate with serverAuth, as a public CA would issue. */
async function webPki(name: string): Promise<WebPki> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-web-pki-'));
  try {
    const f = (n: string) => join(dir, n);
    await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', `/CN=${name} Test Root CA`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=localhost']);
    writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n');
    await openssl(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.pem'), '-days', '1', '-extfile', f('ext.cnf')]);
    return { caPem: readFileSync(f('ca.pem'), 'utf8'), cert: readFileSync(f('srv.pem'), 'utf8'), key: readFileSync(f('srv.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An HTTPS bundle endpoint on localhost presenting `pki`'s server certificate. */
async function webEndpoint(pki: WebPki, body: string): Promise<{ url: string; server: Server; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = createServer({ cert: pki.cert, key: pki.key }, (_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  server.keepAliveTimeout = 1;
  // 'localhost' resolves the same way for the server and the follower's client.
  await new Promise<void>((resolve) => server.listen(0, 'localhost', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://localhost:${port}/${TD}`,
    server,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function webCftd(url: string): ClusterFederatedTrustDomain {
  return { kind: 'ClusterFederatedTrustDomain', name: 'zone-b', mesh: '', namespace: '', labels: {}, spec: { trustDomain: TD, bundleEndpointURL: url, bundleEndpointProfile: { type: 'https_web' } } };
}

test('https_web: a bundle endpoint with a certificate from the --federation-ca-file CA is accepted; one from an unknown CA is refused and reported, the last good bundle stays', async () => {
  const trusted = await webPki('Trusted');
  const unknown = await webPki('Unknown');
  const caB = newCa(TD);
  const ep = await webEndpoint(trusted, bundleOf([caB], 5, 120));
  const registry = new Registry();
  const follower = new FederationFollower({ state: new MemoryStateStore(), timers: new ManualTimers(), registry, random: () => 1, fetch: { webCaPem: trusted.caPem } });
  const domain = (): FederatedDomain => follower.current.domains.get('zone-b')!;
  try {
    await follower.setResources([webCftd(ep.url)]);
    // https_web needs no bootstrap bundle: nothing is trusted before the first fetch.
    assert.equal(domain().source, 'none');
    assert.equal(domain().conditions.find((c) => c.type === 'Ready')?.reason, 'NoBundle');

    await follower.refreshNow('zone-b');
    assert.equal(domain().lastError, undefined, domain().lastError?.message);
    assert.equal(domain().source, 'endpoint');
    assert.equal(domain().bundle?.sequence, 5);
    assert.deepEqual(domain().bundle?.caPems, [caB.trustPem]);
    assert.deepEqual(domain().conditions.map((c) => [c.type, c.status, c.reason]), [['Fetched', 'True', 'Fetched'], ['Ready', 'True', 'Trusted']]);
    assert.equal(ep.hits(), 1);

    // The endpoint now presents a certificate of a CA nobody configured, and a newer bundle.
    ep.server.setSecureContext({ cert: unknown.cert, key: unknown.key });
    const caB2 = newCa(TD);
    const body6 = bundleOf([caB2], 6);
    ep.server.removeAllListeners('request');
    ep.server.on('request', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body6));
    await follower.refreshNow('zone-b');
    const d = domain();
    assert.equal(d.lastError?.reason, 'tls');
    assert.match(d.lastError!.message, /TLS authentication failed/);
    assert.equal(d.bundle?.sequence, 5, 'still the last good bundle');
    assert.deepEqual(d.bundle?.caPems, [caB.trustPem]);
    const fetched = d.conditions.find((c) => c.type === 'Fetched')!;
    assert.deepEqual([fetched.status, fetched.reason], ['False', 'TlsAuthenticationFailed']);
    assert.match(fetched.message, /keeping the last good bundle/);
    assert.equal(d.conditions.find((c) => c.type === 'Ready')?.reason, 'Trusted');
    assert.match(await registry.metrics(), /mesh_sds_federation_refresh_failures_total\{trust_domain="zone-b.test",reason="tls"\} 1/);
  } finally {
    await follower.close();
    await ep.close();
  }
});

test('https_web: without --federation-ca-file a certificate of a private CA is refused (system roots only), nothing is trusted', async () => {
  const pki = await webPki('Private');
  const ep = await webEndpoint(pki, bundleOf([newCa(TD)], 1));
  const registry = new Registry();
  const follower = new FederationFollower({ state: new MemoryStateStore(), timers: new ManualTimers(), registry, random: () => 1 });
  try {
    await follower.setResources([webCftd(ep.url)]);
    await follower.refreshNow('zone-b');
    const d = follower.current.domains.get('zone-b')!;
    assert.equal(d.lastError?.reason, 'tls');
    assert.equal(d.source, 'none');
    assert.equal(d.bundle, undefined);
    assert.deepEqual(d.conditions.map((c) => [c.type, c.status, c.reason]), [['Fetched', 'False', 'TlsAuthenticationFailed'], ['Ready', 'False', 'NoBundle']]);
    assert.match(await registry.metrics(), /mesh_sds_federation_refresh_failures_total\{trust_domain="zone-b.test",reason="tls"\} 1/);
    assert.equal(ep.hits(), 0, 'no request is sent over an unauthenticated connection');
  } finally {
    await follower.close();
    await ep.close();
  }
});

test('https_web: an IP-literal endpoint URL is checked against the certificate\'s IP SAN', async () => {
  const pki = await webPki('Trusted');
  const ep = await webEndpoint(pki, bundleOf([newCa(TD)], 3));
  const follower = new FederationFollower({ state: new MemoryStateStore(), timers: new ManualTimers(), random: () => 1, fetch: { webCaPem: pki.caPem } });
  try {
    const { port } = ep.server.address() as AddressInfo;
    await follower.setResources([webCftd(`https://127.0.0.1:${port}/${TD}`)]);
    await follower.refreshNow('zone-b');
    const d = follower.current.domains.get('zone-b')!;
    assert.equal(d.lastError, undefined, d.lastError?.message);
    assert.equal(d.bundle?.sequence, 3);
  } finally {
    await follower.close();
    await ep.close();
  }
});

test('https_web: the trust of system roots plus --federation-ca-file is built once and reused by every fetch (it was a new TLS context of ~145 roots per fetch: CPU and memory per refresh)', async (t) => {
  const pki = await webPki('Trusted');
  const ep = await webEndpoint(pki, bundleOf([newCa(TD)], 3));
  t.after(() => ep.close());
  const contexts = t.mock.method(tls, 'createSecureContext');
  const profile = { type: 'https_web' } as const;
  for (let i = 0; i < 4; i++) {
    const text = await fetchBundleText(ep.url, profile, [], { webCaPem: pki.caPem, timeoutMs: 5000 });
    assert.match(text, /"spiffe_sequence": 3/);
  }
  assert.equal(ep.hits(), 4);
  assert.ok(contexts.mock.callCount() <= 1, `${contexts.mock.callCount()} TLS contexts built for 4 fetches`);
  // Built per CA-file content: other CAs are another trust (the endpoint's CA is then unknown).
  const other = await webPki('Other');
  const refused = await fetchBundleText(ep.url, profile, [], { webCaPem: other.caPem, timeoutMs: 5000 }).then(() => undefined, (e: unknown) => e);
  assert.ok(refused instanceof FederationFailure && refused.reason === 'tls', String(refused));
  const again = await fetchBundleText(ep.url, profile, [], { webCaPem: pki.caPem, timeoutMs: 5000 });
  assert.match(again, /"spiffe_sequence": 3/);
  assert.ok(contexts.mock.callCount() <= 3, `${contexts.mock.callCount()} TLS contexts built for 6 fetches with 2 CA files`);
});
