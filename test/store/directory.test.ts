import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chown, mkdtemp, readdir, readFile, rm, truncate, writeFile, unlink, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, filter, timeout } from 'rxjs';
import { DirectoryStore } from '../../src/store/directory.js';
import { StoreWriteError } from '../../src/store/types.js';
import { MANAGED_HEADER, managedFileName, withResourceLocks } from '../../src/store/directory-writes.js';
import type { ResourceError, ResourceSnapshot } from '../../src/api/types.js';
import { makeCa } from '../helpers/openssl.js';
import { meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';

const ca = makeCa('dir-store');
const trustYaml = (name: string, td: string) => meshTrustYaml(name, td, [ca.certPem]);

async function withStore(fn: (store: DirectoryStore, dir: string) => Promise<void>) {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-dir-'));
  const dir = join(root, 'resources');
  const store = await DirectoryStore.open({ resourcesDir: dir, stateDir: join(root, 'state'), rescanMs: 60_000 });
  try {
    await store.start();
    await fn(store, dir);
  } finally {
    await store.close();
    await rm(root, { recursive: true, force: true });
  }
}

function next(store: DirectoryStore, pred: (s: ResourceSnapshot) => boolean) {
  return firstValueFrom(store.snapshots$.pipe(filter(pred), timeout(1000)));
}

const trustDomainOf = (s: ResourceSnapshot, name: string) => {
  const r = [...s.resources.values()].find((x) => x.kind === 'MeshTrust' && x.name === name);
  return r?.kind === 'MeshTrust' ? r.spec.trustDomain : undefined;
};

test('a file added, changed and deleted in the directory changes the snapshot within a second', async () => {
  await withStore(async (store, dir) => {
    await writeFile(join(dir, 'trust.yaml'), trustYaml('t1', 'one.example'));
    await next(store, (s) => trustDomainOf(s, 't1') === 'one.example');
    await writeFile(join(dir, 'trust.yaml'), trustYaml('t1', 'two.example'));
    await next(store, (s) => trustDomainOf(s, 't1') === 'two.example');
    await unlink(join(dir, 'trust.yaml'));
    await next(store, (s) => trustDomainOf(s, 't1') === undefined);
  });
});

test('a broken file keeps serving the last good version of its resources and reports the error', async () => {
  await withStore(async (store, dir) => {
    await writeFile(join(dir, 'a.yaml'), trustYaml('good', 'good.example'));
    await writeFile(join(dir, 'b.yaml'), trustYaml('other', 'other.example'));
    await next(store, (s) => trustDomainOf(s, 'good') === 'good.example' && trustDomainOf(s, 'other') === 'other.example');
    await writeFile(join(dir, 'a.yaml'), trustYaml('good', 'good.example').replace('caBundles:', 'caBundles: []\n  x:'));
    const broken = await next(store, (s) => s.errors.length > 0);
    assert.equal(trustDomainOf(broken, 'good'), 'good.example', 'last good version still served');
    assert.equal(trustDomainOf(broken, 'other'), 'other.example', 'other files unaffected');
    assert.match(broken.errors[0]!.file, /a\.yaml$/);
    await writeFile(join(dir, 'a.yaml'), '{{{ not yaml');
    const syntax = await next(store, (s) => s.errors.some((e) => /a\.yaml$/.test(e.file)) && s.revision > broken.revision);
    assert.equal(trustDomainOf(syntax, 'good'), 'good.example');
  });
});

test('a resource defined twice is served once and the duplicate is reported', async () => {
  await withStore(async (store, dir) => {
    await writeFile(join(dir, 'a.yaml'), trustYaml('dup', 'first.example'));
    await writeFile(join(dir, 'b.yaml'), trustYaml('dup', 'second.example'));
    const s = await next(store, (x) => x.errors.some((e) => /duplicate MeshTrust "dup"/.test(e.message)));
    assert.equal(trustDomainOf(s, 'dup'), 'first.example');
  });
});

test('a copy of a served resource added later is the duplicate: the served file keeps winning until it stops defining it', async () => {
  await withStore(async (store, dir) => {
    await writeFile(join(dir, 'b-real.yaml'), trustYaml('dup', 'real.example'));
    await next(store, (s) => trustDomainOf(s, 'dup') === 'real.example');
    // Sorts before the real file: by path alone it would take over.
    await writeFile(join(dir, 'a-draft.yaml'), trustYaml('dup', 'draft.example'));
    const s = await next(store, (x) => x.errors.some((e) => /duplicate MeshTrust "dup"/.test(e.message)));
    assert.equal(trustDomainOf(s, 'dup'), 'real.example');
    const dups = s.errors.filter((e) => /duplicate/.test(e.message));
    assert.equal(dups.length, 1);
    assert.match(dups[0]!.file, /a-draft\.yaml$/);
    assert.match(dups[0]!.message, /already defined in \S*b-real\.yaml; this copy is ignored/);
    // Edits to the served file still apply; once it no longer defines the resource, the copy serves.
    await writeFile(join(dir, 'b-real.yaml'), trustYaml('dup', 'real2.example'));
    await next(store, (x) => trustDomainOf(x, 'dup') === 'real2.example');
    // (Left out of a file just written: believed after the one-second grace for half-written files.)
    await writeFile(join(dir, 'b-real.yaml'), trustYaml('other', 'other.example'));
    const taken = await firstValueFrom(store.snapshots$.pipe(filter((x) => trustDomainOf(x, 'dup') === 'draft.example'), timeout(3000)));
    assert.equal(trustDomainOf(taken, 'other'), 'other.example');
    assert.deepEqual(taken.errors, []);
  });
});

test('apply writes each resource to a file of its own and refuses an invalid one without writing', async () => {
  await withStore(async (store, dir) => {
    assert.deepEqual(await store.apply(trustYaml('applied', 'ap.example'), '/somewhere/new-trust.yaml'), []);
    await stat(join(dir, 'meshtrust_default__applied.yaml'));
    await next(store, (s) => trustDomainOf(s, 'applied') === 'ap.example');
    const errors = await store.apply(trustYaml('bad', 'x'.repeat(254)), 'bad.yaml');
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /253/);
    await assert.rejects(stat(join(dir, 'meshtrust_default__bad.yaml')));
  });
});

