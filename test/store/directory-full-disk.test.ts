// apply on a full disk, on a real small tmpfs (mounting needs root: skipped otherwise, saying so).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryStore } from '../../src/store/directory.js';
import { makeCa } from '../helpers/openssl.js';
import { dataplaneYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';

function mountTmpfs(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const root = mkdtempSync(join(tmpdir(), 'mesh-sds-fulldisk-'));
const mnt = join(root, 'mnt');
execFileSync('mkdir', ['-p', mnt]);
const mounted = process.getuid?.() === 0 && mountTmpfs(mnt);
const skip = mounted ? false : 'mounting a small tmpfs needs root';

test.after(() => {
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(root, { recursive: true, force: true });
});

/** Leaves `pages` 4 KiB pages free on the tmpfs. */
async function fillLeaving(pages: number): Promise<void> {
  const s = await statfs(mnt);
  const free = s.bavail * s.bsize;
  await writeFile(join(mnt, `filler-${Date.now()}`), Buffer.alloc(Math.max(0, free - pages * 4096)));
}

test('apply on a disk that fills up mid-way writes none of the text\'s resources, and leaves no lock file behind to hold up the next writer', { skip }, async () => {
  const dir = join(mnt, 'resources');
  await mkdir(dir);
  const store = await DirectoryStore.open({ resourcesDir: dir, stateDir: join(root, 'state'), rescanMs: 60_000 });
  try {
    const ca = makeCa('full-disk');
    // A small Dataplane (one page) and a MeshTrust of two pages, with room for their two locks and three pages in all.
    const text = yamlDocs(dataplaneYaml('aaa-first', { app: 'a' }), meshTrustYaml('zzz-big', 'big.example', Array.from({ length: 12 }, () => ca.certPem)));
    await fillLeaving(4);
    await assert.rejects(store.apply(text, 'two.yaml'), /ENOSPC/);
    assert.deepEqual((await readdir(dir)).sort(), [], 'neither resource, no temp file, no lock');
    await fillLeaving(0);
    await assert.rejects(store.apply(dataplaneYaml('ccc', { app: 'c' }), 'one.yaml'), /ENOSPC/);
    assert.deepEqual(await readdir(dir), [], 'a lock whose stamp could not be written is removed');
  } finally {
    await store.close();
  }
});
