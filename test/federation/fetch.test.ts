// One GET of a remote bundle endpoint, against endpoints that misbehave on purpose.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { FederationFailure, fetchBundleText } from '../../src/federation/fetch.js';
import { issueSvidSync } from '../../src/pki/leaf.js';
import { endpointId, newCa, unreadableTimesCa } from './remote.js';
import { makeExpiredCa } from '../helpers/openssl.js';

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

test('an endpoint that only expired CAs could authenticate fails as tls, and the failure says no trusted CA is valid now and where a current one goes', async (t) => {
  const ca = newCa('stale.example');
  const svid = issueSvidSync(ca, endpointId('stale.example'), 3600_000);
  const server = createServer({ cert: svid.certChainPem, key: svid.keyPem }, (_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const expired = await makeExpiredCa('stale-bootstrap');
  const profile = { type: 'https_spiffe', endpointSPIFFEID: endpointId('stale.example') } as const;
  const failed = await fetchBundleText(url, profile, [expired.certPem], { timeoutMs: 3000, serverNameForIp: 'stale.example' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(failed instanceof FederationFailure, String(failed));
  assert.equal(failed.reason, 'tls');
  assert.match(failed.message, /no CA of the bundle trusted for this endpoint is valid now \(valid \S+ to \S+\): put a current bundle of the trust domain in spec\.trustDomainBundle/);
  // A current CA that is simply not the endpoint's: a plain tls failure, not blamed on expiry.
  const other = newCa('other.example');
  const wrong = await fetchBundleText(url, profile, [other.trustPem], { timeoutMs: 3000, serverNameForIp: 'stale.example' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(wrong instanceof FederationFailure && wrong.reason === 'tls', String(wrong));
  assert.doesNotMatch(wrong.message, /valid now/);
});

test('an endpoint failing TLS while the trusted CAs include one whose validity cannot be read fails as tls (the hint threw inside the socket error handler and ended the process)', async (t) => {
  const ca = newCa('badtime.example');
  const svid = issueSvidSync(ca, endpointId('badtime.example'), 3600_000);
  const server = createServer({ cert: svid.certChainPem, key: svid.keyPem }, (_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  // What a peer leaves behind with a bundle of a short-lived CA and one of unreadable times, once
  // the short-lived one expires; or a bootstrap bundle carrying such a CA.
  const authority = [(await makeExpiredCa('badtime-old')).certPem, await unreadableTimesCa('badtime-unreadable')];
  const profile = { type: 'https_spiffe', endpointSPIFFEID: endpointId('badtime.example') } as const;
  const outcome = await Promise.race([
    fetchBundleText(url, profile, authority, { timeoutMs: 3000, serverNameForIp: 'badtime.example' }).then(
      () => 'answered',
      (e: unknown) => e,
    ),
    new Promise((resolve) => setTimeout(() => resolve('never settled'), 5000)),
  ]);
  assert.ok(outcome instanceof FederationFailure, String(outcome));
  assert.equal(outcome.reason, 'tls');
  assert.match(outcome.message, /no CA of the bundle trusted for this endpoint is valid now/);
});

test('an endpoint answering an error status with an endless body is dropped at once, not read until the timeout (the 1 MiB bound held only for 200)', async (t) => {
  const ca = newCa('flood.example');
  const svid = issueSvidSync(ca, endpointId('flood.example'), 3600_000);
  let closed: number | undefined;
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  const server = createServer({ cert: svid.certChainPem, key: svid.keyPem }, (_req, res) => {
    res.writeHead(500, { 'content-type': 'text/plain' });
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
    };
    res.on('drain', pump);
    res.on('close', () => (closed = Date.now()));
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/flood`;
  const started = Date.now();
  const failed = await fetchBundleText(url, { type: 'https_spiffe', endpointSPIFFEID: endpointId('flood.example') }, [ca.trustPem], { timeoutMs: 5000, serverNameForIp: 'flood.example' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(failed instanceof FederationFailure && failed.reason === 'http_status', String(failed));
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.ok(closed !== undefined, 'the connection was still open (and read) 1.5 s after the refusal');
  assert.ok(closed - started < 1500, `closed ${closed - started} ms after the request`);
});

test('an endpoint sending informational (1xx) responses without end is given up on at once as malformed, not parsed until the timeout', async (t) => {
  const ca = newCa('hints.example');
  const svid = issueSvidSync(ca, endpointId('hints.example'), 3600_000);
  let closed: number | undefined;
  const hints = Buffer.from('HTTP/1.1 103 Early Hints\r\nlink: </b>; rel=preload\r\n\r\n'.repeat(1000));
  const server = createServer({ cert: svid.certChainPem, key: svid.keyPem }, (req) => {
    const socket = req.socket;
    const pump = () => {
      while (!socket.destroyed && socket.write(hints));
    };
    socket.on('drain', pump);
    socket.on('close', () => (closed = Date.now()));
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/hints`;
  const started = Date.now();
  const failed = await fetchBundleText(url, { type: 'https_spiffe', endpointSPIFFEID: endpointId('hints.example') }, [ca.trustPem], { timeoutMs: 5000, serverNameForIp: 'hints.example' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(failed instanceof FederationFailure, String(failed));
  assert.equal(failed.reason, 'malformed');
  assert.match(failed.message, /informational/);
  assert.ok(Date.now() - started < 1500, `gave up after ${Date.now() - started} ms`);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.ok(closed !== undefined, 'the connection is closed');
});
