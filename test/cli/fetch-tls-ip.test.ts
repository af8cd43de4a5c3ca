// `fetch --ca-file` to a server given by IP address prints no Node notice about the TLS server name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';
import { makeCa } from '../helpers/openssl.js';

test('fetch over TLS to an IP address says why it failed without a DEP0123 notice about the server name', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-fetch-ip-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, makeCa('server-ca').certPem);
  // Accepts the connection and never answers the ClientHello: the TLS handshake (where Node prints
  // the notice) starts, and fetch gives up at its timeout.
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  const run = await meshSds(['fetch', '--server', `127.0.0.1:${port}`, '--node', 'default.backend-1', '--ca-file', caFile, '--timeout', '2s'], { timeoutMs: 20_000 });
  assert.equal(sockets.size > 0, true, 'fetch never connected');
  // -1: killed at 20 s, the socket left in its TLS handshake kept the process alive after it had given up.
  assert.equal(run.code, 1, run.stderr);
  assert.doesNotMatch(run.stderr, /DEP0123|DeprecationWarning/);
  assert.match(run.stderr, /\S/, 'fetch must still say why it failed');
});
