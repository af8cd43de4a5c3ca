// The one rule for a file a flag names: a regular file (or a link to one) of bounded size, refused
// otherwise at once, by the opened descriptor, naming the flag, the path and what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_FLAG_FILE_BYTES, readFlagFile, readFlagFileSync } from '../../src/api/flag-file.js';
import { FlagFileError } from '../../src/api/secret-text.js';

const readers = [
  { name: 'readFlagFile', read: readFlagFile },
  { name: 'readFlagFileSync', read: async (flag: string, path: string, max?: number) => readFlagFileSync(flag, path, max) },
];

test('a FIFO, a device, a folder or a file over the limit is refused at once naming the flag, the path and why; a regular file and a link to one are read', { timeout: 10_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-flag-file-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  await symlink(fifo, join(dir, 'fifo-link'));
  const big = join(dir, 'big');
  await writeFile(big, Buffer.alloc(2 * MAX_FLAG_FILE_BYTES, 'a'));
  const limit = join(dir, 'limit');
  await writeFile(limit, Buffer.alloc(MAX_FLAG_FILE_BYTES, 'b'));
  const key = randomBytes(32);
  await writeFile(join(dir, 'key'), key);
  await symlink(join(dir, 'key'), join(dir, 'key-link'));
  await mkdir(join(dir, 'folder'));
  for (const { name, read } of readers) {
    await t.test(name, async () => {
      const refused = async (path: string, message: string, max?: number) => {
        await assert.rejects(read('--x-file', path, max), (e: unknown) => e instanceof FlagFileError && e.message === message);
      };
      await refused(fifo, `cannot read --x-file ${fifo}: is a FIFO, not a regular file`);
      await refused(join(dir, 'fifo-link'), `cannot read --x-file ${join(dir, 'fifo-link')}: is a FIFO, not a regular file`);
      await refused('/dev/zero', 'cannot read --x-file /dev/zero: is a character device, not a regular file');
      await refused(join(dir, 'folder'), `cannot read --x-file ${join(dir, 'folder')}: is a directory, not a regular file`);
      await refused(big, `cannot read --x-file ${big}: is larger than 1 MiB: not read`);
      await refused(join(dir, 'key'), `cannot read --x-file ${join(dir, 'key')}: is larger than 16 bytes: not read`, 16);
      await refused(join(dir, 'missing'), `cannot read --x-file ${join(dir, 'missing')}: no such file or directory (ENOENT)`);
      // A key given in place of its path is described, never echoed.
      const b64 = key.toString('base64');
      await assert.rejects(read('--x-file', b64), (e: Error) => !e.message.includes(b64) && /^cannot read --x-file: .*; its value is not shown/.test(e.message));
      assert.deepEqual(await read('--x-file', join(dir, 'key')), key);
      assert.deepEqual(await read('--x-file', join(dir, 'key-link')), key);
      assert.equal((await read('--x-file', limit)).length, MAX_FLAG_FILE_BYTES);
      // A file that states size 0 but has content (procfs) is read whole.
      assert.match((await read('--x-file', '/proc/self/status')).toString(), /^Name:[\s\S]*\nPid:/);
    });
  }
});
