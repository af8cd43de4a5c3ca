// The admin port answers the kubelet's probes: no client may take all of its connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { createMetrics } from '../../src/server/metrics.js';
import { createLogger } from '../../src/server/logger.js';
import { ADMIN_MAX_CONNECTIONS, startAdminServer, type AdminServer, type AdminServerOptions } from '../../src/server/admin.js';
import { Readiness } from '../../src/server/readiness.js';

async function withAdmin(overrides: Partial<AdminServerOptions>, fn: (admin: AdminServer, lines: Record<string, unknown>[]) => Promise<void>): Promise<void> {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', { destination: new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c)) as Record<string, unknown>), cb()) }) });
  const admin = await startAdminServer({
    listen: '127.0.0.1:0',
    metrics: createMetrics(),
    readiness: () => new Readiness().evaluate(),
    debug: { proxies: () => [], secrets: () => [] },
    logger,
    ...overrides,
  });
  try {
    await fn(admin, lines);
  } finally {
    await admin.close();
  }
}

/** A TCP connection to the admin port from `from` (any 127.x address is this host on Linux). */
function open(port: number, from = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => resolve(s));
    s.on('error', reject);
    s.on('close', () => closed.add(s));
    s.resume(); // so the server's close is seen
  });
}

const closed = new WeakSet<Socket>();
const isClosed = (s: Socket) => closed.has(s);
const settle = () => new Promise((r) => setTimeout(r, 300));

/** One raw GET on a new connection; the status line, or the error that ended it. */
function statusOf(port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let text = '';
    s.setEncoding('latin1').on('data', (c: string) => (text += c));
    s.on('error', (e) => (text ||= `error: ${e.message}`));
    s.on('close', () => resolve(text.split('\r\n')[0] || 'closed without an answer'));
  });
}

test('one client holding all 128 admin connections (idle or mid-headers) does not shut the probes out: its oldest idle one is closed to make room; the cap still holds', async () => {
  await withAdmin({}, async (admin, lines) => {
    const held: Socket[] = [];
    try {
      for (let i = 0; i < ADMIN_MAX_CONNECTIONS; i++) held.push(await open(admin.port, '127.0.0.2'));
      // Half of them stall in the middle of their headers (slowloris).
      for (const s of held.slice(0, ADMIN_MAX_CONNECTIONS / 2)) s.write('GET /healthz HTTP/1.1\r\nX-Slow: ');
      await settle();
      // The kubelet's probe.
      assert.equal(await statusOf(admin.port, '/healthz'), 'HTTP/1.1 200 OK');
      await settle();
      assert.deepEqual(held.filter(isClosed), held.slice(0, 1), 'the holder lost its oldest connection');
      // The probe's connection has gone: the next one takes another of the holder's.
      assert.equal(await statusOf(admin.port, '/readyz'), 'HTTP/1.1 200 OK');
      await settle();
      assert.deepEqual(held.filter(isClosed), held.slice(0, 1), 'the probe closed its connection: there was room');
      held.push(await open(admin.port, '127.0.0.2'));
      assert.equal(await statusOf(admin.port, '/readyz'), 'HTTP/1.1 200 OK');
      await settle();
      assert.deepEqual(held.filter(isClosed), held.slice(0, 2), 'full again: the holder lost its next oldest');
      const line = lines.find((l) => /admin connection closed to make room/.test(String(l.msg)));
      assert.ok(line, 'logged');
      assert.equal(line.peer, '127.0.0.2');
      assert.equal(line.limit, ADMIN_MAX_CONNECTIONS);
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

test('when the admin port is full, the connection closed is of the client holding the most, even when another client holds older ones', async () => {
  await withAdmin({}, async (admin) => {
    const older: Socket[] = [];
    const many: Socket[] = [];
    try {
      for (let i = 0; i < 28; i++) older.push(await open(admin.port, '127.0.0.3'));
      for (let i = 0; i < ADMIN_MAX_CONNECTIONS - 28; i++) many.push(await open(admin.port, '127.0.0.4'));
      await settle();
      assert.equal(await statusOf(admin.port, '/healthz'), 'HTTP/1.1 200 OK');
      await settle();
      assert.equal(older.filter(isClosed).length, 0, 'the client with 28 connections keeps them all');
      assert.deepEqual(many.filter(isClosed), many.slice(0, 1), 'the client with 100 loses its oldest');
    } finally {
      for (const s of [...older, ...many]) s.destroy();
    }
  });
});

test('a newcomer whose own client holds all 128 connections, each with a request in progress, is the one closed: those requests are answered', async () => {
  let release = (): void => undefined;
  const gate = new Promise<void>((r) => (release = r));
  await withAdmin({ debug: { proxies: () => gate.then(() => []), secrets: () => [] } }, async (admin) => {
    const busy: Socket[] = [];
    const answers: Promise<string>[] = [];
    try {
      for (let i = 0; i < ADMIN_MAX_CONNECTIONS; i++) {
        const s = await open(admin.port);
        let text = '';
        s.setEncoding('latin1').on('data', (c: string) => (text += c));
        answers.push(new Promise((r) => s.on('close', () => r(text.split('\r\n')[0] ?? ''))));
        s.write('GET /debug/proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
        busy.push(s);
      }
      await settle();
      assert.equal(await statusOf(admin.port, '/healthz'), 'closed without an answer');
      release();
      assert.deepEqual(new Set(await Promise.all(answers)), new Set(['HTTP/1.1 200 OK']), 'every request in progress was answered');
      assert.equal(await statusOf(admin.port, '/healthz'), 'HTTP/1.1 200 OK');
    } finally {
      release();
      for (const s of busy) s.destroy();
    }
  });
});

test('a client keeping all 128 connections busy (requests waiting on a slow view, pipelined) loses its oldest request in progress to a probe from another client', async () => {
  let release = (): void => undefined;
  const gate = new Promise<void>((r) => (release = r));
  await withAdmin({ debug: { proxies: () => gate.then(() => []), secrets: () => [] } }, async (admin) => {
    const busy: Socket[] = [];
    try {
      for (let i = 0; i < ADMIN_MAX_CONNECTIONS; i++) {
        const s = await open(admin.port, '127.0.0.2');
        s.write('GET /debug/proxies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        busy.push(s);
      }
      await settle();
      assert.equal(await statusOf(admin.port, '/healthz'), 'HTTP/1.1 200 OK');
      await settle();
      assert.deepEqual(busy.filter(isClosed), busy.slice(0, 1), 'the holder lost its oldest connection, request and all');
    } finally {
      release();
      for (const s of busy) s.destroy();
    }
  });
});
