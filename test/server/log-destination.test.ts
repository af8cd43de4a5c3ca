// The log destination: lines reach the descriptor whole, in order and in batches; a reader that
// stalls delays nothing and costs bounded memory; one that is gone breaks nothing; and whatever is
// pending when the process exits is written.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchedFdWriter } from '../../src/server/log-destination.js';

const line = (i: number, width = 40) => `${JSON.stringify({ i, pad: 'x'.repeat(width) })}\n`;
const flushed = (w: BatchedFdWriter) => new Promise<void>((resolve) => w.flush(() => resolve()));
const numbers = (text: string) => text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { i: number }).i);

function tempFile(): { path: string; fd: number; done(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'log-dest-'));
  const path = join(dir, 'log');
  const fd = openSync(path, 'w');
  return { path, fd, done: () => (closeSync(fd), rmSync(dir, { recursive: true, force: true })) };
}

/** A non-blocking pipe read by `sh -c "sleep <s>; cat"`: full (EAGAIN) until the reader starts. */
function stalledReader(seconds: number) {
  const child = spawn('sh', ['-c', `sleep ${seconds}; cat`], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  return { child, fd, output: () => out, exited: new Promise<void>((r) => child.once('exit', () => r())) };
}

describe('BatchedFdWriter', () => {
  it('holds lines until a batch is full, then writes them whole and in order', async () => {
    const f = tempFile();
    try {
      const w = new BatchedFdWriter(f.fd, { batchChars: 200 });
      for (let i = 0; i < 3; i++) w.write(line(i));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(readFileSync(f.path, 'utf8'), '', 'below the batch size nothing is written yet');
      assert.equal(w.pendingLines, 3);
      for (let i = 3; i < 10; i++) w.write(line(i));
      await flushed(w);
      assert.deepEqual(numbers(readFileSync(f.path, 'utf8')), [...Array(10).keys()]);
      assert.equal(w.pendingLines, 0);
    } finally {
      f.done();
    }
  });

  it('keeps every line, in order, across a reader that stalls (EAGAIN) and then reads', async () => {
    const r = stalledReader(0.5);
    const w = new BatchedFdWriter(r.fd, { batchChars: 4096, retryMs: 5 });
    // 4,000 lines of ~150 bytes: 600 KB, far more than a pipe holds while its reader sleeps.
    for (let i = 0; i < 4000; i++) assert.equal(w.write(line(i, 130)), true);
    await flushed(w);
    r.child.stdin!.end();
    await r.exited;
    assert.deepEqual(numbers(r.output()), [...Array(4000).keys()]);
  });

  it('drops and counts lines beyond its bound while the reader stalls, and says so once it reads', async () => {
    const r = stalledReader(0.5);
    const w = new BatchedFdWriter(r.fd, { batchChars: 1024, maxPendingChars: 20_000, retryMs: 5 });
    let refused = 0;
    for (let i = 0; i < 4000; i++) if (!w.write(line(i, 130))) refused++;
    assert.ok(refused > 0, 'some lines were refused');
    await flushed(w);
    r.child.stdin!.end();
    await r.exited;
    const lines = r.output().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { i?: number; dropped?: number; msg?: string });
    const notice = lines.find((l) => l.dropped !== undefined);
    assert.equal(notice?.dropped, refused);
    assert.match(notice!.msg!, /log lines dropped/);
    const kept = lines.filter((l) => l.i !== undefined).map((l) => l.i!);
    assert.equal(kept.length, 4000 - refused);
    assert.deepEqual(kept, [...kept].sort((a, b) => a - b), 'what is kept stays in order');
  });

  it('survives a full disk (ENOSPC): the batch is counted as dropped and later lines are still taken', async () => {
    const fd = openSync('/dev/full', 'w');
    try {
      const w = new BatchedFdWriter(fd, { batchChars: 10 });
      for (let i = 0; i < 5; i++) assert.equal(w.write(line(i)), true);
      await flushed(w);
      assert.equal(w.write(line(5)), true, 'still taking lines after a failed write');
      await flushed(w);
      assert.equal(w.pendingLines, 0);
      w.flushSync();
    } finally {
      closeSync(fd);
    }
  });

  it('stops quietly when nobody reads any more (EPIPE) and holds nothing', async () => {
    const r = stalledReader(0);
    r.child.kill('SIGKILL');
    await r.exited;
    const w = new BatchedFdWriter(r.fd, { batchChars: 10 });
    w.write(line(1));
    await flushed(w);
    assert.equal(w.write(line(2)), false);
    assert.equal(w.pendingLines, 0);
    w.flushSync();
  });
});

it('the server logger writes every pending line when the process exits at once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'log-exit-'));
  try {
    const script = join(dir, 'burst.ts');
    writeFileSync(
      script,
      `import { createLogger } from ${JSON.stringify(new URL('../../src/server/logger.ts', import.meta.url).href)};\n` +
        `const log = createLogger('info');\nfor (let i = 0; i < 3000; i++) log.info({ i }, 'stream opened');\nprocess.exit(0);\n`,
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, r.stderr);
    const got = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { i: number; msg: string });
    assert.equal(got.length, 3000);
    assert.deepEqual(got.map((l) => l.i), [...Array(3000).keys()]);
    assert.ok(got.every((l) => l.msg === 'stream opened'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
