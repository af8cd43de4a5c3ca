// The agent (startAgent) against a scripted server: what it writes after failed writes, stops and
// server-ended streams.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startAgent } from '../../src/client/agent.js';
import { SECRET_TYPE_URL } from '../../src/xds/protos.js';
import { runFetch } from '../../src/cli/fetch.js';
import { tlsCertificateSecret } from '../../src/xds/secrets.js';
import { writtenLines } from '../helpers/hook-log.js';
import { makeCa, type TestCa } from '../helpers/openssl.js';
import { identitySecret, makeSvid, trustSecret } from './svids.js';
import { fetchOnceInto } from './scripted-setup.js';
import { ScriptedSds, waitFor } from './fake-sds.js';
import { BIN } from '../cli/run.js';

/** The agent's first retry of a failed write (5 s by default), shortened so the retry tests run in seconds. */
const FIRST_RETRY_MS = 1500;

describe('agent state against a scripted server', () => {
  let root: string;
  let a: TestCa;
  let b: TestCa;
  let t1: TestCa;
  let t2: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-agent-state-'));
    [a, b, t1, t2] = ['A', 'B', 'T1', 'T2'].map((n) => makeSvid(n)) as [TestCa, TestCa, TestCa, TestCa];
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const identity = identitySecret;
  const trust = trustSecret;

  /** Identity A is written; then the out-dir is made a file, so identity B (version 2) is NACKed. */
  async function writeThenNackedPush(sds: ScriptedSds, agent: { firstWrite: Promise<unknown> }, dir: string): Promise<void> {
    await waitFor(() => sds.streams.length === 1, 'a stream');
    sds.push('1', [identity(a), trust(t1)]);
    await agent.firstWrite;
    rmSync(dir, { recursive: true });
    writeFileSync(dir, '');
    sds.push('2', [identity(b)]);
    await waitFor(() => sds.answerTo('2')?.error_detail != null, 'the NACK of version 2');
  }

  it('an identity written by the retry of a NACKed write is kept when a later push carries only the trust bundle', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'rollback');
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, writeRetryMs: FIRST_RETRY_MS, log: (_l, m) => logs.push(m) });
    try {
      // The folder is briefly a file: identity B cannot be written and is NACKed, then the retry writes it.
      await writeThenNackedPush(sds, agent, dir);
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

  /** Holds each write once it is staged, until release() (the agent's onStaged). */
  const holder = () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let held = false;
    return { onStaged: async () => { held = true; await released; }, release: () => release(), isHeld: () => held };
  };
  const lines = (file: string) => writtenLines(file).length;

  it('a push that arrives while the retry of an older, failed write is under way is written after it: the files end with the newest identity', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'retry-then-push');
    const c = makeSvid('C');
    let hold: ReturnType<typeof holder> | undefined;
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, writeRetryMs: FIRST_RETRY_MS, log: (_l, m) => logs.push(m), onStaged: () => hold?.onStaged() ?? Promise.resolve() });
    try {
      // The folder is briefly a file: identity B cannot be written and is NACKed; its retry is held mid-write.
      await writeThenNackedPush(sds, agent, dir);
      rmSync(dir);
      const h = holder();
      hold = h;
      await waitFor(h.isHeld, 'the retry of version 2 to be under way', 15_000);
      hold = undefined;
      sds.push('3', [identity(c)]);
      // Written at once, version 3 would be undone by the retry of version 2 when it goes on.
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3', 2000).catch(() => undefined);
      h.release();
      await waitFor(() => sds.answerTo('3') !== undefined && logs.some((m) => /wrote .* \(version 2\) on retry/.test(m)), 'version 3 answered and version 2 written on retry');
      assert.equal(sds.answerTo('3')!.error_detail ?? undefined, undefined);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), c.certPem, 'the older identity written last');
      assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), c.keyPem);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });

  it('the retry of an older write that fails again while a newer push waits is not tried again after that push is written', { timeout: 60_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'retry-fails-then-push');
    const c = makeSvid('C');
    let fail: Promise<void> | undefined;
    let failNow!: () => void;
    let failing = false;
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, writeRetryMs: FIRST_RETRY_MS, log: (_l, m) => logs.push(m), onStaged: () => {
      if (!fail) return Promise.resolve();
      failing = true;
      return fail;
    } });
    try {
      await writeThenNackedPush(sds, agent, dir);
      rmSync(dir);
      // The retry of version 2 is held mid-write, and then fails.
      fail = new Promise<void>((_res, rej) => (failNow = () => rej(new Error('held write failed'))));
      await waitFor(() => failing, 'the retry of version 2 to be under way', 15_000);
      fail = undefined;
      sds.push('3', [identity(c)]);
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3', 2000).catch(() => undefined);
      failNow();
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3');
      assert.equal(sds.answerTo('3')!.error_detail ?? undefined, undefined);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), c.certPem);
      // Past the time a second retry of version 2 would have come (twice the first wait after the first failed).
      await new Promise((r) => setTimeout(r, 2 * FIRST_RETRY_MS + 1000));
      assert.ok(!logs.some((m) => /\(version 2\) on retry/.test(m)), logs.join('\n'));
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), c.certPem, 'the older identity written over the newer one');
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });

  it('a push refused while the write of an earlier one waits for its retry does not cancel that retry', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'retry-then-refused');
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, writeRetryMs: FIRST_RETRY_MS });
    try {
      await writeThenNackedPush(sds, agent, dir);
      // A CA certificate as identity: refused, whatever the folder.
      const ca = makeCa('Some CA', { trustDomain: 'x.example' });
      sds.push('3', [identity(ca)]);
      await waitFor(() => sds.answerTo('3')?.error_detail != null, 'the NACK of version 3');
      assert.match(sds.answerTo('3')!.error_detail!.message, /is a CA certificate/);
      rmSync(dir);
      await waitFor(() => existsSync(join(dir, 'cert.pem')) && readFileSync(join(dir, 'cert.pem'), 'utf8') === b.certPem, 'identity B written by the retry', 25_000);
      assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), b.keyPem);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });

  it('a stop while a push is being written lets the write finish and runs its --on-update command (--watch)', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'stop-mid-write');
    const hookLog = join(root, 'stop-mid-write.log');
    const h = holder();
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, onUpdate: `echo ran >> ${hookLog}`, onStaged: h.onStaged });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(t1)]);
      await waitFor(h.isHeld, 'the write to be under way');
      agent.close();
      h.release();
      await agent.done;
    } finally {
      sds.close();
    }
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    assert.equal(lines(hookLog), 1, 'the files changed and the on-update command never ran');
  });

  it('one-shot: a write still under way when the agent is stopped (--timeout) finishes and runs its command', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'timeout-mid-write');
    const hookLog = join(root, 'timeout-mid-write.log');
    const h = holder();
    sds.onStream = () => setImmediate(() => sds.push('1', [identity(a), trust(t1)]));
    const writes: string[][] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, onUpdate: `echo ran >> ${hookLog}`, onStaged: h.onStaged, onWrite: (w) => writes.push(w.changed) });
    try {
      await waitFor(h.isHeld, 'the write to be under way');
      agent.close();
      h.release();
      await agent.done;
    } finally {
      sds.close();
    }
    assert.deepEqual(writes, [['bundle.pem', 'key.pem', 'cert.pem', 'svid.json']]);
    assert.equal(lines(hookLog), 1);
  });

  it('a second SIGTERM while the on-update command holds up the stop ends the process at once by that signal, saying so; the first one alone waits', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'second-signal');
    const pidFile = join(root, 'second-signal.pid');
    const child = spawn(process.execPath, [BIN, 'fetch', '--server', sds.address, '--node', 'default.web', '--out-dir', dir, '--watch', '--on-update', `echo $$ > ${pidFile}; exec sleep 300`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream', 20_000);
      sds.push('1', [identity(a), trust(t1)]);
      await waitFor(() => existsSync(pidFile) && /^\d+\n$/.test(readFileSync(pidFile, 'utf8')), 'the on-update command to run');
      child.kill('SIGTERM');
      await waitFor(() => /waiting up to 10 s for the on-update command/.test(stderr), 'the first stop to wait');
      assert.equal(child.exitCode, null, 'the first signal waits for the command under way');
      child.kill('SIGTERM');
      const end = await exited;
      assert.deepEqual(end, { code: null, signal: 'SIGTERM' }, stderr);
      assert.match(stderr, /SIGTERM again: exiting without waiting for the write under way/);
    } finally {
      child.kill('SIGKILL');
      await exited;
      try {
        process.kill(-Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        // already gone
      }
      sds.close();
    }
  });

  it('a FIFO at cert.pem and key.pem linked to /dev/zero do not hold the agent: they are replaced', { timeout: 20_000 }, async () => {
    const sds = await new ScriptedSds().start();
    sds.onStream = () => setImmediate(() => sds.push('1', [identity(a), trust(t1)]));
    const dir = join(root, 'fifo');
    mkdirSync(dir);
    execFileSync('mkfifo', [join(dir, 'cert.pem')]);
    symlinkSync('/dev/zero', join(dir, 'key.pem'));
    await fetchOnceInto(sds, dir);
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), a.keyPem);
  });

  it('a server that answers every ACK or NACK by sending the same thing again does not make --watch print a line per round', { timeout: 60_000 }, async () => {
    const rounds = 200;
    for (const bad of [false, true]) {
      const sds = await new ScriptedSds().start();
      let sent = 0;
      const resources = bad ? [tlsCertificateSecret('default', a.certPem, b.keyPem, 'mixed'), trust(a)] : [identity(a), trust(a)];
      sds.onStream = (call) => {
        const send = () => call.write({ version_info: '1', nonce: `n${++sent}`, type_url: SECRET_TYPE_URL, resources: resources.map((r) => r.any) });
        call.on('data', () => {
          if (sent < rounds) send();
        });
      };
      const stop = new AbortController();
      const stdout: string[] = [];
      const stderr: string[] = [];
      const run = runFetch({ server: sds.address, node: 'default.web', name: [], outDir: join(root, `loop-${bad}`), watch: true }, { stdout: (l) => stdout.push(l), stderr: (l) => stderr.push(l), signal: stop.signal });
      try {
        await waitFor(() => (sds.streams[0]?.requests.length ?? 0) > rounds, `the answer to ${rounds} responses`, 40_000);
      } finally {
        stop.abort();
        assert.equal(await run, 0);
        sds.close();
      }
      if (bad) {
        assert.equal(stdout.length, 0);
        assert.match(stderr[0] ?? '', /version 1 not written \(NACKed by this agent\): default: private_key does not match/);
        assert.equal(stderr.length, 1, stderr.join(''));
      } else {
        assert.match(stdout[0] ?? '', /^wrote bundle\.pem, key\.pem, cert\.pem, svid\.json in /);
        assert.equal(stdout.length, 1, stdout.join(''));
        assert.equal(stderr.length, 0, stderr.join(''));
      }
    }
  });

  it('a server that sends the same thing again on every NACK while the out-dir cannot be written does not make --watch log the failure per round', { timeout: 60_000 }, async () => {
    const rounds = 200;
    const sds = await new ScriptedSds().start();
    let sent = 0;
    sds.onStream = (call) => {
      const send = () => call.write({ version_info: '1', nonce: `n${++sent}`, type_url: SECRET_TYPE_URL, resources: [identity(a), trust(a)].map((r) => r.any) });
      call.on('data', () => {
        if (sent < rounds) send();
      });
    };
    const dir = join(root, 'loop-blocked');
    writeFileSync(dir, ''); // a file where the folder should be
    const stop = new AbortController();
    const stderr: string[] = [];
    const run = runFetch({ server: sds.address, node: 'default.web', name: [], outDir: dir, watch: true }, { stdout: () => undefined, stderr: (l) => stderr.push(l), signal: stop.signal });
    try {
      await waitFor(() => (sds.streams[0]?.requests.length ?? 0) > rounds, `the answer to ${rounds} responses`, 40_000);
    } finally {
      stop.abort();
      assert.equal(await run, 0);
      sds.close();
      rmSync(dir, { force: true });
    }
    assert.match(stderr[0] ?? '', /cannot write .*loop-blocked \(version 1, NACKed by this agent\): EEXIST/);
    assert.ok(stderr.length <= 2, `${stderr.length} lines: ${stderr.slice(0, 5).join('')}`);
  });
});
