// What a resource directory looks like in production: symlinks, Kubernetes ConfigMap/Secret
// volumes (the kubelet's `..data` swap), files too large or not UTF-8, and many files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, watch, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { firstValueFrom, filter, timeout } from 'rxjs';
import { DirectoryStore, MAX_ERRORS_PER_FILE, type DirectoryStoreOptions } from '../../src/store/directory.js';
import type { ResourceError, ResourceSnapshot } from '../../src/api/types.js';
import { startWhole } from '../../src/cli/offline.js';
import { makeCa } from '../helpers/openssl.js';
import { dataplaneYaml, meshTrustYaml } from '../helpers/yaml.js';

const ca = makeCa('dir-layout');
const trustYaml = (name: string, td: string) => meshTrustYaml(name, td, [ca.certPem]);

async function withStore(
  fn: (store: DirectoryStore, dir: string, root: string, reported: ResourceError[]) => Promise<void>,
  opts: Partial<DirectoryStoreOptions> = {},
  prepare?: (dir: string, root: string) => Promise<void>,
) {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-layout-'));
  const dir = join(root, 'resources');
  await mkdir(dir);
  await prepare?.(dir, root);
  const reported: ResourceError[] = [];
  const store = await DirectoryStore.open({
    resourcesDir: dir,
    stateDir: join(root, 'state'),
    rescanMs: 60_000,
    onErrors: (e) => reported.push(...e),
    ...opts,
  });
  try {
    await store.start();
    await fn(store, dir, root, reported);
  } finally {
    await store.close();
    await rm(root, { recursive: true, force: true });
  }
}

const next = (store: DirectoryStore, pred: (s: ResourceSnapshot) => boolean, ms = 3000) =>
  firstValueFrom(store.snapshots$.pipe(filter(pred), timeout(ms)));
const latest = (store: DirectoryStore) => firstValueFrom(store.snapshots$);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const tdOf = (s: ResourceSnapshot, name: string) => {
  const r = [...s.resources.values()].find((x) => x.kind === 'MeshTrust' && x.name === name);
  return r?.kind === 'MeshTrust' ? r.spec.trustDomain : undefined;
};
const trusts = (s: ResourceSnapshot) =>
  Object.fromEntries([...s.resources.values()].filter((r) => r.kind === 'MeshTrust').map((r) => [r.name, tdOf(s, r.name)]).sort());

test('a symlinked file and a symlinked folder are read; a change behind the link is seen', async () => {
  await withStore(async (store, dir, root) => {
    const outside = join(root, 'outside');
    await mkdir(join(outside, 'more'), { recursive: true });
    await writeFile(join(outside, 'trust.yaml'), trustYaml('linked', 'one.example'));
    await writeFile(join(outside, 'more', 'other.yaml'), trustYaml('in-folder', 'folder.example'));
    await symlink(join(outside, 'trust.yaml'), join(dir, 'trust.yaml'));
    await symlink(join(outside, 'more'), join(dir, 'more'));
    const s = await next(store, (x) => tdOf(x, 'linked') === 'one.example' && tdOf(x, 'in-folder') === 'folder.example');
    assert.deepEqual(s.errors, []);
    // Behind the link: no event in the watched tree, so the safety scan (stat calls) finds it.
    await writeFile(join(outside, 'trust.yaml'), trustYaml('linked', 'two.example'));
    await store.rescan();
    assert.equal(tdOf(await latest(store), 'linked'), 'two.example');
  });
});

test('after a folder symlink is swapped to another target, edits in the new target are seen by the watch', async () => {
  await withStore(async (store, dir, root) => {
    for (const [v, td] of [['v1', 'one.example'], ['v2', 'two.example']] as const) {
      await mkdir(join(root, v));
      await writeFile(join(root, v, 'trust.yaml'), trustYaml('linked', td));
    }
    await symlink(join(root, 'v1'), join(dir, 'conf'));
    await next(store, (x) => tdOf(x, 'linked') === 'one.example');
    // The atomic swap: `ln -s v2 conf.new && mv -T conf.new conf`.
    await symlink(join(root, 'v2'), join(dir, 'conf.new'));
    await rename(join(dir, 'conf.new'), join(dir, 'conf'));
    await next(store, (x) => tdOf(x, 'linked') === 'two.example');
    // No safety scan in this test (60 s): only a watch on v2 sees this.
    await writeFile(join(root, 'v2', 'trust.yaml'), trustYaml('linked', 'three.example'));
    await next(store, (x) => tdOf(x, 'linked') === 'three.example', 2000);
  });
});

