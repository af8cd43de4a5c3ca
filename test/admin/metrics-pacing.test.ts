// /metrics answers every client that reaches the admin port, and its rendering walks every stream
// and proxy: a burst of scrapes must not take the main thread that serves the proxies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Gauge } from 'prom-client';
import { createMetrics, type Metrics } from '../../src/server/metrics.js';
import { createLogger } from '../../src/server/logger.js';
import { startAdminServer } from '../../src/server/admin.js';
import { Readiness } from '../../src/server/readiness.js';

const silent = createLogger('silent', { destination: new Writable({ write: (_c, _e, cb) => cb() }) });

/**
 * Opens `n` keep-alive connections to the admin server first, so a burst on them reaches it at
 * once: made afresh under a loaded CPU, 40 connections trickled in over several render windows
 * (4 renders in a CI run beside other test processes).
 */
async function warmConnections(url: string, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, () => fetch(`${url}/healthz`).then((r) => r.arrayBuffer())));
}

test('concurrent /metrics requests share renders (40 requests at once: a few renders, not 40), and every answer is rendered after its request arrived', async () => {
  const base = createMetrics();
  let renders = 0;
  const gauge = new Gauge({ name: 'test_value', help: 'a value the test sets', registers: [base.registry] });
  const metrics: Metrics = {
    ...base,
    render: async () => {
      renders++;
      // A fleet of 10,000 proxies takes 15–20 ms here.
      const until = Date.now() + 20;
      while (Date.now() < until);
      return base.render();
    },
  };
  const admin = await startAdminServer({ listen: '127.0.0.1:0', metrics, readiness: () => new Readiness().evaluate(), debug: { proxies: () => [], secrets: () => [] }, logger: silent });
  try {
    const value = async () => /^test_value (\d+)$/m.exec(await (await fetch(`${admin.url}/metrics`)).text())?.[1];
    await warmConnections(admin.url, 40);
    const answers = await Promise.all(Array.from({ length: 40 }, () => fetch(`${admin.url}/metrics`).then((r) => r.status)));
    assert.deepEqual(new Set(answers), new Set([200]));
    // The first request starts a render; those that arrive meanwhile share the next (2 on a quiet
    // machine). Not shared, each would have its own: 40.
    assert.ok(renders <= 4, `${renders} renders for 40 concurrent requests`);
    // Sequential scrapes are never answered from an earlier render.
    for (let i = 1; i <= 5; i++) {
      gauge.set(i);
      assert.equal(await value(), String(i));
    }
  } finally {
    await admin.close();
  }
});

test('concurrent /debug/* requests share renders too (a /debug/proxies of 10,000 proxies takes 450 ms of the main thread): 20 at once, a few calls of the source, not 20', async () => {
  let calls = 0;
  const admin = await startAdminServer({
    listen: '127.0.0.1:0',
    metrics: createMetrics(),
    readiness: () => new Readiness().evaluate(),
    debug: {
      proxies: () => {
        calls++;
        const until = Date.now() + 20;
        while (Date.now() < until);
        return [{ proxy: 'default.web', call: calls }];
      },
      secrets: () => [],
    },
    logger: silent,
  });
  try {
    await warmConnections(admin.url, 20);
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${admin.url}/debug/proxies`).then((r) => r.status)));
    assert.deepEqual(new Set(answers), new Set([200]));
    assert.ok(calls <= 4, `${calls} calls for 20 concurrent requests`);
    // A later request is answered from a later call.
    const before = calls;
    const body = (await (await fetch(`${admin.url}/debug/proxies`)).json()) as { call: number }[];
    assert.equal(body[0]!.call, before + 1);
  } finally {
    await admin.close();
  }
});