test('apply refuses, writing nothing, a resource whose file would be over --max-file-size once its YAML aliases are written out, though its input is small', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-dir-'));
  try {
    const value = 'v'.repeat(1000);
    const labels = Array.from({ length: 10 }, (_, i) => (i === 0 ? `  l0: &v "${value}"` : `  l${i}: *v`)).join('\n');
    const text = `type: Dataplane\nname: aliased\nmesh: default\nlabels:\n${labels}\n`;
    const open = async (name: string, maxFileSize?: number) => {
      const store = await DirectoryStore.open({ resourcesDir: join(root, name), stateDir: join(root, `${name}-state`), rescanMs: 60_000, maxFileSize });
      await store.start();
      return store;
    };
    const roomy = await open('roomy');
    assert.deepEqual(await roomy.apply(text, 'in.yaml'), []);
    const written = (await stat(join(root, 'roomy', 'dataplane_default__aliased.yaml'))).size;
    await roomy.close();
    assert.ok(Buffer.byteLength(text) < written / 5, 'the input is a fraction of the file');
    const tight = await open('tight', written - 1);
    try {
      const errors = await tight.apply(text, 'in.yaml');
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(errors[0]!.message, `Dataplane "aliased" of mesh "default" would be written as ${written} bytes of YAML (aliases expanded), over the limit of ${written - 1} bytes (--max-file-size) the server enforces when reading a file: nothing written`);
      assert.deepEqual(await readdir(join(root, 'tight')), []);
    } finally {
      await tight.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('apply stores a resource whose name has the longest length names may have (253): a shortened file name, still its own; delete removes it', async () => {
  await withStore(async (store, dir) => {
    const long = (c: string) => `${c.repeat(250)}-${c}${c}`;
    for (const name of [long('a'), long('b')]) assert.deepEqual(await store.apply(trustYaml(name, `${name[0]}.example`), 'long.yaml'), []);
    await next(store, (s) => trustDomainOf(s, long('a')) === 'a.example' && trustDomainOf(s, long('b')) === 'b.example');
    const files = (await readdir(dir)).filter((f) => f.startsWith('meshtrust_'));
    assert.equal(files.length, 2);
    for (const f of files) assert.ok(Buffer.byteLength(f) <= 237, f);
    // A name that fitted before keeps its full file name (apply's existing files stay apply's).
    const fits = `${'c'.repeat(200)}-cc`;
    assert.deepEqual(await store.apply(trustYaml(fits, 'c.example'), 'fits.yaml'), []);
    await stat(join(dir, `meshtrust_default__${fits}.yaml`));
    assert.equal(await store.delete('MeshTrust', 'default', '', long('a')), true);
    await next(store, (s) => trustDomainOf(s, long('a')) === undefined && trustDomainOf(s, long('b')) === 'b.example');
  });
});

test('apply writes key material owner-only (a Secret, an inline CA private key: 0600) and other resources 0644, whatever file it replaces', async () => {
  await withStore(async (store, dir) => {
    const modeOf = async (f: string) => (await stat(join(dir, f))).mode & 0o777;
    const secret = 'type: Secret\nname: ca-key\nmesh: default\ndata: ' + Buffer.from(ca.keyPem).toString('base64') + '\n';
    const inlineCa = meshIdentityYaml('inline', { ca: { certPem: ca.certPem, keyPem: ca.keyPem }, trustDomain: 'inline.example' });
    // A world-readable file of the same resource first: replacing it must not keep its mode.
    assert.deepEqual(await store.apply(meshIdentityYaml('inline', { trustDomain: 'inline.example' }), 'first.yaml'), []);
    assert.equal(await modeOf('meshidentity_default__inline.yaml'), 0o644 & ~process.umask());
    assert.deepEqual(await store.apply(yamlDocs(secret, inlineCa, trustYaml('public', 'public.example')), 'keys.yaml'), []);
    assert.equal(await modeOf('secret_default__ca-key.yaml'), 0o600);
    assert.equal(await modeOf('meshidentity_default__inline.yaml'), 0o600);
    assert.equal(await modeOf('meshtrust_default__public.yaml'), 0o644 & ~process.umask());
  });
});

test('apply run as root gives its files to the owner of the resource folder (the server\'s user), so a key written 0600 stays readable by the server', { skip: process.getuid?.() === 0 ? false : 'needs root' }, async () => {
  await withStore(async (store, dir) => {
    await chown(dir, 12345, 23456);
    const secret = 'type: Secret\nname: ca-key\nmesh: default\ndata: ' + Buffer.from(ca.keyPem).toString('base64') + '\n';
    assert.deepEqual(await store.apply(yamlDocs(secret, trustYaml('public', 'public.example')), 'keys.yaml'), []);
    for (const f of ['secret_default__ca-key.yaml', 'meshtrust_default__public.yaml']) {
      const st = await stat(join(dir, f));
      assert.deepEqual([st.uid, st.gid], [12345, 23456], f);
    }
  });
});

test('the state directory is created with mode 0700 and state files 0600, first writer wins', async () => {
  await withStore(async (store) => {
    const [a, b] = await Promise.all([store.state.getOrCreate('ca/x', () => 'first'), store.state.getOrCreate('ca/x', () => 'second')]);
    assert.equal(a, b);
    const dir = (store.state as unknown as { dir: string }).dir;
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, 'ca', 'x'))).mode & 0o777, 0o600);
  });
});