test('a symlink loop is reported once, not followed, and everything else is served', async () => {
  await withStore(async (store, dir, _root, reported) => {
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'sub', 'trust.yaml'), trustYaml('t', 'ok.example'));
    await symlink(dir, join(dir, 'sub', 'back-to-top'));
    await symlink(join(dir, 'self'), join(dir, 'self'));
    const s = await next(store, (x) => tdOf(x, 't') === 'ok.example' && x.errors.length === 2);
    assert.deepEqual(
      s.errors.map((e) => `${e.file.replace(/.*resources\//, '')}: ${e.message}`),
      ['self: symlink loop: not followed', 'sub/back-to-top: symlink loop: links back to a folder above it, not followed'],
    );
    for (let i = 0; i < 3; i++) await store.rescan();
    await writeFile(join(dir, 'other.yaml'), trustYaml('u', 'u.example'));
    await next(store, (x) => tdOf(x, 'u') === 'u.example');
    assert.equal(reported.filter((e) => /symlink loop/.test(e.message)).length, 2, 'each loop reported once');
  });
});

test('a folder link back to the top made while watching is one loop report, not every file again as a duplicate', async () => {
  await withStore(async (store, dir, _root, reported) => {
    for (let i = 0; i < 20; i++) await writeFile(join(dir, `t${i}.yaml`), trustYaml(`t${i}`, `t${i}.example`));
    await next(store, (x) => tdOf(x, 't19') === 't19.example');
    await symlink(dir, join(dir, 'zz-loop'));
    const s = await next(store, (x) => x.errors.length > 0);
    await sleep(300); // any later pass would have added the duplicates by now
    assert.deepEqual(
      s.errors.map((e) => `${e.file.replace(/.*resources\//, '')}: ${e.message}`),
      ['zz-loop: symlink loop: links back to a folder above it, not followed'],
    );
    assert.deepEqual(reported.map((e) => e.message), ['symlink loop: links back to a folder above it, not followed']);
    assert.equal(tdOf(await latest(store), 't0'), 't0.example');
  });
});

/** The kubelet's atomic writer, step by step, as it updates a ConfigMap volume. */
async function kubeletWrite(dir: string, stamp: string, files: Record<string, string>, previous?: { stamp: string; files: string[] }) {
  const ts = join(dir, `..${stamp}`);
  await mkdir(ts);
  for (const [name, text] of Object.entries(files)) await writeFile(join(ts, name), text);
  await symlink(`..${stamp}`, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const name of Object.keys(files)) {
    if (!previous?.files.includes(name)) await symlink(join('..data', name), join(dir, name));
  }
  for (const name of previous?.files ?? []) if (!(name in files)) await unlink(join(dir, name));
  if (previous) await rm(join(dir, `..${previous.stamp}`), { recursive: true });
}

test('a Kubernetes ConfigMap volume is read, and a kubelet swap that adds, changes and removes resources is one change', async () => {
  const first = { 'a.yaml': trustYaml('a', 'a1.example'), 'b.yaml': trustYaml('b', 'b.example') };
  await withStore(
    async (store) => {
      const start = await latest(store);
      assert.deepEqual(trusts(start), { a: 'a1.example', b: 'b.example' });
      assert.deepEqual(start.errors, []);
      const seen: ResourceSnapshot[] = [];
      const sub = store.snapshots$.subscribe((s) => s.revision > start.revision && seen.push(s));
      try {
        await kubeletWrite(store.dir, '2026_11_29_21_00_00.2', { 'a.yaml': trustYaml('a', 'a2.example'), 'c.yaml': trustYaml('c', 'c.example') }, {
          stamp: '2026_11_29_21_00_00.1',
          files: Object.keys(first),
        });
        await next(store, (s) => tdOf(s, 'c') === 'c.example');
        await sleep(300);
        await store.rescan();
      } finally {
        sub.unsubscribe();
      }
      assert.equal(seen.length, 1, `one swap, one change: ${JSON.stringify(seen.map(trusts))}`);
      assert.deepEqual(trusts(seen[0]!), { a: 'a2.example', c: 'c.example' });
      assert.deepEqual(seen[0]!.errors, []);
      assert.match(seen[0]!.resources.get('MeshTrust/default//a')!.source!.file, /resources\/a\.yaml$/, 'named by its visible path');
    },
    {},
    (dir) => kubeletWrite(dir, '2026_11_29_21_00_00.1', first),
  );
});

