// An on-update command ended by its timeout (or a stop) takes with it what it started, also a
// process that ignores SIGTERM and outlives the shell.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UpdateHook } from '../../src/client/hook.js';
import { waitFor } from './fake-sds.js';

const runs = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('a timed-out command\'s child that ignores SIGTERM is killed once the grace has passed, though the shell itself ended', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-hook-kill-'));
  const pidFile = join(dir, 'pid');
  let stubborn = 0;
  try {
    // The subshell ignores SIGTERM (and so does the sleep it becomes); the outer sleep does not.
    const command = `(trap '' TERM; exec sleep 60) & echo $! > ${pidFile}; sleep 60`;
    const hook = new UpdateHook({ command, timeoutMs: 500, log: () => undefined });
    const failure = await hook.trigger();
    assert.equal(failure, 'timed out after 0.5 s (signal SIGTERM)');
    stubborn = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(stubborn > 0);
    await waitFor(() => !runs(stubborn), 'the process that ignored SIGTERM to be killed', 15_000);
  } finally {
    if (stubborn > 0 && runs(stubborn)) process.kill(stubborn, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a command ended by its timeout is reported as timed out, naming the limit, not just by the signal that ended it; one that ends in time is not', { timeout: 30_000 }, async () => {
  const logs: string[] = [];
  const hook = new UpdateHook({ command: 'sleep 30', timeoutMs: 300, log: (_l, m) => logs.push(m) });
  const failure = await hook.trigger();
  assert.match(failure ?? '', /^timed out after 0\.3 s \(signal SIGTERM\)$/);
  assert.ok(logs.some((l) => /on-update command failed \(timed out after 0\.3 s \(signal SIGTERM\)\)/.test(l)), logs.join('\n'));
  const quick = new UpdateHook({ command: 'exit 3', timeoutMs: 10_000, log: () => undefined });
  assert.equal(await quick.trigger(), 'exit code 3');
});