test('a resource directory that goes away keeps the last state served and reports it; coming back resumes', async () => {
  await withStore(async (store, dir) => {
    await writeFile(join(dir, 'trust.yaml'), trustYaml('t1', 'one.example'));
    await next(store, (s) => trustDomainOf(s, 't1') === 'one.example');
    const { rename } = await import('node:fs/promises');
    await rename(dir, `${dir}.away`);
    await store.rescan();
    const gone = await next(store, (s) => s.errors.some((e) => /cannot be read \(ENOENT\): serving the last state/.test(e.message)));
    assert.equal(trustDomainOf(gone, 't1'), 'one.example', 'resources are not dropped');
    await rename(`${dir}.away`, dir);
    await store.rescan();
    const back = await next(store, (s) => s.errors.length === 0);
    assert.equal(trustDomainOf(back, 't1'), 'one.example');
  });
});

test('a file emptied and rewritten at once never publishes its resources as gone; one left empty does, after a second', async () => {
  await withStore(async (store, dir) => {
    await writeFile(join(dir, 'trust.yaml'), trustYaml('t1', 'one.example'));
    await next(store, (s) => trustDomainOf(s, 't1') === 'one.example');
    const seen: (string | undefined)[] = [];
    const sub = store.snapshots$.subscribe((s) => seen.push(trustDomainOf(s, 't1')));
    await writeFile(join(dir, 'trust.yaml'), '');
    await store.rescan();
    await new Promise((r) => setTimeout(r, 200));
    await writeFile(join(dir, 'trust.yaml'), trustYaml('t1', 'two.example'));
    await next(store, (s) => trustDomainOf(s, 't1') === 'two.example');
    assert.ok(!seen.includes(undefined), `never published without t1: ${JSON.stringify(seen)}`);
    await writeFile(join(dir, 'trust.yaml'), '');
    const started = Date.now();
    const emptied = await firstValueFrom(store.snapshots$.pipe(filter((s) => trustDomainOf(s, 't1') === undefined), timeout(3000)));
    sub.unsubscribe();
    assert.equal(trustDomainOf(emptied, 't1'), undefined);
    assert.ok(Date.now() - started >= 500, 'an empty file is believed only after the grace period');
  });
});