test('a file over --max-file-size and a file that is not UTF-8 are refused naming the file, keep their last good version, and are not read again until they change', async () => {
  await withStore(
    async (store, dir) => {
      await writeFile(join(dir, 'a.yaml'), trustYaml('a', 'a.example'));
      await writeFile(join(dir, 'b.yaml'), trustYaml('b', 'b.example'));
      await next(store, (s) => tdOf(s, 'a') === 'a.example' && tdOf(s, 'b') === 'b.example');
      await writeFile(join(dir, 'a.yaml'), `# ${'x'.repeat(5000)}\n${trustYaml('a', 'changed.example')}`);
      const latin1 = Buffer.concat([Buffer.from('# caf'), Buffer.from([0xe9]), Buffer.from(`\n${trustYaml('b', 'changed.example')}`)]);
      await writeFile(join(dir, 'b.yaml'), latin1);
      const s = await next(store, (x) => x.errors.length === 2);
      assert.deepEqual(
        s.errors.map((e) => `${e.file.replace(/.*\//, '')}: ${e.message}`).sort(),
        [
          `a.yaml: file is ${5003 + Buffer.byteLength(trustYaml('a', 'changed.example'))} bytes, larger than the limit of 4096 bytes (--max-file-size): not read`,
          'b.yaml: file is not valid UTF-8: invalid byte 0xe9 at byte offset 5',
        ],
      );
      assert.equal(tdOf(s, 'a'), 'a.example', 'last good version kept');
      assert.equal(tdOf(s, 'b'), 'b.example', 'last good version kept');
      const reads = store.reads;
      const revision = (await latest(store)).revision;
      for (let i = 0; i < 5; i++) await store.rescan();
      await sleep(300);
      assert.equal(store.reads, reads, 'a refused file is not read again while unchanged');
      assert.equal((await latest(store)).revision, revision);
      await writeFile(join(dir, 'b.yaml'), trustYaml('b', 'fixed.example'));
      const fixed = await next(store, (x) => tdOf(x, 'b') === 'fixed.example');
      assert.equal(fixed.errors.length, 1);
    },
    { maxFileSize: 4096 },
  );
});

