import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { withFileLock } from '../../src/store/file-lock.js';

async function lockDir(): Promise<{ path: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-lock-'));
  return { path: join(dir, 'state.json.lock'), done: () => rm(dir, { recursive: true, force: true }) };
}

/** A pid that is certainly gone: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('a lock held by a live process on this host is never broken for its age: the waiter gives up with an error', async () => {
  const d = await lockDir();
  try {
    const old = Date.now() - 3_600_000;
    await writeFile(d.path, `${hostname()} ${process.pid} ${old} aaaaaaaaaaaa\n`);
    let ran = false;
    await assert.rejects(
      withFileLock(d.path, async () => void (ran = true), { staleMs: 50, timeoutMs: 300 }),
      /still held after 300 ms/,
    );
    assert.equal(ran, false, 'the critical section must not run while another live process holds the lock');
    assert.match(await readFile(d.path, 'utf8'), new RegExp(`^${hostname()} ${process.pid} ${old} `), 'the holder keeps its lock');
  } finally {
    await d.done();
  }
});

test('a lock whose process on this host is gone is broken at once, whatever its age', async () => {
  const d = await lockDir();
  try {
    await writeFile(d.path, `${hostname()} ${deadPid()} ${Date.now()} bbbbbbbbbbbb\n`);
    const started = Date.now();
    assert.equal(await withFileLock(d.path, async () => 'ran', { staleMs: 60_000, timeoutMs: 5_000 }), 'ran');
    assert.ok(Date.now() - started < 4_000);
  } finally {
    await d.done();
  }
});

test("another host's lock is broken once older than staleMs, and not before", async () => {
  const d = await lockDir();
  try {
    await writeFile(d.path, `other-host.invalid 1 ${Date.now()} cccccccccccc\n`);
    await assert.rejects(withFileLock(d.path, async () => 'ran', { staleMs: 60_000, timeoutMs: 200 }), /still held/);
    await writeFile(d.path, `other-host.invalid 1 ${Date.now() - 120_000} cccccccccccc\n`);
    assert.equal(await withFileLock(d.path, async () => 'ran', { staleMs: 60_000, timeoutMs: 2_000 }), 'ran');
  } finally {
    await d.done();
  }
});
