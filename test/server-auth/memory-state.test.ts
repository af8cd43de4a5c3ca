import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStateStore } from '../../src/store/memory-state.js';

test('concurrent getOrCreate calls run create once and all see the first value', async () => {
  const s = new MemoryStateStore();
  let calls = 0;
  const create = async (): Promise<string> => {
    calls++;
    await new Promise((r) => setTimeout(r, 10));
    return `v${calls}`;
  };
  const got = await Promise.all([s.getOrCreate('k', create), s.getOrCreate('k', create), s.getOrCreate('k', create)]);
  assert.deepEqual(got, ['v1', 'v1', 'v1']);
  assert.equal(calls, 1);
  assert.equal(await s.getOrCreate('k', () => 'other'), 'v1');
});

test('a failed create is not remembered, the next caller creates again', async () => {
  const s = new MemoryStateStore();
  await assert.rejects(s.getOrCreate('k', () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await s.getOrCreate('k', () => 'ok'), 'ok');
});

test('get, put and delete', async () => {
  const s = new MemoryStateStore();
  assert.equal(await s.get('a'), undefined);
  await s.put('a', '1');
  assert.equal(await s.get('a'), '1');
  await s.delete('a');
  assert.equal(await s.get('a'), undefined);
});
