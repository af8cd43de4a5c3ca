// The agent (startAgent) against a scripted server: what it writes after failed writes, stops and
// server-ended streams.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startAgent } from '../../src/client/agent.js';
import { runFetch } from '../../src/cli/fetch.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import { makeCa, type TestCa } from '../helpers/openssl.js';
import { ScriptedSds, waitFor } from './fake-sds.js';
import { BIN } from '../cli/run.js';

describe('agent state against a scripted server', () => {
  let root: string;
  let a: TestCa;
  let b: TestCa;
  let t1: TestCa;
  let t2: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-agent-state-'));
    [a, b, t1, t2] = ['A', 'B', 'T1', 'T2'].map((n) => makeCa(n, { trustDomain: `${n.toLowerCase()}.example` })) as [TestCa, TestCa, TestCa, TestCa];
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const identity = (ca: TestCa) => tlsCertificateSecret('default', ca.certPem, ca.keyPem, `serial-${ca.certPem.length}`);
  const trust = (ca: TestCa) => spiffeValidatorSecret('ALL', [{ trustDomain: 'x.example', pem: ca.certPem }]);

  it('an identity written by the retry of a NACKed write is kept when a later push carries only the trust bundle', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'rollback');
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, log: (_l, m) => logs.push(m) });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(t1)]);
      await agent.firstWrite;
      // The folder is briefly a file: identity B cannot be written and is NACKed, then the retry writes it.
      rmSync(dir, { recursive: true });
      writeFileSync(dir, '');
      sds.push('2', [identity(b)]);
      await waitFor(() => sds.answerTo('2')?.error_detail != null, 'the NACK of version 2');
      rmSync(dir);
      await waitFor(() => existsSync(join(dir, 'cert.pem')) && readFileSync(join(dir, 'cert.pem'), 'utf8') === b.certPem, 'identity B written by the retry', 15_000);
      sds.push('3', [trust(t2)]);
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3');
      assert.equal(readFileSync(join(dir, 'bundle.pem'), 'utf8'), t2.certPem);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), b.certPem, 'cert.pem went back to identity A');
      assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), b.keyPem);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });

  it('--watch keeps going after UNAUTHENTICATED and INVALID_ARGUMENT, reading --token-file again on each reconnect', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'token-refresh');
    const tokenFile = join(root, 'token');
    writeFileSync(tokenFile, 'tok-1\n');
    const ac = new AbortController();
    let stderr = '';
    const running = runFetch({ server: sds.address, node: 'default.web', name: [], outDir: dir, watch: true, tokenFile }, { stdout: () => undefined, stderr: (s) => (stderr += s), signal: ac.signal, env: {} });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(t1)]);
      await waitFor(() => sds.answerTo('1') !== undefined, 'the ACK of version 1');
      // The token expires; its file was refreshed in the meantime.
      writeFileSync(tokenFile, 'tok-2\n');
      sds.streams[0]!.call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'token expired' });
      await waitFor(() => sds.streams.length === 2, 'a reconnect after UNAUTHENTICATED');
      assert.deepEqual(sds.streams[1]!.metadata.get('authorization'), ['Bearer tok-2']);
      sds.streams[1]!.call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'refused' });
      await waitFor(() => sds.streams.length === 3, 'a reconnect after INVALID_ARGUMENT');
      assert.match(stderr, /UNAUTHENTICATED: token expired; reconnecting in/);
      assert.match(stderr, /INVALID_ARGUMENT: refused; reconnecting in/);
    } finally {
      ac.abort();
      assert.equal(await running, 0, stderr);
      sds.close();
    }
    assert.doesNotMatch(stderr, /tok-[12]/);
  });

  /**
   * A folder whose cert.pem is a FIFO: the agent's write blocks reading it (is it current?) until
   * release() opens it for writing, which holds a write in progress for as long as a test wants.
   * The FIFO is then replaced by a regular file (an old cert.pem), so later reads do not block.
   */
  const blockedFolder = (name: string) => {
    const dir = join(root, name);
    const cert = join(dir, 'cert.pem');
    mkdirSync(dir);
    execFileSync('mkfifo', [cert]);
    const release = () => {
      const fd = openSync(cert, 'w'); // the agent's read is waiting: this returns at once
      writeFileSync(`${cert}.old`, 'old cert.pem\n');
      renameSync(`${cert}.old`, cert);
      closeSync(fd);
    };
    return { dir, release };
  };
  const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').length : 0);

  it('a stop while a push is being written lets the write finish and runs its --on-update command (--watch)', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const { dir, release } = blockedFolder('stop-mid-write');
    const hookLog = join(root, 'stop-mid-write.log');
    const ac = new AbortController();
    let stderr = '';
    const running = runFetch({ server: sds.address, node: 'default.web', name: [], outDir: dir, watch: true, onUpdate: `echo ran >> ${hookLog}` }, { stdout: () => undefined, stderr: (s) => (stderr += s), signal: ac.signal });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(t1)]);
      await new Promise((r) => setTimeout(r, 500)); // the write is now waiting on cert.pem
      ac.abort();
      await new Promise((r) => setTimeout(r, 200));
      release();
      assert.equal(await running, 0, stderr);
    } finally {
      ac.abort();
      sds.close();
    }
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    assert.equal(lines(hookLog), 1, 'the files changed and the on-update command never ran');
  });

  it('one-shot: a write still under way at --timeout finishes, runs its command and exits 0', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const { dir, release } = blockedFolder('timeout-mid-write');
    const hookLog = join(root, 'timeout-mid-write.log');
    let stderr = '';
    let stdout = '';
    sds.onStream = () => setImmediate(() => sds.push('1', [identity(a), trust(t1)]));
    const running = runFetch({ server: sds.address, node: 'default.web', name: [], outDir: dir, timeoutMs: 1000, onUpdate: `echo ran >> ${hookLog}` }, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
    try {
      await new Promise((r) => setTimeout(r, 1500)); // past the timeout, the write still waiting on cert.pem
      release();
      assert.equal(await running, 0, stderr);
    } finally {
      sds.close();
    }
    assert.match(stdout, /wrote bundle\.pem, key\.pem, cert\.pem, svid\.json/);
    assert.doesNotMatch(stderr, /no complete write/);
    assert.equal(lines(hookLog), 1);
  });
  it('a second SIGTERM while a write is held up ends the process at once by that signal, saying so; the first one alone waits for the write', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const { dir } = blockedFolder('second-signal');
    const child = spawn(process.execPath, [BIN, 'fetch', '--server', sds.address, '--node', 'default.web', '--out-dir', dir, '--watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream', 20_000);
      sds.push('1', [identity(a), trust(t1)]);
      await new Promise((r) => setTimeout(r, 500)); // the write is now waiting on cert.pem
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(child.exitCode, null, 'the first signal waits for the write under way');
      const started = Date.now();
      child.kill('SIGTERM');
      const end = await exited;
      assert.deepEqual(end, { code: null, signal: 'SIGTERM' }, stderr);
      assert.ok(Date.now() - started < 5000, 'exited at once');
      assert.match(stderr, /SIGTERM again: exiting without waiting for the write under way/);
    } finally {
      child.kill('SIGKILL');
      await exited;
      rmSync(join(dir, 'cert.pem'), { force: true }); // the FIFO: opening it now, with no reader, would wait for ever
      sds.close();
    }
  });
});