test('a multi-document file rewritten in place by a slow writer keeps its later documents until they are back; what it changes applies at once; one left out goes after a second', async () => {
  await withStore(async (store, dir) => {
    const file = join(dir, 'trust.yaml');
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await writeFile(file, yamlDocs(trustYaml('t1', 'one.example'), trustYaml('t2', 'two.example')));
    await next(store, (s) => trustDomainOf(s, 't2') === 'two.example');
    const seen: (string | undefined)[] = [];
    const sub = store.snapshots$.subscribe((s) => seen.push(trustDomainOf(s, 't2')));
    // The first document (changed), a pause longer than the debounce, then the first again twice
    // (still changing: the grace starts again with each write, well past the first second), then the rest.
    await writeFile(file, trustYaml('t1', 'one-b.example'));
    const partial = await next(store, (s) => trustDomainOf(s, 't1') === 'one-b.example');
    assert.equal(trustDomainOf(partial, 't2'), 'two.example');
    for (const td of ['one-c.example', 'one-d.example']) {
      await sleep(700);
      await writeFile(file, trustYaml('t1', td));
      await next(store, (s) => trustDomainOf(s, 't1') === td);
    }
    await sleep(700);
    await writeFile(file, yamlDocs(trustYaml('t1', 'one-d.example'), trustYaml('t2', 'two-b.example')));
    await next(store, (s) => trustDomainOf(s, 't2') === 'two-b.example');
    assert.ok(!seen.includes(undefined), `never published without t2: ${JSON.stringify(seen)}`);
    // Left out for good: dropped once the file has not changed for a second.
    await writeFile(file, trustYaml('t1', 'one-e.example'));
    const started = Date.now();
    const dropped = await firstValueFrom(store.snapshots$.pipe(filter((s) => trustDomainOf(s, 't2') === undefined), timeout(3000)));
    sub.unsubscribe();
    assert.equal(trustDomainOf(dropped, 't1'), 'one-e.example');
    assert.ok(Date.now() - started >= 500, 'a resource left out is believed gone only after the grace period');
  });
});