test('a file or folder whose name is not UTF-8 is reported naming the bad byte (at start and when it appears while watching), not skipped unsaid; everything else is served', async () => {
  // Bytes, not strings: Node lists such a name with U+FFFD, a path no call can open.
  const bad = (dir: string, ...parts: number[][]) => Buffer.concat([Buffer.from(`${dir}/`), ...parts.map((p) => Buffer.from(p))]);
  const name = (...s: (string | number)[]) => s.flatMap((x) => (typeof x === 'number' ? [x] : [...Buffer.from(x)]));
  const problems = (s: ResourceSnapshot) => s.errors.map((e) => `${e.file.replace(/.*\//, '')}: ${e.message}`).sort();
  await withStore(
    async (store, dir) => {
      const first = await latest(store);
      assert.deepEqual(trusts(first), { ok: 'ok.example' });
      assert.deepEqual(problems(first), [
        'caf\uFFFD.yaml: name is not valid UTF-8 (invalid byte 0xe9 at byte offset 3 of the name): it cannot be opened by its name, nothing in it is read; rename it',
        'team\uFFFD: name is not valid UTF-8 (invalid byte 0xff at byte offset 4 of the name): it cannot be opened by its name, nothing in it is read; rename it',
      ]);
      // One that appears while watching is reported too, and stays reported (its watch event must not clear it).
      writeFileSync(bad(dir, name('new', 0xfe, '.yaml')), trustYaml('new', 'new.example'));
      await next(store, (s) => s.errors.length === 3);
      await sleep(300);
      const later = await latest(store);
      assert.equal(later.errors.length, 3);
      assert.match(problems(later).join('\n'), /new\uFFFD\.yaml: name is not valid UTF-8 \(invalid byte 0xfe at byte offset 3/);
      // Renamed to a UTF-8 name, it is read and the report goes.
      renameSync(bad(dir, name('caf', 0xe9, '.yaml')), join(dir, 'cafe.yaml'));
      const renamed = await next(store, (s) => tdOf(s, 'cafe') === 'cafe.example');
      assert.equal(renamed.errors.length, 2);
    },
    {},
    async (dir) => {
      writeFileSync(bad(dir, name('caf', 0xe9, '.yaml')), trustYaml('cafe', 'cafe.example'));
      mkdirSync(bad(dir, name('team', 0xff)));
      writeFileSync(Buffer.concat([bad(dir, name('team', 0xff)), Buffer.from('/t.yaml')]), trustYaml('team', 'team.example'));
      await writeFile(join(dir, 'ok.yaml'), trustYaml('ok', 'ok.example'));
    },
  );
});

test('a change among many files reads that file only; a safety scan with no change reads nothing and publishes nothing', async () => {
  await withStore(
    async (store, dir) => {
      const start = await latest(store);
      assert.equal(start.resources.size, 300);
      assert.equal(store.reads, 300);
      await store.rescan();
      assert.equal(store.reads, 300, 'stat calls only');
      assert.equal((await latest(store)).revision, start.revision, 'nothing published');
      await writeFile(join(dir, 'dp-123.yaml'), dataplaneYaml('dp-123', { app: 'changed' }));
      const s = await next(store, (x) => x.resources.get('Dataplane/default//dp-123')?.labels.app === 'changed');
      assert.equal(store.reads, 301);
      const unchanged = 'Dataplane/default//dp-7';
      assert.equal(s.resources.get(unchanged), start.resources.get(unchanged), 'unchanged resources are the same objects');
    },
    {},
    async (dir) => {
      for (let i = 0; i < 300; i++) await writeFile(join(dir, `dp-${i}.yaml`), dataplaneYaml(`dp-${i}`, { app: 'web' }));
    },
  );
});

test('a folder created later is read, and its removal removes its resources', async () => {
  await withStore(async (store, dir) => {
    await mkdir(join(dir, 'team-a', 'deep'), { recursive: true });
    await writeFile(join(dir, 'team-a', 'deep', 'trust.yaml'), trustYaml('deep', 'deep.example'));
    await next(store, (s) => tdOf(s, 'deep') === 'deep.example');
    await rm(join(dir, 'team-a'), { recursive: true });
    await next(store, (s) => tdOf(s, 'deep') === undefined);
  });
});

/** Permission denied on listing (or on looking at entries) under chosen folders: as root, chmod denies nothing. */
function deniedFs() {
  const list = new Set<string>();
  const look = new Set<string>();
  const refuse = (folders: Set<string>, path: string, self: boolean) => {
    for (const f of folders) {
      if ((self && path === f) || path.startsWith(f + sep)) throw Object.assign(new Error(`EACCES: permission denied '${path}'`), { code: 'EACCES' });
    }
  };
  const treeFs = {
    readdir: async (path: string) => (refuse(list, path, true), readdir(path, { withFileTypes: true })),
    stat: async (path: string) => (refuse(list, path, false), refuse(look, path, false), stat(path)),
  };
  return { list, look, treeFs };
}

test('a subfolder that cannot be read keeps what was read under it and is reported; readable again it is read, removed its resources go', async () => {
  const denied = deniedFs();
  await withStore(
    async (store, dir, _root, reported) => {
      const team = join(dir, 'team');
      await mkdir(join(team, 'deep'), { recursive: true });
      await writeFile(join(team, 'trust.yaml'), trustYaml('team', 'team.example'));
      await writeFile(join(team, 'deep', 'trust.yaml'), trustYaml('deep', 'deep.example'));
      await writeFile(join(dir, 'top.yaml'), trustYaml('top', 'top.example'));
      const all = { deep: 'deep.example', team: 'team.example', top: 'top.example' };
      await next(store, (s) => tdOf(s, 'team') !== undefined && tdOf(s, 'deep') !== undefined && tdOf(s, 'top') !== undefined);
      const problems = (s: ResourceSnapshot) => s.errors.map((e) => `${e.file.replace(/.*resources\//, '')}: ${e.message}`);

      // `chmod 000 team`: the watch on its parent names it, and listing it fails.
      denied.list.add(team);
      await utimes(team, new Date(), new Date());
      const cut = await next(store, (s) => s.errors.length > 0);
      assert.deepEqual(trusts(cut), all);
      assert.deepEqual(problems(cut), ['team: folder cannot be read (EACCES): serving what was last read under it']);
      // The safety scan lists the whole tree: the same.
      await store.rescan();
      assert.deepEqual(trusts(await latest(store)), all);
      assert.deepEqual(problems(await latest(store)), problems(cut));
      assert.ok(reported.some((e) => /team$/.test(e.file) && /EACCES/.test(e.message)), 'reported (logged and counted)');

      // `chmod 644 team`: listed, but nothing in it can be looked at.
      denied.list.clear();
      denied.look.add(team);
      await store.rescan();
      const blind = await latest(store);
      assert.deepEqual(trusts(blind), all);
      assert.deepEqual(problems(blind), [
        'team/deep: cannot be read (EACCES): serving what was last read from it',
        'team/trust.yaml: cannot be read (EACCES): serving what was last read from it',
      ]);

      // Readable again: read as usual.
      denied.look.clear();
      await writeFile(join(team, 'trust.yaml'), trustYaml('team', 'team2.example'));
      await store.rescan();
      const back = await latest(store);
      assert.deepEqual(trusts(back), { ...all, team: 'team2.example' });
      assert.deepEqual(back.errors, []);

      // Really removed: its resources go.
      await rm(team, { recursive: true });
      const gone = await next(store, (s) => tdOf(s, 'team') === undefined);
      assert.deepEqual(trusts(gone), { top: 'top.example' });
    },
    { treeFs: denied.treeFs },
  );
});

test('FIFOs in the folder (named like resource files, or linked) never stall reading: other files keep being read', async () => {
  await withStore(async (store, dir, root) => {
    // More FIFOs than libuv has threads: a blocking open on each would stall every file read.
    for (let i = 0; i < 6; i++) execFileSync('mkfifo', [join(dir, `pipe-${i}.yaml`)]);
    execFileSync('mkfifo', [join(root, 'outside-pipe')]);
    await symlink(join(root, 'outside-pipe'), join(dir, 'linked-pipe.yaml'));
    await writeFile(join(dir, 'trust.yaml'), trustYaml('after-fifos', 'fifo.example'));
    await store.rescan();
    await next(store, (x) => tdOf(x, 'after-fifos') === 'fifo.example', 10_000);
    // And a change afterwards still arrives.
    await writeFile(join(dir, 'trust.yaml'), trustYaml('after-fifos', 'fifo2.example'));
    await next(store, (x) => tdOf(x, 'after-fifos') === 'fifo2.example', 10_000);
  });
});

test('a resource-named link to a procfs file (a stated size reading never gives) is refused naming it, not re-read every 50 ms for ever; the other files are served', async () => {
  await withStore(async (store, dir) => {
    await symlink('/proc/version', join(dir, 'kernel.yaml'));
    await writeFile(join(dir, 'trust.yaml'), trustYaml('beside-proc', 'proc.example'));
    await store.rescan();
    const s = await next(store, (x) => tdOf(x, 'beside-proc') === 'proc.example' && x.errors.length === 1);
    assert.match(s.errors[0]!.file, /kernel\.yaml$/);
    assert.match(s.errors[0]!.message, /file says it is 0 bytes but reading it gives other content, though nothing writes it \(a procfs or sysfs file\?\): not read/);
    const reads = store.reads;
    await sleep(500);
    assert.ok(store.reads - reads <= 1, `read ${store.reads - reads} times more in 500 ms`);
  });
});

test('a FIFO or device named like a resource file (or linked as one) is reported as not a regular file, not skipped unsaid; the other files are served', async () => {
  await withStore(async (store, dir, root) => {
    execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
    await symlink('/dev/zero', join(dir, 'zero.json'));
    execFileSync('mkfifo', [join(root, 'outside-pipe')]);
    await symlink(join(root, 'outside-pipe'), join(dir, 'linked-pipe.yml'));
    execFileSync('mkfifo', [join(dir, 'notes.txt')]); // not named like a resource file: none of our business
    await writeFile(join(dir, 'trust.yaml'), trustYaml('beside-pipes', 'pipes.example'));
    await store.rescan();
    const s = await next(store, (x) => tdOf(x, 'beside-pipes') === 'pipes.example' && x.errors.length === 3);
    assert.deepEqual(
      s.errors.map((e) => `${e.file.replace(/.*\//, '')}: ${e.message}`).sort(),
      ['linked-pipe.yml', 'pipe.yaml', 'zero.json'].map((f) => `${f}: not a regular file (a FIFO, device or socket, or a link to one): not read`),
    );
    // One that replaces a served file while watching is seen by its watch event, not the next safety scan (60 s here).
    await rm(join(dir, 'trust.yaml'));
    execFileSync('mkfifo', [join(dir, 'trust.yaml')]);
    const replaced = await next(store, (x) => tdOf(x, 'beside-pipes') === undefined && x.errors.length === 4);
    assert.ok(replaced.errors.some((e) => e.file.endsWith('trust.yaml') && /not a regular file/.test(e.message)));
  });
});

test('a file of 150,000 broken documents is one capped report (the first 50 and a summary), and later changes still arrive', { timeout: 120_000 }, async () => {
  await withStore(async (store, dir) => {
    // 2.3 MB, under --max-file-size; once crashed every later pass (an error list spread into push()).
    await writeFile(join(dir, 'many.yaml'), 'type: Nope\nname: x\n---\n'.repeat(150_000));
    await writeFile(join(dir, 'trust.yaml'), trustYaml('valid', 'many.example'));
    const s = await next(store, (x) => tdOf(x, 'valid') === 'many.example' && x.errors.length > 0, 60_000);
    const mine = s.errors.filter((e) => e.file.endsWith('many.yaml'));
    assert.equal(mine.length, MAX_ERRORS_PER_FILE + 1);
    assert.match(mine.at(-1)!.message, /^\.\.\. and 149950 more problems in this file/);
    await writeFile(join(dir, 'trust.yaml'), trustYaml('valid', 'later.example'));
    await next(store, (x) => tdOf(x, 'valid') === 'later.example', 30_000);
  });
});

test('a folder deleted and recreated at once (rm -rf conf.d && cp -r new conf.d) is watched again: a later edit in it is seen without the safety scan', async () => {
  await withStore(async (store, dir) => {
    const sub = join(dir, 'conf.d');
    await mkdir(sub);
    await writeFile(join(sub, 'trust.yaml'), trustYaml('sub', 'one.example'));
    await next(store, (s) => tdOf(s, 'sub') === 'one.example');
    // Removed and made again before the store looks: ext4 and tmpfs give the new folder the old
    // one's inode number, so its stat signature is the old one's.
    await rm(sub, { recursive: true });
    await mkdir(sub);
    await writeFile(join(sub, 'trust.yaml'), trustYaml('sub', 'two.example'));
    await next(store, (s) => tdOf(s, 'sub') === 'two.example');
    await writeFile(join(sub, 'trust.yaml'), trustYaml('sub', 'three.example'));
    // rescanMs is 60 s here: only a watch on the new folder sees this.
    await next(store, (s) => tdOf(s, 'sub') === 'three.example');
  });
});

test('a file whose open fails for a passing reason (EMFILE: descriptors all taken) is read again by the next scan, not refused until it changes', async () => {
  let fail = 0;
  const flaky = {
    open: async (path: string, flags: number) => {
      if (fail > 0 && path.endsWith('trust.yaml')) {
        fail--;
        throw Object.assign(new Error(`EMFILE: too many open files, open '${path}'`), { code: 'EMFILE', errno: -24, syscall: 'open', path });
      }
      return open(path, flags);
    },
  };
  await withStore(
    async (store) => {
      const first = await latest(store);
      assert.deepEqual(trusts(first), {});
      assert.match(first.errors.map((e) => e.message).join('\n'), /EMFILE/);
      // Descriptors free again; the file has not changed. The safety scan (stat calls) must read it.
      await store.rescan();
      const again = await latest(store);
      assert.deepEqual(trusts(again), { t: 't.example' });
      assert.deepEqual(again.errors, []);
    },
    { treeFs: flaky },
    async (dir) => {
      fail = 1;
      await writeFile(join(dir, 'trust.yaml'), trustYaml('t', 't.example'));
    },
  );
});

test('a folder link to /proc or /sys is refused naming it (not walked for ever through their endless link paths); the other files are served', { timeout: 60_000 }, async () => {
  await withStore(
    async (store) => {
      const s = await latest(store);
      assert.deepEqual(trusts(s), { t: 't.example' });
      const problems = s.errors.map((e) => `${e.file.replace(/.*resources\//, '')}: ${e.message}`).sort();
      assert.equal(problems.length, 2, problems.join('\n'));
      assert.match(problems[0]!, /^proc: .*procfs.*not followed/);
      assert.match(problems[1]!, /^sys: .*sysfs.*not followed/);
    },
    {},
    async (dir) => {
      await writeFile(join(dir, 'trust.yaml'), trustYaml('t', 't.example'));
      await symlink('/proc', join(dir, 'proc'));
      await symlink('/sys', join(dir, 'sys'));
    },
  );
});

test('a folder link to / or to the resource folder\'s own parent is a loop, reported and not walked: no file outside the resource folder is read, at start or when linked while watching', { timeout: 60_000 }, async () => {
  await withStore(
    async (store, dir, root) => {
      const s = await latest(store);
      assert.deepEqual(trusts(s), { t: 't.example' }, 'nothing from beside the resource folder');
      const problems = (x: ResourceSnapshot) => x.errors.map((e) => `${e.file.replace(/.*resources\//, '')}: ${e.message}`).sort();
      assert.deepEqual(problems(s), ['slash: symlink loop: links back to a folder above it, not followed', 'up: symlink loop: links back to a folder above it, not followed']);
      assert.equal(store.reads, 1, 'only trust.yaml was read');
      await symlink(root, join(dir, 'up-later'));
      const later = await next(store, (x) => x.errors.length === 3);
      assert.deepEqual(problems(later), ['slash', 'up-later', 'up'].map((l) => `${l}: symlink loop: links back to a folder above it, not followed`));
      assert.deepEqual(trusts(later), { t: 't.example' });
      assert.equal(store.reads, 1);
    },
    {},
    async (dir, root) => {
      await writeFile(join(dir, 'trust.yaml'), trustYaml('t', 't.example'));
      // Beside the resource folder: a walk through `up` would serve it.
      await writeFile(join(root, 'beside.yaml'), trustYaml('beside', 'beside.example'));
      await symlink('..', join(dir, 'up'));
      await symlink('/', join(dir, 'slash'));
    },
  );
});

test('resources given through a folder link: a link inside to the folder that holds that link is a loop too, not walked', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-layout-'));
  const real = join(root, 'real', 'resources');
  await mkdir(real, { recursive: true });
  await mkdir(join(root, 'etc'));
  await symlink(real, join(root, 'etc', 'resources'));
  await writeFile(join(real, 'trust.yaml'), trustYaml('t', 't.example'));
  await writeFile(join(root, 'etc', 'beside.yaml'), trustYaml('beside', 'beside.example'));
  await symlink(join(root, 'etc'), join(real, 'etc'));
  const store = await DirectoryStore.open({ resourcesDir: join(root, 'etc', 'resources'), stateDir: join(root, 'state'), rescanMs: 60_000 });
  try {
    await store.start();
    const s = await latest(store);
    assert.deepEqual(trusts(s), { t: 't.example' });
    assert.deepEqual(s.errors.map((e) => `${e.file.replace(/.*resources\//, '')}: ${e.message}`), ['etc: symlink loop: links back to a folder above it, not followed']);
  } finally {
    await store.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('the resource folder swapped as a whole (mv new resources, or its link switched to another release with ln -sfn) is read again at once, and edits in the new folder are seen', async (t) => {
  for (const how of ['rename', 'symlink'] as const) {
    await t.test(how, async () => {
      const root = await mkdtemp(join(tmpdir(), 'mesh-sds-layout-'));
      for (const [v, td] of [['v1', 'one.example'], ['v2', 'two.example']] as const) {
        await mkdir(join(root, v));
        await writeFile(join(root, v, 'trust.yaml'), trustYaml('t', td));
      }
      const dir = join(root, 'resources');
      if (how === 'rename') await rename(join(root, 'v1'), dir);
      else await symlink('v1', dir);
      // rescanMs 60 s: only a watch sees the swap.
      const store = await DirectoryStore.open({ resourcesDir: dir, stateDir: join(root, 'state'), rescanMs: 60_000 });
      try {
        await store.start();
        assert.equal(tdOf(await latest(store), 't'), 'one.example');
        if (how === 'rename') {
          await rename(dir, join(root, 'old'));
          await rename(join(root, 'v2'), dir);
        } else {
          await symlink('v2', join(root, 'resources.new'));
          await rename(join(root, 'resources.new'), dir);
        }
        await next(store, (s) => tdOf(s, 't') === 'two.example');
        await writeFile(join(dir, 'trust.yaml'), trustYaml('t', 'three.example'));
        await next(store, (s) => tdOf(s, 't') === 'three.example');
      } finally {
        await store.close();
        await rm(root, { recursive: true, force: true });
      }
    });
  }
});

test('a folder that cannot be watched (a full inotify watch table) is said once, naming it, the limit and the safety scan; its files are still read; once every folder is watched again, a new failure is said again', async () => {
  const failures: { folder: string; reason: string }[] = [];
  let full = true;
  const watchFs = {
    watch: (path: string, listener: Parameters<typeof watch>[1]) => {
      if (full && /team[^/]*$/.test(path)) throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
      return watch(path, listener);
    },
  };
  await withStore(
    async (store, dir) => {
      const team = join(dir, 'team');
      await mkdir(team);
      await writeFile(join(team, 'trust.yaml'), trustYaml('team', 'team.example'));
      await next(store, (s) => tdOf(s, 'team') === 'team.example');
      // More passes while the table stays full: no second line.
      await writeFile(join(dir, 'top.yaml'), trustYaml('top', 'top.example'));
      await next(store, (s) => tdOf(s, 'top') === 'top.example');
      await store.rescan();
      assert.equal(failures.length, 1, JSON.stringify(failures));
      assert.equal(failures[0]!.folder, team);
      assert.match(failures[0]!.reason, /cannot watch .*team \(ENOSPC\): the inotify watch limit \(sysctl fs\.inotify\.max_user_watches\) is reached; changes in it are seen by the safety scan every 60 s/);
      // Room again: the folder is watched at the next pass (an edit then arrives without a scan).
      full = false;
      await store.rescan();
      await writeFile(join(team, 'trust.yaml'), trustYaml('team', 'team2.example'));
      await next(store, (s) => tdOf(s, 'team') === 'team2.example');
      assert.equal(failures.length, 1);
      // Full again for a new folder: a new episode, said again.
      full = true;
      await mkdir(join(dir, 'team-b'));
      await writeFile(join(dir, 'team-b', 'trust.yaml'), trustYaml('team-b', 'b.example'));
      await next(store, (s) => tdOf(s, 'team-b') === 'b.example');
      assert.equal(failures.length, 2, JSON.stringify(failures));
      assert.equal(failures[1]!.folder, join(dir, 'team-b'));
    },
    { treeFs: watchFs, onWatchFailure: (folder, reason) => failures.push({ folder, reason }) },
  );
});

/** A file system on which `name` is replaced (renamed over, as `apply` writes) between each of its first `times` reads and the stat that follows it. */
function replacedWhileRead(name: string, times: number, version: (k: number) => string) {
  let replaced = 0;
  const opened = new Set<string>();
  const treeFs = {
    stat: async (path: string) => {
      if (path.endsWith(`${sep}${name}`) && opened.delete(path) && replaced < times) {
        replaced++;
        const tmp = `${path}.new-${replaced}`;
        writeFileSync(tmp, version(replaced));
        renameSync(tmp, path);
      }
      return stat(path);
    },
    open: async (path: string, flags: number) => {
      opened.add(path);
      return open(path, flags);
    },
  };
  return { treeFs, replaced: () => replaced };
}

/** trust.yaml (t0.example) and other.yaml beside it. */
async function trustAndOther(dir: string): Promise<void> {
  await writeFile(join(dir, 'trust.yaml'), trustYaml('t', 't0.example'));
  await writeFile(join(dir, 'other.yaml'), trustYaml('o', 'o.example'));
}

/** A folder holding trust.yaml (t0.example) alone, for a `readOnce`. */
async function inFolderWithTrust(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-readonce-'));
  try {
    await writeFile(join(root, 'trust.yaml'), trustYaml('t', 't0.example'));
    await fn(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test('a file replaced while it is read at start-up is read again at once: the first snapshot has it (it was left out until a recheck, and `import` copied the folder without it)', async () => {
  // Six replacements: more than the immediate re-reads, so the file waits for a recheck too.
  const fs = replacedWhileRead('trust.yaml', 6, (k) => trustYaml('t', `t${k}.example`));
  await withStore(
    async (store) => {
      assert.equal(fs.replaced(), 6);
      const first = await latest(store);
      assert.deepEqual(trusts(first), { o: 'o.example', t: 't6.example' });
      assert.equal(first.revision, 1, 'one snapshot, with the file: none was published without it');
      assert.equal(store.health().ok, true);
      assert.equal(store.incompleteRead(), undefined);
    },
    { treeFs: fs.treeFs },
    trustAndOther,
  );
  await inFolderWithTrust(async (root) => {
    const again = replacedWhileRead('trust.yaml', 3, (k) => trustYaml('t', `t${k}.example`));
    assert.deepEqual(trusts(await DirectoryStore.readOnce(root, undefined, again.treeFs)), { t: 't3.example' });
  });
});

test('a file that changes each time it is read keeps a first read waiting (2 s at most): then the server is not ready naming it, and `import`, `get`, `inspect` and `export-trust` refuse rather than use the folder without it', { timeout: 30_000 }, async () => {
  const endless = () => replacedWhileRead('trust.yaml', Infinity, (k) => trustYaml('t', `t${k}.example`));
  await withStore(
    async (store) => {
      assert.deepEqual(trusts(await latest(store)), { o: 'o.example' }, 'the other file is served');
      const h = store.health();
      assert.equal(h.ok, false);
      assert.match(h.detail, /file .*trust\.yaml changing each time it is read: not read yet/);
    },
    { treeFs: endless().treeFs },
    trustAndOther,
  );
  await inFolderWithTrust(async (root) => {
    const started = performance.now();
    await assert.rejects(DirectoryStore.readOnce(root, undefined, endless().treeFs), /file .*trust\.yaml kept changing while it was read \(for 2 s\): not read; try again once nothing writes to /);
    assert.ok(performance.now() - started < 10_000);
  });
  // The CLI's one-shot commands start their store through startWhole.
  await inFolderWithTrust(async (root) => {
    const store = await DirectoryStore.open({ resourcesDir: root, stateDir: join(root, 'state'), rescanMs: 60_000, treeFs: endless().treeFs });
    try {
      await assert.rejects(startWhole(store), /file .*trust\.yaml kept changing while it was read \(for 2 s\): not read; try again once nothing writes to /);
    } finally {
      await store.close();
    }
  });
});

test('a file that keeps changing while read after start-up (written while the server runs) does not make the server not ready: it is read once it settles', { timeout: 30_000 }, async () => {
  const fs = replacedWhileRead('late.yaml', 20, (k) => trustYaml('l', `l${k}.example`));
  await withStore(
    async (store, dir) => {
      await writeFile(join(dir, 'late.yaml'), trustYaml('l', 'l0.example'));
      await store.rescan();
      assert.equal(store.health().ok, true, store.health().detail);
      await next(store, (s) => tdOf(s, 'l') === 'l20.example', 10_000);
      assert.equal(store.health().ok, true);
    },
    { treeFs: fs.treeFs },
    trustAndOther,
  );
});
