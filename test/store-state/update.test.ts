// StateStore.update is an atomic read-modify-write: concurrent writers never lose each other's change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { FileStateStore } from '../../src/store/file-state.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';
import { PostgresStore } from '../../src/store/postgres.js';
import type { StateStore } from '../../src/store/types.js';
import { PG_URL, dropSchema, testSchema } from '../store-postgres/helpers.js';

const append = (item: string) => (old: string | undefined) => JSON.stringify([...(old ? (JSON.parse(old) as string[]) : []), item]);

async function fiftyConcurrentAppendsAllLand(stores: StateStore[]): Promise<void> {
  const items = Array.from({ length: 50 }, (_, i) => `item-${i}`);
  await Promise.all(items.map((item, i) => stores[i % stores.length]!.update('list/key', append(item))));
  const got = JSON.parse((await stores[0]!.get('list/key'))!) as string[];
  assert.deepEqual([...got].sort(), [...items].sort());
}

test('memory state: concurrent updates all land, undefined deletes', async () => {
  const s = new MemoryStateStore();
  await fiftyConcurrentAppendsAllLand([s]);
  assert.equal(await s.update('list/key', () => undefined), undefined);
  assert.equal(await s.get('list/key'), undefined);
});

test('state dir: concurrent updates through two store instances all land, and no lock or temp file is left', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-update-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await fiftyConcurrentAppendsAllLand([await FileStateStore.open(dir), await FileStateStore.open(dir)]);
  assert.deepEqual(await readdir(join(dir, 'list')), ['key']);
});

test('state dir: a lock left by a process that died is broken, a live one is waited for', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-update-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const s = await FileStateStore.open(dir);
  await s.put('k', 'v0');
  // A pid that surely does not exist any more: a child that has exited.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  await writeFile(join(dir, 'k.lock'), `${hostname()} ${dead} ${Date.now()} x\n`);
  assert.equal(await s.update('k', (old) => `${old}+1`), 'v0+1');

  // Held by a live process: the update waits until the holder lets go.
  const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => holder.kill());
  await writeFile(join(dir, 'k.lock'), `${hostname()} ${holder.pid} ${Date.now()} y\n`);
  let done = false;
  const pending = s.update('k', (old) => `${old}+2`).then((v) => ((done = true), v));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(done, false, 'must wait for a live lock');
  await rm(join(dir, 'k.lock'));
  assert.equal(await pending, 'v0+1+2');
});

test('state dir: keys that would alias lock or temp files are refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-update-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const s = await FileStateStore.open(dir);
  await assert.rejects(s.put('auth/revoked.lock', 'x'), /invalid state key/);
});

test('postgres state: concurrent updates through two pools all land, including the first insert', async (t) => {
  const schema = testSchema();
  const a = await PostgresStore.open(PG_URL, { schema });
  const b = await PostgresStore.open(PG_URL, { schema });
  t.after(async () => {
    await a.close();
    await b.close();
    await dropSchema(schema);
  });
  await fiftyConcurrentAppendsAllLand([a.state, b.state]);
  assert.equal(await a.state.update('list/key', () => undefined), undefined);
  assert.equal(await b.state.get('list/key'), undefined);
});

test('a state file that is a dangling symlink, a directory or a FIFO is an error naming the key, not a crash or a read that waits for ever; writes are whole after a sync', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-state-'));
  try {
    const store = await FileStateStore.open(dir);
    await store.put('ca/x', 'v1');
    const target = join(dir, 'ca', 'x');
    await rm(target);
    await symlink(join(dir, 'nowhere'), target);
    await assert.rejects(store.getOrCreate('ca/x', () => 'v2'), /state key ca\/x: .* exists but cannot be read \(a dangling symlink\?\)/);
    await rm(target);
    assert.equal(await store.getOrCreate('ca/x', () => 'v3'), 'v3');
    assert.deepEqual((await readdir(join(dir, 'ca'))).filter((f) => f.endsWith('.tmp')), [], 'no temp file left behind');
    await rm(join(dir, 'ca', 'x'));
    await mkdir(join(dir, 'ca', 'x'));
    await assert.rejects(store.get('ca/x'), /cannot read state key ca\/x .*: is a directory, not a regular file/);
    // A FIFO at a key's path is refused at once, not read (the read waited for a writer for ever).
    await rm(join(dir, 'ca', 'x'), { recursive: true });
    execFileSync('mkfifo', [join(dir, 'ca', 'x')]);
    await assert.rejects(store.get('ca/x'), /cannot read state key ca\/x .*: is a FIFO, not a regular file/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