test('a draft copy already reported as a duplicate does not take over while the real file is rewritten slowly; the real file keeps winning', async () => {
  await withStore(async (store, dir) => {
    const real = join(dir, 'a.yaml');
    const draft = join(dir, 'z-draft.yaml');
    await writeFile(real, yamlDocs(trustYaml('keep', 'keep.example'), trustYaml('x', 'real.example')));
    await next(store, (s) => trustDomainOf(s, 'x') === 'real.example');
    await writeFile(draft, trustYaml('x', 'draft.example'));
    await next(store, (s) => s.errors.some((e) => e.file.endsWith('z-draft.yaml') && /duplicate/.test(e.message)));
    const seen: (string | undefined)[] = [];
    const sub = store.snapshots$.subscribe((s) => seen.push(trustDomainOf(s, 'x')));
    await writeFile(real, trustYaml('keep', 'keep-b.example')); // half-way through a rewrite
    await next(store, (s) => trustDomainOf(s, 'keep') === 'keep-b.example');
    await new Promise((r) => setTimeout(r, 200));
    await writeFile(real, yamlDocs(trustYaml('keep', 'keep-b.example'), trustYaml('x', 'real.example')));
    await new Promise((r) => setTimeout(r, 1500));
    sub.unsubscribe();
    assert.ok(!seen.includes('draft.example'), `the draft was never served: ${JSON.stringify(seen)}`);
    assert.equal(seen.at(-1), 'real.example');
  });
});

test('a resource moved from one file to another is served from its new file at once, with no duplicate reported (the grace holds only what nothing else defines)', async () => {
  await withStore(async (store, dir) => {
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    await writeFile(a, yamlDocs(trustYaml('stay', 'stay.example'), trustYaml('moving', 'old.example')));
    await next(store, (s) => trustDomainOf(s, 'moving') === 'old.example');
    const seen: ResourceSnapshot[] = [];
    const sub = store.snapshots$.subscribe((s) => seen.push(s));
    const started = Date.now();
    await Promise.all([writeFile(a, trustYaml('stay', 'stay.example')), writeFile(b, trustYaml('moving', 'new.example'))]);
    const moved = await next(store, (s) => trustDomainOf(s, 'moving') === 'new.example');
    sub.unsubscribe();
    assert.ok(Date.now() - started < 900, `served from the new file after ${Date.now() - started} ms, not after the grace`);
    assert.deepEqual(moved.errors.filter((e) => /duplicate/.test(e.message)), []);
    assert.deepEqual(seen.flatMap((x) => x.errors.filter((e) => /duplicate/.test(e.message))), [], 'no snapshot reported the move as a duplicate');
  });
});

test("the grace is measured on the store's own clock: a file whose mtime lies in the future drops a removed resource after about a second, not ten", async () => {
  await withStore(async (store, dir) => {
    const file = join(dir, 'trust.yaml');
    await writeFile(file, yamlDocs(trustYaml('t1', 'one.example'), trustYaml('t2', 'two.example')));
    await next(store, (s) => trustDomainOf(s, 't2') === 'two.example');
    await writeFile(file, trustYaml('t1', 'one.example'));
    const future = new Date(Date.now() + 3600_000);
    await utimes(file, future, future);
    const started = Date.now();
    await firstValueFrom(store.snapshots$.pipe(filter((s) => trustDomainOf(s, 't2') === undefined), timeout(8000)));
    assert.ok(Date.now() - started < 4000, `dropped after ${Date.now() - started} ms`);
  });
});

test('a file rewritten again and again during its grace is read once per change, not once per change and per pending recheck', async () => {
  await withStore(async (store, dir) => {
    const file = join(dir, 'trust.yaml');
    await writeFile(file, yamlDocs(trustYaml('t1', 'one.example'), trustYaml('t2', 'two.example')));
    await next(store, (s) => trustDomainOf(s, 't2') === 'two.example');
    const before = store.reads;
    const writes = 8;
    for (let i = 0; i < writes; i++) {
      await writeFile(file, trustYaml('t1', `one-${i}.example`));
      await new Promise((r) => setTimeout(r, 120));
    }
    await firstValueFrom(store.snapshots$.pipe(filter((s) => trustDomainOf(s, 't2') === undefined), timeout(5000)));
    const reads = store.reads - before;
    // Each write is read once (a read caught mid-write once more), then one recheck ends the grace.
    assert.ok(reads <= writes * 1.5 + 2, `${reads} reads for ${writes} writes`);
  });
});

