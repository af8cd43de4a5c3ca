// capConnectionsFairly over TLS: an https request's socket is not the TCP socket seen arriving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { capConnectionsFairly, type RoomMade } from '../../src/api/fair-connections.js';
import { makeCa } from '../helpers/openssl.js';

// The server's certificate is a CA's (no leaf needed to count connections): not verified here.
test('https: a connection with a request in progress is never the one closed; with all of them busy the newcomer is', async () => {
  const { certPem, keyPem } = makeCa('fair-tls');
  let release = (): void => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const server = createServer({ cert: certPem, key: keyPem }, (_req, res) => void gate.then(() => res.end('done')));
  const made: RoomMade[] = [];
  capConnectionsFairly(server, 3, (e) => made.push(e));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const sockets: TLSSocket[] = [];
  const answers: Promise<string>[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const s = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      await new Promise((r, j) => s.once('secureConnect', r).once('error', j));
      let text = '';
      s.setEncoding('utf8').on('data', (c: string) => (text += c));
      answers.push(new Promise((r) => s.on('close', () => r(text.split('\r\n')[0] ?? ''))));
      s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      sockets.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
    const extra = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    const refused = await new Promise<boolean>((resolve) => {
      extra.once('secureConnect', () => resolve(false));
      extra.once('error', () => resolve(true));
      extra.once('close', () => resolve(true));
    });
    extra.destroy();
    assert.ok(refused, 'the newcomer was closed');
    assert.deepEqual(made, [{ peer: '127.0.0.1', peerConnections: 4, newcomer: true }]);
    release();
    assert.deepEqual(await Promise.all(answers), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'], 'every request in progress was answered');
  } finally {
    release();
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
