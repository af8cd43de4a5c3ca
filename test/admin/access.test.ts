// Who may use /rotate and /debug/* of the admin port: not a web page (cross-site request or DNS
// rebinding), and not another host unless --admin-remote-debug says so. Probes and scrapes
// (/healthz, /readyz, /metrics) answer everyone. Real HTTP, on loopback and on this host's own
// non-loopback address (a client there is "another host" to the server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createMetrics } from '../../src/server/metrics.js';
import { createLogger } from '../../src/server/logger.js';
import { startAdminServer, type AdminServerOptions } from '../../src/server/admin.js';
import { BIN } from '../cli/run.js';
import { startProc } from '../e2e/procs.js';

const silent = createLogger('silent', { destination: new Writable({ write: (_c, _e, cb) => cb() }) });

/** This host's first non-loopback IPv4 address: a client connecting to it is not a loopback peer. */
const OWN_ADDRESS = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

interface Reply {
  status: number;
  body: string;
}

/** One request with exactly these headers (fetch cannot set Host, and adds headers of its own). */
function send(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function withAdmin(overrides: Partial<AdminServerOptions>, fn: (base: string, rotations: (string | undefined)[]) => Promise<void>): Promise<void> {
  const rotations: (string | undefined)[] = [];
  const admin = await startAdminServer({
    listen: '127.0.0.1:0',
    metrics: createMetrics(),
    readiness: () => ({ ready: true, checks: [] }),
    debug: { proxies: () => [{ proxy: 'default.web', spiffeId: 'spiffe://td/web' }], secrets: () => [] },
    rotate: (proxy) => (rotations.push(proxy), 1),
    logger: silent,
    ...overrides,
  });
  try {
    await fn(admin.url, rotations);
  } finally {
    await admin.close();
  }
}

test('a browser-style cross-site POST /rotate (Origin, text/plain, empty body) is 403 and rotates nothing; a cross-site read of /debug/* is 403', async () => {
  await withAdmin({}, async (base, rotations) => {
    const port = new URL(base).port;
    const csrf = await send(`${base}/rotate`, { method: 'POST', headers: { origin: 'https://evil.example', host: `evil.example:${port}`, 'content-type': 'text/plain', 'content-length': '0' } });
    assert.equal(csrf.status, 403);
    assert.match(JSON.parse(csrf.body).error, /web page \(Origin or Sec-Fetch-Site header\)/);
    // The Origin alone is enough (a same-host page, Host an address).
    assert.equal((await send(`${base}/rotate`, { method: 'POST', headers: { origin: 'http://127.0.0.1:8080', 'content-length': '0' } })).status, 403);
    assert.deepEqual(rotations, [], 'nothing was rotated');
    for (const site of ['cross-site', 'same-site']) {
      assert.equal((await send(`${base}/debug/proxies`, { headers: { 'sec-fetch-site': site } })).status, 403, site);
    }
    // A URL typed into the browser (Sec-Fetch-Site: none) and curl (no such header) are fine.
    assert.equal((await send(`${base}/debug/proxies`, { headers: { 'sec-fetch-site': 'none' } })).status, 200);
    const curl = await send(`${base}/rotate`, { method: 'POST' });
    assert.equal(curl.status, 200);
    assert.deepEqual(rotations, [undefined]);
    // Probes and scrapes are never refused for these headers.
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      assert.equal((await send(`${base}${path}`, { headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } })).status, 200, path);
    }
  });
});