test('two writers that read the same state and apply the same resource: exactly one conflict, nothing overwritten', async () => {
  await withStore(async (first, dir) => {
    const second = await DirectoryStore.open({ resourcesDir: dir, stateDir: join(dir, '..', 'state2'), rescanMs: 60_000 });
    await second.start();
    try {
      // Both read "absent" at their start; the version read is the condition of each write.
      const results = await Promise.all([first.apply(trustYaml('one', 'a.example'), 'a.yaml'), second.apply(trustYaml('one', 'b.example'), 'b.yaml')]);
      const conflicts = results.flat().filter((e) => e.conflict);
      assert.equal(conflicts.length, 1, JSON.stringify(results));
      assert.match(conflicts[0]!.message, /conflict: MeshTrust "one" of mesh "default" was changed by another writer \(absent when read, now version [0-9a-f]+\)/);
      const winner = results[0]!.length === 0 ? 'a.example' : 'b.example';
      await next(first, (s) => trustDomainOf(s, 'one') === winner);
      // Having seen the winner's version, the loser's next apply goes through.
      await second.rescan();
      assert.deepEqual(await second.apply(trustYaml('one', 'c.example'), 'c.yaml'), []);
      await next(first, (s) => trustDomainOf(s, 'one') === 'c.example');
      await assert.rejects(first.delete('MeshTrust', 'default', '', 'one', { resourceVersion: 'stale' }), /conflict: MeshTrust "one" of mesh "default" was changed since it was read \(version stale, now [0-9a-f]+\)/);
      assert.equal(await first.delete('MeshTrust', 'default', '', 'one'), true);
      await next(first, (s) => trustDomainOf(s, 'one') === undefined);
    } finally {
      await second.close();
    }
  });
});

/** Holds `path`'s resource lock as another writer would, runs `meanwhile` while it is held, then lets go. */
async function whileAnotherWriterHoldsLock(path: string, meanwhile: () => Promise<void>): Promise<void> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const held = new Promise<void>((r) => (locked = r));
  const other = withResourceLocks([path], async () => {
    locked();
    await released;
  });
  await held;
  try {
    await meanwhile();
  } finally {
    release();
    await other;
  }
}

test("a write's condition is the version the store knew when apply or delete was called, even if the other writer's file is seen while it waits for the lock", async () => {
  await withStore(async (store, dir) => {
    const target = join(dir, managedFileName({ kind: 'MeshTrust', mesh: 'default', namespace: '', name: 'one' }));
    // Another writer holds the resource's lock while this store's apply is called (it reads "absent").
    let applying!: Promise<ResourceError[]>;
    await whileAnotherWriterHoldsLock(target, async () => {
      applying = store.apply(trustYaml('one', 'mine.example'), 'mine.yaml');
      await writeFile(target, MANAGED_HEADER + trustYaml('one', 'theirs.example'));
      await next(store, (s) => trustDomainOf(s, 'one') === 'theirs.example'); // seen before the lock is granted
    });
    const errors = await applying;
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!.message, /conflict: MeshTrust "one" of mesh "default" was changed by another writer \(absent when read, now version [0-9a-f]+\)/);
    assert.match(await readFile(target, 'utf8'), /theirs\.example/);

    // The same for delete: called knowing the version above, while a newer one lands.
    let deleting!: Promise<boolean>;
    await whileAnotherWriterHoldsLock(target, async () => {
      deleting = store.delete('MeshTrust', 'default', '', 'one');
      await writeFile(target, MANAGED_HEADER + trustYaml('one', 'newer.example'));
      await next(store, (s) => trustDomainOf(s, 'one') === 'newer.example');
    });
    await assert.rejects(deleting, /conflict: MeshTrust "one" of mesh "default" was changed since it was read/);
    assert.match(await readFile(target, 'utf8'), /newer\.example/);
  });
});

test('delete of a name that is not a resource name is refused by the store itself: no file outside the directory is ever removed', async () => {
  await withStore(async (store, dir) => {
    const victim = join(dir, '..', 'precious.yaml');
    await writeFile(victim, 'not a mesh-sds file\n');
    for (const [mesh, name] of [['default', 'x/../../precious'], ['x/../..', 'precious'], ['default', '../precious']] as const) {
      await assert.rejects(store.delete('Dataplane', mesh, '', name, { force: true }), (e: Error) => e instanceof StoreWriteError && /not a valid/.test(e.message));
    }
    await stat(victim);
  });
});

