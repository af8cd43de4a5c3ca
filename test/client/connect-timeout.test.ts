// A server that accepts TCP and never answers the TLS handshake: the stream gives that connection
// up after connectTimeoutMs and tries again, instead of waiting for ever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { openSecretStream, type SdsError } from '../../src/client/sds-client.js';
import { makeCa } from '../helpers/openssl.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

for (const shape of ['TLS handshake', 'plaintext HTTP/2 settings'] as const) test(`a connection stuck before its ${shape} is answered is given up after the connect timeout, closed, and tried again`, { timeout: 30_000 }, async (t) => {
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
      ...(shape === 'TLS handshake' ? { tls: { ca: makeCa('server-ca').certPem } } : {}),
      connectTimeoutMs: 500,
      backoff: { initialMs: 20, maxMs: 40 },
      retryEveryStatus: true,
      onError: (e) => errors.push(e),
    },
    () => undefined,
  );
  try {
    await waitFor(() => sockets.length >= 4, 'new connections after each got no TLS answer', 15_000);
    assert.match(errors[0]?.message ?? '', /UNAVAILABLE: .*(no connection to 127\.0\.0\.1:\d+ within 0\.5 s|no answer within 0\.5 s of connecting)/);
    // Each given-up connection is closed, not left open to the silent server (one per retry, for ever).
    await waitFor(() => sockets.length - closed.size <= 1, 'every earlier connection closed', 5_000);
  } finally {
    stream.close();
    await stream.done;
  }
});

test('a connection that became ready is kept past the connect timeout: the stream stays open and gets later pushes', { timeout: 30_000 }, async (t) => {
  const sds = await new ScriptedSds().start();
  t.after(() => sds.close());
  const errors: SdsError[] = [];
  const versions: string[] = [];
  const stream = openSecretStream(
    { server: sds.address, node: 'default.web', names: ['default'], connectTimeoutMs: 300, retryEveryStatus: true, onError: (e) => errors.push(e) },
    (_s, version) => void versions.push(version),
  );
  try {
    await waitFor(() => sds.streams.length === 1, 'the stream');
    await new Promise((r) => setTimeout(r, 1500));
    sds.push('v1', []);
    await waitFor(() => versions.includes('v1'), 'the push after the connect timeout');
    assert.equal(sds.streams.length, 1, 'one stream, never reconnected');
    assert.deepEqual(errors.map((e) => e.message), []);
  } finally {
    stream.close();
    await stream.done;
  }
});

test('a closed client\'s connect timer never touches another live client\'s connections to the same server (plaintext channels could share a connection)', { timeout: 30_000 }, async (t) => {
  const first = await new ScriptedSds().start();
  const port = Number(first.address.split(':')[1]);
  let second: ScriptedSds | undefined;
  t.after(() => {
    first.close();
    second?.close();
  });
  const open = (errors: SdsError[]) =>
    openSecretStream({ server: first.address, node: 'default.web', names: ['default'], connectTimeoutMs: 500, backoff: { initialMs: 20, maxMs: 40 }, retryEveryStatus: true, onError: (e) => errors.push(e) }, () => undefined);
  const aErrors: SdsError[] = [];
  const bErrors: SdsError[] = [];
  const a = open(aErrors);
  const b = open(bErrors);
  try {
    await waitFor(() => first.streams.length === 2, 'both streams');
    a.close();
    await a.done;
    // The server restarts: B reconnects, on a connection made after A was closed.
    first.close();
    second = await new ScriptedSds().start(port);
    await waitFor(() => second!.streams.length >= 1, 'B back on the restarted server');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(second.streams.length, 1, `B reconnected once and kept its stream: ${bErrors.map((e) => e.message).join('; ')}`);
    assert.deepEqual(bErrors.filter((e) => /no answer within/.test(e.message)), []);
  } finally {
    b.close();
    await b.done;
  }
});
