// What fetch prints from others — a server's status details, the --on-update command's output —
// reaches the terminal with its control characters escaped, so it cannot clear the screen or set the title.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { runFetch } from '../../src/cli/fetch.js';
import { loadProtos } from '../../src/xds/protos.js';
import { NODE, startTestServer, type TestServer } from './helpers.js';

/** ESC (OSC title, clear screen), BEL, DEL, C1 CSI: none may reach stderr raw. */
const HOSTILE = '\x1b]0;owned\x07\x1b[2J\x7f\x9b2J';
// eslint-disable-next-line no-control-regex -- finding them is the point
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/; // a tab or a line break may stay

describe('fetch prints untrusted text with control characters escaped', () => {
  let srv: TestServer;
  let hostile: grpc.Server;
  let hostileAddress = '';
  before(async () => {
    srv = await startTestServer('none');
    hostile = new grpc.Server();
    hostile.addService(loadProtos().SecretDiscoveryService, {
      StreamSecrets: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        call.on('error', () => undefined);
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `bad name ${HOSTILE}` });
      },
      DeltaSecrets: () => undefined,
      FetchSecrets: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED }),
    });
    const port = await new Promise<number>((res, rej) => hostile.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    hostileAddress = `127.0.0.1:${port}`;
  });
  after(async () => {
    hostile?.forceShutdown();
    await srv?.close();
  });

  it('a status detail from the server is printed with ESC, BEL, DEL and C1 escaped', async () => {
    let stderr = '';
    const code = await runFetch({ server: hostileAddress, node: NODE, name: [], timeoutMs: 5000 }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /bad name \\u001b\]0;owned\\u0007\\u001b\[2J\\u007f\\u009b2J/);
    assert.doesNotMatch(stderr, RAW_CONTROL);
  });

  it('the --on-update command\'s output is printed with its control characters escaped, its line breaks kept', async () => {
    const dir = join(mkdtempSync(join(srv.root, 'out-')), 'hook');
    let stderr = '';
    const hook = `printf 'first\\033]0;owned\\007\\nsecond\\033[2J\\n'`;
    const code = await runFetch({ server: srv.running.address, node: NODE, name: [], outDir: dir, onUpdate: hook, timeoutMs: 10_000 }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /output: first\\u001b\]0;owned\\u0007\nsecond\\u001b\[2J/);
    assert.doesNotMatch(stderr, RAW_CONTROL);
  });
});