test("apply and delete decide by the content of apply's file name: a file holding anything but that one resource is never replaced or removed, even with force", async () => {
  await withStore(async (store, dir) => {
    const target = join(dir, 'meshtrust_default__mine.yaml');
    const header = '# Written by `mesh-sds apply` (one resource per file): change it with mesh-sds apply or delete.\n';
    const contents = [
      trustYaml('other', 'other.example'), // a user's file that happens to bear the name
      header + trustYaml('other', 'other.example'), // apply's header copied, another resource
      header + trustYaml('mine', 'a.example') + '---\n' + trustYaml('other', 'other.example'), // this resource and another
    ];
    for (const text of contents) {
      await writeFile(target, text);
      await store.rescan();
      for (const force of [false, true]) {
        const errors = await store.apply(trustYaml('mine', 'mine.example'), 'new.yaml', { force });
        assert.equal(errors.length, 1, text);
        // (The last one defines "mine" among others: refused as any user's file defining it is.)
        const named = /meshtrust_default__mine\.yaml(, a file not written by apply| is not apply's file for MeshTrust "mine")/;
        assert.match(errors[0]!.message, named);
        await assert.rejects(store.delete('MeshTrust', 'default', '', 'mine', { force }), named);
      }
      assert.equal(await readFile(target, 'utf8'), text);
    }
    // Apply's own file (one resource, header) is still replaced and removed.
    await unlink(target);
    await store.rescan();
    assert.deepEqual(await store.apply(trustYaml('mine', 'one.example'), 'new.yaml'), []);
    assert.deepEqual(await store.apply(trustYaml('mine', 'two.example'), 'new.yaml'), []);
    assert.equal(await store.delete('MeshTrust', 'default', '', 'mine'), true);
    await assert.rejects(stat(target));
  });
});

test("a file far over --max-file-size at apply's file name is not read whole by apply or delete: it is named as not apply's file and left alone", async () => {
  await withStore(async (store, dir) => {
    const target = join(dir, 'meshtrust_default__mine.yaml');
    // 3 GiB, sparse: readFile refused it with a RangeError naming no file (over 2 GiB), and read one under that whole.
    await writeFile(target, '');
    await truncate(target, 3 * 1024 ** 3);
    await store.rescan();
    for (const force of [false, true]) {
      const errors = await store.apply(trustYaml('mine', 'mine.example'), 'new.yaml', { force });
      assert.equal(errors.length, 1);
      assert.match(errors[0]!.message, /meshtrust_default__mine\.yaml is not apply's file for MeshTrust "mine"/);
      await assert.rejects(store.delete('MeshTrust', 'default', '', 'mine', { force }), /meshtrust_default__mine\.yaml is not apply's file for MeshTrust "mine"/);
    }
    assert.equal((await stat(target)).size, 3 * 1024 ** 3);
  });
});

test('a steady stream of writes (one file every 10 ms) cannot hold changes back: the first file is published while the writes go on', async () => {
  await withStore(async (store, dir) => {
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing && i < 300; i++) {
        await writeFile(join(dir, `t${i}.yaml`), trustYaml(`t${i}`, `d${i}.example`));
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      const first = await next(store, (s) => trustDomainOf(s, 't0') === 'd0.example');
      assert.ok(writing, 'published while the writes went on');
      assert.ok(trustDomainOf(first, 't0'));
    } finally {
      writing = false;
      await writer;
    }
  });
});

test('changes that keep coming (one file every 40 ms) are read a few at a time: fewer snapshots than changes, the last one still published', async () => {
  await withStore(async (store, dir) => {
    let snapshots = 0;
    const sub = store.snapshots$.subscribe(() => snapshots++);
    try {
      const before = snapshots;
      for (let i = 0; i < 12; i++) {
        await writeFile(join(dir, `c${i}.yaml`), trustYaml(`c${i}`, `c${i}.example`));
        await new Promise((r) => setTimeout(r, 40));
      }
      await next(store, (s) => trustDomainOf(s, 'c11') === 'c11.example');
      const published = snapshots - before;
      assert.ok(published < 12, `12 changes 40 ms apart were ${published} snapshots: gathered while busy`);
      assert.ok(published >= 2, 'not held until the writes stopped');
    } finally {
      sub.unsubscribe();
    }
  });
});
