import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { createMetrics } from '../../src/server/metrics.js';
import { createLogger } from '../../src/server/logger.js';
import { ADMIN_MAX_CONNECTIONS, startAdminServer, type AdminServerOptions } from '../../src/server/admin.js';
import { Readiness } from '../../src/server/readiness.js';

const silent = createLogger('silent', { destination: new Writable({ write: (_c, _e, cb) => cb() }) });

async function withAdmin(
  overrides: Partial<AdminServerOptions>,
  fn: (base: string, ready: { value: boolean }) => Promise<void>,
): Promise<void> {
  const ready = { value: false };
  const admin = await startAdminServer({
    listen: '127.0.0.1:0',
    metrics: createMetrics(),
    readiness: () => new Readiness().add('flag', () => ({ ok: ready.value, detail: ready.value ? undefined : 'flag is down' })).evaluate(),
    debug: { proxies: () => [], secrets: () => [] },
    logger: silent,
    ...overrides,
  });
  try {
    assert.equal(admin.address, '127.0.0.1');
    assert.ok(admin.port > 0);
    assert.equal(admin.url, `http://127.0.0.1:${admin.port}`);
    await fn(admin.url, ready);
  } finally {
    await admin.close();
  }
}

test('healthz is always 200; readyz follows the checks (503, then 200), ?verbose lists each with its reason', async () => {
  await withAdmin({}, async (base, ready) => {
    const h = await fetch(`${base}/healthz`);
    assert.equal(h.status, 200);
    assert.equal((await h.text()).trim(), 'ok');
    assert.equal((await fetch(`${base}/readyz`)).status, 503);
    const v = await fetch(`${base}/readyz?verbose`);
    assert.equal(v.status, 503);
    assert.equal(await v.text(), '[-]flag failed: flag is down\nnot ready\n');
    ready.value = true;
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    assert.equal(await (await fetch(`${base}/readyz?verbose`)).text(), '[+]flag ok\nready\n');
  });
});

test('a readiness check that throws fails readiness with its message instead of failing the request', () => {
  const r = new Readiness()
    .add('a', () => ({ ok: true }))
    .add('b', () => {
      throw new Error('boom');
    });
  assert.deepEqual(r.evaluate(), { ready: false, checks: [{ name: 'a', ok: true, detail: undefined }, { name: 'b', ok: false, detail: 'check failed: boom' }] });
});

