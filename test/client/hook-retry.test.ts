// The --on-update command is owed until it succeeds: retried while watching, given the stop grace,
// and run again by a later agent (one-shot too) when the files are already current.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HookFailed, startAgent } from '../../src/client/agent.js';
import { HOOK_STATE_FILE } from '../../src/client/hook-state.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import { writtenLines } from '../helpers/hook-log.js';
import type { TestCa } from '../helpers/openssl.js';
import { closeScripted, openScripted, type ScriptedSetup } from './scripted-setup.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

describe('--on-update command until it succeeds', () => {
  let root: string;
  let a: TestCa;
  let sds: ScriptedSds;
  let setup: ScriptedSetup | undefined;
  before(async () => {
    // Every stream gets the same SVID at once.
    setup = await openScripted('mesh-sds-hook-retry-', ({ sds }) => setImmediate(() => sds.push('1', [identity(), trust()])));
    ({ root, a, sds } = setup);
  });
  after(() => closeScripted(setup));
  const identity = () => tlsCertificateSecret('default', a.certPem, a.keyPem, 'serial-a');
  const trust = () => spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: a.certPem }]);
  const lines = writtenLines;

  it('--watch runs a failed command again (backoff from 1 s) without a new push, until it succeeds', { timeout: 30_000 }, async () => {
    const dir = join(root, 'watch');
    const up = join(root, 'watch-up');
    const loaded = join(root, 'watch-loaded');
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, onUpdate: `[ -f ${up} ] || exit 1; echo loaded >> ${loaded}`, log: (_l, m) => logs.push(m) });
    try {
      await waitFor(() => logs.some((m) => /on-update command failed \(exit code 1\)/.test(m)), 'the first run to fail');
      writeFileSync(up, '');
      await waitFor(() => lines(loaded).length === 1, 'a retry that succeeds', 10_000);
      assert.equal(sds.streams.length, 1);
      assert.ok(logs.some((m) => /running the on-update command again in 1 s/.test(m)), logs.join('\n'));
      // Recorded once the run has ended, a moment after its output.
      await waitFor(() => (JSON.parse(readFileSync(join(dir, HOOK_STATE_FILE), 'utf8')) as { onUpdate: string }).onUpdate === 'succeeded', 'the success to be recorded');
      assert.equal(statSync(join(dir, HOOK_STATE_FILE)).mode & 0o777, 0o600);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
    }
  });

  it('a one-shot re-run after a failed command runs it again although the files are current', { timeout: 30_000 }, async () => {
    const dir = join(root, 'oneshot');
    const up = join(root, 'oneshot-up');
    const loaded = join(root, 'oneshot-loaded');
    const hook = `[ -f ${up} ] || exit 3; echo loaded >> ${loaded}`;
    const first = startAgent({ server: sds.address, node: 'default.web', outDir: dir, onUpdate: hook });
    await assert.rejects(first.done, (e: unknown) => e instanceof HookFailed && /exit code 3/.test((e as Error).message));
    writeFileSync(up, '');
    const writes: string[][] = [];
    const logs: string[] = [];
    const second = startAgent({ server: sds.address, node: 'default.web', outDir: dir, onUpdate: hook, onWrite: (w) => writes.push(w.changed), log: (_l, m) => logs.push(m) });
    await second.done;
    assert.deepEqual(writes, [[]], 'the files were current');
    assert.equal(lines(loaded).length, 1, logs.join('\n'));
    assert.ok(logs.some((m) => /files already current, but the on-update command has not succeeded on them \(last run: exit code 3\)/.test(m)), logs.join('\n'));
    // Succeeded now: a third run has nothing to do.
    const third = startAgent({ server: sds.address, node: 'default.web', outDir: dir, onUpdate: hook });
    await third.done;
    assert.equal(lines(loaded).length, 1);
  });

  it('a stop lets a running command finish (within the grace) instead of killing it', { timeout: 30_000 }, async () => {
    const dir = join(root, 'grace');
    const started = join(root, 'grace-started');
    const finished = join(root, 'grace-finished');
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, onUpdate: `touch ${started}; sleep 1; touch ${finished}` });
    await waitFor(() => existsSync(started), 'the command to start');
    agent.close();
    await agent.done;
    assert.ok(existsSync(finished), 'the command was killed by the stop');
    const state = JSON.parse(readFileSync(join(dir, HOOK_STATE_FILE), 'utf8')) as { onUpdate: string };
    assert.equal(state.onUpdate, 'succeeded');
  });
});