test('DNS rebinding: a loopback client naming another host in Host is refused /debug/* and /rotate; localhost and IP literals are served, and probes answer any Host', async () => {
  await withAdmin({}, async (base, rotations) => {
    const port = new URL(base).port;
    const rebound = await send(`${base}/debug/proxies`, { headers: { host: `attacker.rebind.example:${port}` } });
    assert.equal(rebound.status, 403);
    assert.match(JSON.parse(rebound.body).error, /Host "attacker\.rebind\.example:\d+" is neither localhost nor an IP address/);
    assert.ok(!rebound.body.includes('default.web'), 'no proxy metadata in the refusal');
    assert.equal((await send(`${base}/rotate`, { method: 'POST', headers: { host: 'attacker.rebind.example' } })).status, 403);
    assert.equal((await send(`${base}/debug/secrets`, { headers: { host: 'localhost.evil.example' } })).status, 403);
    assert.deepEqual(rotations, []);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, `10.1.2.3:${port}`]) {
      assert.equal((await send(`${base}/debug/proxies`, { headers: { host } })).status, 200, host);
    }
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      assert.equal((await send(`${base}${path}`, { headers: { host: `mesh-sds.kuma-system.svc:${port}` } })).status, 200, path);
    }
  });
});

test('a request relayed by a reverse proxy on this host (X-Forwarded-For, Forwarded, X-Real-IP from loopback) counts as another host: 403 naming --admin-remote-debug, served with it', async () => {
  const relayed: Record<string, string>[] = [{ 'x-forwarded-for': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }, { 'x-real-ip': '203.0.113.9' }];
  for (const headers of relayed) {
    await withAdmin({}, async (base, rotations) => {
      const r = await send(`${base}/rotate`, { method: 'POST', headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.match(JSON.parse(r.body).error, /--admin-remote-debug/);
      assert.equal((await send(`${base}/debug/proxies`, { headers })).status, 403);
      assert.equal((await send(`${base}/metrics`, { headers })).status, 200, 'probes and scrapes answer relayed clients');
      assert.deepEqual(rotations, []);
    });
    await withAdmin({ remoteDebug: true }, async (base) => {
      assert.equal((await send(`${base}/debug/proxies`, { headers })).status, 200);
    });
  }
});

test('a request relayed by an Envoy sidecar on this host (Istio, Kuma: X-Forwarded-Proto and X-Request-Id, no X-Forwarded-For, from loopback: Istio connects from 127.0.0.6) counts as another host; so do X-Forwarded-Host, X-Forwarded-Client-Cert, X-Envoy-External-Address and Via', async () => {
  const relayed: Record<string, string>[] = [
    // What an Envoy inbound listener sends upstream for an HTTP/1.1 request (use_remote_address: false).
    { 'x-forwarded-proto': 'http', 'x-request-id': '0f6e8a4c-1d2b-4c3a-9e8f-7a6b5c4d3e2f', 'x-envoy-attempt-count': '1', host: '127.0.0.1' },
    { 'x-forwarded-host': 'mesh-sds.example' },
    { 'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/a/sa/b;URI=spiffe://cluster.local/ns/c/sa/d' },
    { 'x-envoy-external-address': '203.0.113.9' },
    { via: '1.1 envoy' },
  ];
  for (const headers of relayed) {
    await withAdmin({}, async (base, rotations) => {
      const r = await send(`${base}/rotate`, { method: 'POST', headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.match(JSON.parse(r.body).error, /--admin-remote-debug/);
      assert.equal((await send(`${base}/debug/proxies`, { headers })).status, 403, JSON.stringify(headers));
      assert.equal((await send(`${base}/healthz`, { headers })).status, 200);
      assert.deepEqual(rotations, []);
    });
  }
});

test('a dual-stack admin ([::]) takes an IPv4 loopback client (::ffff:127.0.0.1) as loopback', async (t) => {
  let admin;
  try {
    admin = await startAdminServer({ listen: '[::]:0', metrics: createMetrics(), readiness: () => ({ ready: true, checks: [] }), debug: { proxies: () => [], secrets: () => [] }, logger: silent });
  } catch (e) {
    return t.skip(`no IPv6 here: ${(e as Error).message}`);
  }
  try {
    assert.equal((await send(`http://127.0.0.1:${admin.port}/debug/proxies`)).status, 200);
  } finally {
    await admin.close();
  }
});

test('another host gets /healthz, /readyz and /metrics but a 403 naming --admin-remote-debug for /debug/* and /rotate; with remoteDebug it is served, whatever its Host', { skip: OWN_ADDRESS ? false : 'no non-loopback IPv4 address on this host' }, async () => {
  await withAdmin({ listen: `${OWN_ADDRESS}:0` }, async (base, rotations) => {
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await send(`${base}${path}`)).status, 200, path);
    for (const [path, method] of [['/debug/proxies', 'GET'], ['/debug/identities', 'GET'], ['/rotate', 'POST']] as const) {
      const r = await send(`${base}${path}`, { method });
      assert.equal(r.status, 403, path);
      assert.match(JSON.parse(r.body).error, /only clients on this host \(loopback\); start serve with --admin-remote-debug \(MESH_SDS_ADMIN_REMOTE_DEBUG=true\)/);
    }
    assert.deepEqual(rotations, []);
  });
  await withAdmin({ listen: `${OWN_ADDRESS}:0`, remoteDebug: true }, async (base, rotations) => {
    const port = new URL(base).port;
    assert.equal((await send(`${base}/debug/proxies`)).status, 200);
    // Prometheus or an operator in the cluster names the Service.
    assert.equal((await send(`${base}/debug/proxies`, { headers: { host: `mesh-sds.kuma-system.svc:${port}` } })).status, 200);
    assert.equal((await send(`${base}/rotate`, { method: 'POST' })).status, 200);
    assert.deepEqual(rotations, [undefined]);
    // Still no browser.
    assert.equal((await send(`${base}/debug/proxies`, { headers: { origin: 'https://evil.example' } })).status, 403);
  });
});

test('serve: MESH_SDS_ADMIN_REMOTE_DEBUG=true (or --admin-remote-debug) opens /debug/* to other hosts; without it they are refused', { skip: OWN_ADDRESS ? false : 'no non-loopback IPv4 address on this host' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-admin-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const statusOf = async (env: Record<string, string>, flags: string[]) => {
    const server = startProc('mesh-sds serve', process.execPath, [BIN, 'serve', '--resources', join(dir, 'resources'), '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0', '--admin', `${OWN_ADDRESS}:0`, ...flags], { env: { ...process.env, ...env } });
    try {
      const serving = JSON.parse(await server.waitForLine(/"msg":"mesh-sds serving"/, 20_000)) as { admin: string };
      return [(await send(`${serving.admin}/debug/proxies`)).status, (await send(`${serving.admin}/healthz`)).status];
    } finally {
      await server.stop();
    }
  };
  assert.deepEqual(await statusOf({}, []), [403, 200]);
  assert.deepEqual(await statusOf({ MESH_SDS_ADMIN_REMOTE_DEBUG: 'false' }, []), [403, 200]);
  assert.deepEqual(await statusOf({ MESH_SDS_ADMIN_REMOTE_DEBUG: 'true' }, []), [200, 200]);
  assert.deepEqual(await statusOf({}, ['--admin-remote-debug']), [200, 200]);
});

test('refusals are logged at most once a second for each kind (web page, other host, rebinding Host), the next line counting those left out', async () => {
  const lines: { msg: string; kind?: string; alsoRefusedSinceLastLine?: number }[] = [];
  const logger = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }) });
  await withAdmin({ logger }, async (base) => {
    for (let i = 0; i < 30; i++) await send(`${base}/rotate`, { method: 'POST', headers: { origin: 'https://evil.example' } });
    await send(`${base}/debug/proxies`, { headers: { host: 'attacker.rebind.example' } });
    const refused = () => lines.filter((l) => l.msg === 'admin request refused');
    assert.deepEqual(refused().map((l) => [l.kind, l.alsoRefusedSinceLastLine]), [['browser', 0], ['dns-rebinding', 0]]);
    await new Promise((r) => setTimeout(r, 1050));
    await send(`${base}/rotate`, { method: 'POST', headers: { origin: 'https://evil.example' } });
    assert.deepEqual(refused().map((l) => [l.kind, l.alsoRefusedSinceLastLine]), [['browser', 0], ['dns-rebinding', 0], ['browser', 29]]);
  });
});
