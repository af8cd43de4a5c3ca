// One agent per out-dir: a second is refused naming the pid of the first; a lock left by an agent
// that no longer runs is taken over.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { LOCK_FILE } from '../../src/client/lock.js';
import { processStartTime } from '../../src/api/process-life.js';
import type { TestCa } from '../helpers/openssl.js';
import { meshSds } from '../cli/run.js';
import { closeScripted, identityAndTrust, openScripted, type ScriptedSetup } from './scripted-setup.js';
import { ScriptedSds } from './fake-sds.js';

describe('one agent per out-dir', () => {
  let root: string;
  let a: TestCa;
  let sds: ScriptedSds;
  let setup: ScriptedSetup | undefined;
  before(async () => {
    setup = await openScripted('mesh-sds-lock-', ({ a, sds }) => setImmediate(() => sds.push('1', identityAndTrust(a))));
    ({ root, a, sds } = setup);
  });
  after(() => closeScripted(setup));

  it('a second agent on the same out-dir is refused naming the pid holding it; the lock goes with the first', { timeout: 30_000 }, async () => {
    const dir = join(root, 'shared');
    const first = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true });
    try {
      await first.firstWrite;
      assert.equal(readFileSync(join(dir, LOCK_FILE), 'utf8'), `${process.pid} ${processStartTime('self')}\n`);
      // Another process: the lock is per process (the server here answers only while we do not block).
      const second = await meshSds(['fetch', '--server', sds.address, '--node', 'default.web', '--out-dir', dir, '--timeout', '10s']);
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, new RegExp(`another agent \\(pid ${process.pid}\\) is keeping .*shared current: refusing to run a second one`));
    } finally {
      first.close();
      await first.done.catch(() => undefined);
    }
    assert.equal(existsSync(join(dir, LOCK_FILE)), false, 'released on stop');
  });

  it('a lock whose pid no longer runs is taken over', { timeout: 30_000 }, async () => {
    const dir = join(root, 'stale');
    mkdirSync(dir);
    const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    writeFileSync(join(dir, LOCK_FILE), gone.stdout);
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir });
    await agent.done;
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
  });

  it('a lock whose pid now names another process (a reused pid) is taken over', { timeout: 30_000 }, async () => {
    const dir = join(root, 'reused');
    mkdirSync(dir);
    // A live process whose start time is not the one the lock records: the pid was reused.
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      const start = processStartTime(other.pid!);
      assert.ok(start !== undefined, 'reads /proc');
      writeFileSync(join(dir, LOCK_FILE), `${other.pid} ${Number(start) - 100}\n`);
      const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir });
      await agent.done;
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    } finally {
      other.kill();
    }
  });

  it('a lock of a live agent that recorded its start time still refuses a second one', { timeout: 30_000 }, async () => {
    const dir = join(root, 'live');
    mkdirSync(dir);
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      writeFileSync(join(dir, LOCK_FILE), `${other.pid} ${processStartTime(other.pid!)}\n`);
      const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir });
      await assert.rejects(agent.done, new RegExp(`another agent \\(pid ${other.pid}\\)`));
    } finally {
      other.kill();
    }
  });

  it('a lock of our own pid from a previous life (another start time) is taken over', { timeout: 30_000 }, async () => {
    const dir = join(root, 'previous-life');
    mkdirSync(dir);
    writeFileSync(join(dir, LOCK_FILE), `${process.pid} ${Number(processStartTime('self')) - 100}\n`);
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir });
    await agent.done;
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    assert.equal(existsSync(join(dir, LOCK_FILE)), false, 'released when done');
  });

  it('a FIFO at the lock path (planted in a shared out-dir) does not hold the agent: it is taken over', { timeout: 40_000 }, async () => {
    const dir = join(root, 'fifo-lock');
    mkdirSync(dir);
    execFileSync('mkfifo', [join(dir, LOCK_FILE)]);
    // Another process: reading a FIFO blocks the thread, and with it this test's own server.
    const r = await meshSds(['fetch', '--server', sds.address, '--node', 'default.web', '--out-dir', dir, '--timeout', '10s'], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    assert.equal(existsSync(join(dir, LOCK_FILE)), false, 'released when done');
  });

  it('two agents taking the lock at the same moment never both hold it (a lock being written is not taken for a half-written one)', { timeout: 40_000 }, async () => {
    const dir = join(root, 'contended');
    mkdirSync(dir);
    const results = await contend(dir);
    for (const r of results) assert.ok(r.held > 0, JSON.stringify(results));
    assert.deepEqual(results.map((r) => r.notOurs), [0, 0], `held while the other one held it too: ${JSON.stringify(results)}`);
  });

  it('agents taking over a lock left by a killed agent at the same moment never both hold it', { timeout: 40_000 }, async () => {
    const dir = join(root, 'contended-takeover');
    mkdirSync(dir);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const results = await contend(dir, [dead], 3);
    // Which one gets it is no matter (one may keep taking it over from itself).
    assert.ok(results.some((r) => r.held > 0), JSON.stringify(results));
    assert.deepEqual(results.map((r) => r.notOurs), [0, 0, 0], `held while another one held it too: ${JSON.stringify(results)}`);
  });
});

/** `n` lock-contender.ts processes on `dir` for 3 s, started together. */
function contend(dir: string, extra: string[] = [], n = 2): Promise<{ held: number; notOurs: number }[]> {
  const until = String(Date.now() + 3000);
  const contender = join(import.meta.dirname, 'lock-contender.ts');
  const run = () =>
    new Promise<{ held: number; notOurs: number }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', contender, dir, until, ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { held: number; notOurs: number }) : reject(new Error(`contender exited ${code}`))));
    });
  return Promise.all(Array.from({ length: n }, run));
}