test('metrics serves this server registry in Prometheus text format', async () => {
  const metrics = createMetrics();
  metrics.pushes.inc(7);
  await withAdmin({ metrics }, async (base) => {
    const r = await fetch(`${base}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    assert.match(text, /^mesh_sds_pushes_total 7$/m);
    assert.match(text, /^process_resident_memory_bytes /m);
  });
});

test('debug endpoints return the callbacks JSON with secrets scrubbed', async () => {
  const debug = {
    proxies: () => [{ id: 'm.web', spiffeId: 'spiffe://td/x', token: 'tok-SECRET', labels: { app: 'web' } }],
    secrets: async () => ({
      default: { version: 'v1', notAfter: new Date('2030-01-01T00:00:00Z'), keyPem: '-----BEGIN PRIVATE KEY-----\nX\n-----END PRIVATE KEY-----\n' },
      leaked: { pem: '-----BEGIN EC PRIVATE KEY-----\nY\n-----END EC PRIVATE KEY-----' },
    }),
    identities: () => ({ 'mi-a': { conditions: [{ type: 'Ready', status: 'True' }] } }),
  };
  await withAdmin({ debug }, async (base) => {
    const p = await fetch(`${base}/debug/proxies`);
    assert.equal(p.status, 200);
    assert.match(p.headers.get('content-type') ?? '', /^application\/json/);
    const pText = await p.text();
    assert.ok(!pText.includes('tok-SECRET'));
    assert.deepEqual(JSON.parse(pText), [{ id: 'm.web', spiffeId: 'spiffe://td/x', labels: { app: 'web' } }]);

    const sText = await (await fetch(`${base}/debug/secrets`)).text();
    assert.ok(!sText.includes('PRIVATE KEY'));
    assert.deepEqual(JSON.parse(sText), { default: { version: 'v1', notAfter: '2030-01-01T00:00:00.000Z' }, leaked: {} });

    const i = await fetch(`${base}/debug/identities`);
    assert.equal(i.status, 200);
    assert.deepEqual(await i.json(), { 'mi-a': { conditions: [{ type: 'Ready', status: 'True' }] } });
  });
});

test('unknown paths are 404, /debug/identities without a callback is 404, non-GET is 405', async () => {
  await withAdmin({}, async (base) => {
    assert.equal((await fetch(`${base}/nope`)).status, 404);
    assert.equal((await fetch(`${base}/debug/identities`)).status, 404);
    assert.equal((await fetch(`${base}/healthz?x=1`)).status, 200, 'query strings are ignored');
    const post = await fetch(`${base}/healthz`, { method: 'POST' });
    assert.equal(post.status, 405);
  });
});

test('a throwing debug callback yields 500 without its error text, and the server keeps serving', async () => {
  const debug = {
    proxies: () => {
      throw new Error('internal detail SECRET');
    },
    secrets: () => [],
  };
  await withAdmin({ debug }, async (base) => {
    const r = await fetch(`${base}/debug/proxies`);
    assert.equal(r.status, 500);
    assert.ok(!(await r.text()).includes('SECRET'));
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
});

test('a bare port binds loopback, and close() frees the port', async () => {
  const admin = await startAdminServer({
    listen: '0',
    metrics: createMetrics(),
    readiness: () => ({ ready: true, checks: [] }),
    debug: { proxies: () => [], secrets: () => [] },
    logger: silent,
  });
  assert.equal(admin.address, '127.0.0.1');
  const url = admin.url;
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  await admin.close();
  await assert.rejects(fetch(`${url}/healthz`));
});

test('an invalid listen address is refused', async () => {
  const base = { metrics: createMetrics(), readiness: () => ({ ready: true, checks: [] }), debug: { proxies: () => [], secrets: () => [] }, logger: silent };
  await assert.rejects(startAdminServer({ ...base, listen: 'localhost' }), /host:port/);
  await assert.rejects(startAdminServer({ ...base, listen: '127.0.0.1:99999' }), /invalid port/);
});

test('a request target that URL parsing rejects is a 400, not a 500', async () => {
  const { connect } = await import('node:net');
  await withAdmin({}, async (base) => {
    const port = Number(new URL(base).port);
    for (const line of ['GET //% HTTP/1.1', 'GET http://[/ HTTP/1.1']) {
      const s = connect(port, '127.0.0.1');
      s.write(`${line}\r\nHost: x\r\nConnection: close\r\n\r\n`);
      let text = '';
      s.setEncoding('utf8').on('data', (c: string) => (text += c));
      await new Promise((r) => s.once('close', r));
      assert.match(text.split('\r\n')[0] ?? '', /^HTTP\/1\.1 400 /, line);
    }
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
});

test('POST /rotate rotates every proxy only when bare: an empty or repeated ?proxy=, another parameter or a body is a 400 that rotates nothing', async () => {
  const calls: (string | undefined)[] = [];
  await withAdmin({ rotate: (proxy) => (calls.push(proxy), proxy ? 1 : 7) }, async (base) => {
    for (const [target, init, expected] of [
      ['/rotate?proxy=', {}, /proxy is empty/],
      ['/rotate?proxy=%20', {}, /proxy is empty/],
      ['/rotate?proxy=default.a&proxy=default.b', {}, /more than once/],
      ['/rotate?node=default.a', {}, /unknown parameter "node"/],
      ['/rotate', { body: JSON.stringify({ proxy: 'default.backend-1' }), headers: { 'content-type': 'application/json' } }, /takes no body/],
    ] as const) {
      const r = await fetch(`${base}${target}`, { method: 'POST', ...init });
      assert.equal(r.status, 400, target);
      assert.match(((await r.json()) as { error: string }).error, expected);
    }
    assert.deepEqual(calls, [], 'nothing was rotated');
    assert.deepEqual(await (await fetch(`${base}/rotate?proxy=default.a`, { method: 'POST' })).json(), { rotated: 1 });
    assert.deepEqual(await (await fetch(`${base}/rotate`, { method: 'POST' })).json(), { rotated: 7 });
    assert.deepEqual(calls, ['default.a', undefined]);
  });
});

test('POST /rotate identical to one accepted less than 1 s ago is coalesced: 200 {rotated: 0, coalesced: true}, nothing reissued, at most one log line a second', async () => {
  const lines: { msg: string; alsoCoalescedSinceLastLine?: number }[] = [];
  const logger = createLogger('info', { destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }) });
  const calls: (string | undefined)[] = [];
  const rotate = (proxy?: string) => (calls.push(proxy), proxy === 'default.nobody' ? 0 : proxy ? 1 : 7);
  await withAdmin({ rotate, logger }, async (base) => {
    const post = async (target: string) => {
      const r = await fetch(`${base}${target}`, { method: 'POST' });
      return { status: r.status, body: await r.json() };
    };
    assert.deepEqual(await post('/rotate'), { status: 200, body: { rotated: 7 } });
    const storm = await Promise.all(Array.from({ length: 20 }, () => post('/rotate')));
    for (const r of storm) assert.deepEqual(r, { status: 200, body: { rotated: 0, coalesced: true } });
    // Another scope is not the same request; an unknown proxy (404) was never accepted.
    assert.deepEqual(await post('/rotate?proxy=default.a'), { status: 200, body: { rotated: 1 } });
    assert.deepEqual(await post('/rotate?proxy=default.a'), { status: 200, body: { rotated: 0, coalesced: true } });
    assert.equal((await post('/rotate?proxy=default.nobody')).status, 404);
    assert.equal((await post('/rotate?proxy=default.nobody')).status, 404);
    assert.deepEqual(calls, [undefined, 'default.a', 'default.nobody', 'default.nobody'], 'one reissue of all proxies for 21 requests');
    assert.equal(lines.filter((l) => l.msg.startsWith('rotation coalesced')).length, 1, '21 coalesced requests within a second: one line');

    await new Promise((r) => setTimeout(r, 1050));
    assert.deepEqual(await post('/rotate'), { status: 200, body: { rotated: 7 } });
    assert.deepEqual(await post('/rotate'), { status: 200, body: { rotated: 0, coalesced: true } });
    assert.deepEqual(calls, [undefined, 'default.a', 'default.nobody', 'default.nobody', undefined]);
    const coalescedLines = lines.filter((l) => l.msg.startsWith('rotation coalesced'));
    assert.equal(coalescedLines.length, 2);
    assert.equal(coalescedLines[1]!.alsoCoalescedSinceLastLine, 20, 'the next line counts the requests not logged');
  });
});

test('the admin server keeps at most 128 connections: one more closes one at once, so idle sockets cannot take the descriptors the gRPC listener needs; it answers again once they go', async () => {
  await withAdmin({}, async (base) => {
    const { port } = new URL(base);
    const closed: Socket[] = [];
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = connect(Number(port), '127.0.0.1', () => resolve(s));
        s.on('error', reject);
        s.on('close', () => closed.push(s));
        s.resume(); // so the server's close is seen
      });
    const held: Socket[] = [];
    try {
      for (let i = 0; i < ADMIN_MAX_CONNECTIONS; i++) held.push(await open());
      // Let the server accept them all before the one over the limit.
      await new Promise((r) => setTimeout(r, 200));
      held.push(await open());
      const closedAt = Date.now();
      while (closed.length === 0 && Date.now() - closedAt < 3_000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(closed.length === 1 && Date.now() - closedAt < 2_000, 'one connection is closed at once (the oldest idle one: see connections.test.ts)');
    } finally {
      for (const s of held) s.destroy();
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
});
