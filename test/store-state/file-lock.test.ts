import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile, readFile, rm, symlink } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
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

/** A live process and its start time (/proc/<pid>/stat field 22), as a lock stamp records it. */
function liveChild(): { pid: number; start: string; kill: () => void } {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  return { pid: child.pid!, start: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!, kill: () => child.kill() };
}

test('a lock held by a live process on this host is never broken for its age (stamp with or without its start time): the waiter gives up with an error', async () => {
  const d = await lockDir();
  const holder = liveChild();
  try {
    const old = Date.now() - 3_600_000;
    for (const stamp of [`${hostname()} ${holder.pid} ${old} aaaaaaaaaaaa\n`, `${hostname()} ${holder.pid} ${old} aaaaaaaaaaaa ${holder.start}\n`]) {
      await writeFile(d.path, stamp);
      let ran = false;
      await assert.rejects(
        withFileLock(d.path, async () => void (ran = true), { staleMs: 50, timeoutMs: 300 }),
        /still held after 300 ms/,
      );
      assert.equal(ran, false, 'the critical section must not run while another live process holds the lock');
      assert.equal(await readFile(d.path, 'utf8'), stamp, 'the holder keeps its lock');
    }
  } finally {
    holder.kill();
    await d.done();
  }
});

test('a lock of a previous life of a pid is broken at once: our own pid on a lock taken before this process started (a restarted container is pid 1 again), or a live pid that started after the lock was taken', async () => {
  const d = await lockDir();
  const other = liveChild();
  try {
    for (const stamp of [`${hostname()} ${process.pid} ${Date.now() - 3_600_000} cccccccccccc\n`, `${hostname()} ${other.pid} ${Date.now()} dddddddddddd 1\n`]) {
      await writeFile(d.path, stamp);
      const started = Date.now();
      assert.equal(await withFileLock(d.path, async () => 'ran', { staleMs: 60_000, timeoutMs: 5_000 }), 'ran', stamp);
      assert.ok(Date.now() - started < 4_000);
    }
    // Our own lock, held now by another task of this process, is not broken.
    let inside = false;
    const first = withFileLock(d.path, async () => {
      inside = true;
      await new Promise((r) => setTimeout(r, 300));
      inside = false;
    });
    while (!inside) await new Promise((r) => setTimeout(r, 5));
    await withFileLock(d.path, async () => assert.equal(inside, false, 'waited for the holder in this process'));
    await first;
  } finally {
    other.kill();
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

test('a lock recording pid 0, a negative or a fractional pid names no process and is broken at once: kill(0) and kill(-1) answer for a process group and for every process', async () => {
  for (const pid of ['0', '-1', '1.5']) {
    const d = await lockDir();
    try {
      await writeFile(d.path, `${hostname()} ${pid} ${Date.now()} bbbbbbbbbbbb\n`);
      const started = Date.now();
      assert.equal(await withFileLock(d.path, async () => 'ran', { staleMs: 60_000, timeoutMs: 3_000 }), 'ran', `pid ${pid}`);
      assert.ok(Date.now() - started < 2_500, `pid ${pid}`);
    } finally {
      await d.done();
    }
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

test('a lock path that exists but cannot be read (a folder there; a root-owned lock for a server run as another user) is waited for and then an error naming the lock and why, not retried in a tight loop for ever', { timeout: 60_000 }, async () => {
  const d = await lockDir();
  try {
    await mkdir(d.path);
    let ran = false;
    await assert.rejects(
      withFileLock(d.path, async () => void (ran = true), { staleMs: 50, timeoutMs: 300 }),
      (e: Error) => e.message.includes(d.path) && /still held after 300 ms.*EISDIR/.test(e.message),
    );
    assert.equal(ran, false);
  } finally {
    await d.done();
  }
});

test('a FIFO or a symbolic link at the lock path is waited for and then an error saying what it is: reading the FIFO blocked a libuv thread, and every state update, for ever', { timeout: 60_000 }, async () => {
  const d = await lockDir();
  try {
    spawnSync('mkfifo', [d.path]);
    let ran = false;
    const started = Date.now();
    await assert.rejects(
      withFileLock(d.path, async () => void (ran = true), { staleMs: 50, timeoutMs: 300 }),
      (e: Error) => e.message.includes(d.path) && /still held after 300 ms \(it cannot be read: not a regular file/.test(e.message),
    );
    assert.equal(ran, false);
    assert.ok(Date.now() - started < 10_000);
    await rm(d.path);
    await symlink(join(tmpdir(), 'nowhere-mesh-sds'), d.path);
    await assert.rejects(withFileLock(d.path, async () => void (ran = true), { staleMs: 50, timeoutMs: 300 }), /it cannot be read: a symbolic link, not followed/);
    assert.equal(ran, false);
  } finally {
    await d.done();
  }
});
