// Churn in the suite: 1,000 stream and 200 connection open/close cycles against a real server
// process; after GC its heap used, its active handles and timers, and the stream gauges return to
// their baseline (tolerances below).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { ClientHttp2Session } from 'node:http2';
import { BIN } from '../cli/run.js';
import { freePort } from '../e2e/procs.js';
import { makeWorld } from '../conformance/world.js';
import { PATHS, SECRET_TYPE, deltaRequest, discoveryRequest, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

/** Heap used may grow this much (V8 keeps some code and caches: ~0.7 MB measured); a leak of 2 KB per cycle fails. */
const HEAP_TOLERANCE_BYTES = 2 * 1024 * 1024;
/** Active handles/timers of each type may differ by this many (an admin keep-alive socket, a pending timer). */
const RESOURCE_TOLERANCE = 2;

interface Measure {
  heapUsed: number;
  resources: Record<string, number>;
}

function measure(child: ChildProcess): Promise<Measure> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as Measure));
    child.send('measure');
  });
}

async function streamsGauge(admin: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('mesh_sds_streams{'))
    .reduce((n, l) => n + Number(l.split(' ')[1]), 0);
}

/** One stream: open, first response, client half-close, server ends it. */
async function cycle(session: ClientHttp2Session, i: number): Promise<void> {
  const delta = i % 3 === 1;
  const path = delta ? PATHS.DeltaSecrets : i % 3 === 2 ? PATHS.StreamAggregatedResources : PATHS.StreamSecrets;
  const req = (delta ? deltaRequest : discoveryRequest)({ node: i % 2 ? 'default.web' : 'default.pay', names: ['default', 'ROOTCA'], typeUrl: SECRET_TYPE });
  const call = rawCall(session, path, { body: [grpcFrame(req)] });
  await call.waitForMessages(1, 10_000);
  call.stream.end();
  const end = await call.ended;
  assert.equal(end.code, 0, JSON.stringify(end));
}

async function cycles(n: number, run: (i: number) => Promise<void>, concurrency = 20): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await run(next++);
  }));
}

test('1,000 stream and 200 connection open/close cycles leave heap, handles, timers and stream gauges at their baseline', { timeout: 120_000 }, async (t) => {
  const world = makeWorld();
  const [port, adminPort] = [await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', join(import.meta.dirname, 'probe.mjs'), BIN, 'serve', '--auth', 'none', '--listen', address, '--admin', `127.0.0.1:${adminPort}`, '--resources', world.resourcesDir, '--state-dir', world.stateDir, '--log-level', 'warn', '--drain', '0s'],
    { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.resume();
  let session: ClientHttp2Session | undefined;
  try {
    const deadline = Date.now() + 30_000;
    while ((await fetch(`${admin}/readyz`).then((r) => r.status, () => 0)) !== 200) {
      assert.ok(Date.now() < deadline, `server not ready: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    session = rawConnect(address);
    const shared = session;
    // Warm-up: JIT, the SVIDs of both proxies, encoded secrets, pools.
    await cycles(200, (i) => cycle(shared, i));
    for (let i = 0; i < 20; i++) {
      const s = rawConnect(address);
      await cycle(s, i);
      s.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    const before = await measure(child);
    assert.equal(await streamsGauge(admin), 0);

    const t0 = Date.now();
    await cycles(1000, (i) => cycle(shared, i));
    await cycles(200, async (i) => {
      const s = rawConnect(address);
      try {
        await cycle(s, i);
      } finally {
        // Alternate a graceful close and a dropped connection.
        if (i % 2) s.close();
        else s.destroy();
      }
    }, 10);
    const took = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
    const after = await measure(child);
    const gauge = await streamsGauge(admin);
    t.diagnostic(`1,200 cycles in ${took} ms; heap used ${before.heapUsed} -> ${after.heapUsed} (${after.heapUsed - before.heapUsed >= 0 ? '+' : ''}${after.heapUsed - before.heapUsed} bytes)`);
    t.diagnostic(`resources before ${JSON.stringify(before.resources)} after ${JSON.stringify(after.resources)}`);
    assert.equal(gauge, 0, 'mesh_sds_streams back to 0');
    assert.ok(after.heapUsed - before.heapUsed < HEAP_TOLERANCE_BYTES, `heap grew by ${after.heapUsed - before.heapUsed} bytes`);
    for (const type of new Set([...Object.keys(before.resources), ...Object.keys(after.resources)])) {
      const d = (after.resources[type] ?? 0) - (before.resources[type] ?? 0);
      assert.ok(Math.abs(d) <= RESOURCE_TOLERANCE, `${type}: ${before.resources[type] ?? 0} -> ${after.resources[type] ?? 0}`);
    }
  } finally {
    session?.destroy();
    child.kill('SIGKILL');
    world.cleanup();
  }
});
