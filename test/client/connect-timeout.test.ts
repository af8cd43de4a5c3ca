// A server that accepts TCP and never answers the TLS handshake: the stream gives that connection
// up after connectTimeoutMs and tries again, instead of waiting for ever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { openSecretStream, type SdsError } from '../../src/client/sds-client.js';
import { makeCa } from '../helpers/openssl.js';
import { waitFor } from './fake-sds.js';

test('a connection stuck in its TLS handshake is given up after the connect timeout and tried again', { timeout: 30_000 }, async (t) => {
  const sockets: Socket[] = [];
  const closed = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('close', () => closed.add(s));
    s.resume(); // reads, so the peer's close is seen
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const errors: SdsError[] = [];
  const stream = openSecretStream(
    {
      server: `127.0.0.1:${port}`,
      node: 'default.web',
      names: ['default'],
      tls: { ca: makeCa('server-ca').certPem },
      connectTimeoutMs: 500,
      backoff: { initialMs: 20, maxMs: 40 },
      retryEveryStatus: true,
      onError: (e) => errors.push(e),
    },
    () => undefined,
  );
  try {
    await waitFor(() => sockets.length >= 4, 'new connections after each got no TLS answer', 15_000);
    assert.match(errors[0]?.message ?? '', /UNAVAILABLE: .*(no connection to 127\.0\.0\.1:\d+ within 0\.5 s|TLS handshake not answered within 0\.5 s)/);
    // Each given-up connection is closed, not left open to the silent server (one per retry, for ever).
    await waitFor(() => sockets.length - closed.size <= 1, 'every earlier connection closed', 5_000);
  } finally {
    stream.close();
    await stream.done;
  }
});
