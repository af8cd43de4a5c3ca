// bin/mesh-sds.js runs the CLI from JavaScript transpiled once per state of its sources
// (scripts/cli-build.js). What must hold: the same sources reuse their build, a changed source or a
// copied checkout is never served from an old build, a build is never rewritten under a server
// running from it, two processes starting at once agree on one build, one left incomplete is not
// used, and a checkout that cannot hold one gets none (the bin then runs the sources under tsx).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, copyFileSync, cpSync, lstatSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cliBuild, sourceDigest } from '../../scripts/cli-build.js';
import { BIN } from './run.js';

const repo = dirname(dirname(realpathSync(BIN)));

/** A repository of one CLI file that prints `said`, with the real build recipe and esbuild. */
function fakeRepo(said: string): string {
  const root = mkdtempSync(join(tmpdir(), 'mesh-sds-cli-build-'));
  mkdirSync(join(root, 'src', 'cli'), { recursive: true });
  mkdirSync(join(root, 'scripts'));
  writeMain(root, said);
  writeFileSync(join(root, 'package.json'), '{ "type": "module" }\n');
  for (const f of ['scripts/cli-build.js', 'tsconfig.json']) copyFileSync(join(repo, f), join(root, f));
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'));
  return root;
}

function writeMain(root: string, said: string): void {
  writeFileSync(join(root, 'src', 'cli', 'main.ts'), `const said: string = ${JSON.stringify(said)};\nconsole.log(said);\n`);
}

const runMain = (build: string) => execFileSync(process.execPath, [join(build, 'src', 'cli', 'main.js')], { encoding: 'utf8' }).trim();

test('the CLI is transpiled once per state of its sources: the same sources reuse their build, a changed source gets a new one, and the old one is left as it was', async (t) => {
  const root = fakeRepo('v1');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const first = await cliBuild(root);
  assert.ok(first, 'no build');
  assert.equal(first, join(root, '.build', 'cli', sourceDigest(root)));
  assert.equal(runMain(first), 'v1');
  const built = statSync(join(first, 'src', 'cli', 'main.js'));

  assert.equal(await cliBuild(root), first);
  assert.equal(statSync(join(first, 'src', 'cli', 'main.js')).ino, built.ino, 'the same sources were built again');

  writeMain(root, 'v2');
  const second = await cliBuild(root);
  assert.ok(second);
  assert.notEqual(second, first);
  assert.equal(runMain(second), 'v2');
  // A server started from the first build keeps its files (its workers are started from them again).
  assert.equal(runMain(first), 'v1');
});

test('two processes starting at once on new sources end up with one build and no leftovers', async (t) => {
  const root = fakeRepo('together');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const script = `import(${JSON.stringify(pathToFileURL(join(repo, 'scripts', 'cli-build.js')).href)}).then((m) => m.cliBuild(${JSON.stringify(root)})).then((d) => console.log(d))`;
  const children = [0, 1, 2].map(() => spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const outputs = await Promise.all(
    children.map(async (c) => {
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      await once(c, 'exit');
      return out.trim();
    }),
  );
  const expected = join(root, '.build', 'cli', sourceDigest(root));
  assert.deepEqual(outputs, [expected, expected, expected]);
  assert.deepEqual(readdirSync(join(root, '.build', 'cli')), [sourceDigest(root)]);
  assert.equal(runMain(expected), 'together');
});

test('a checkout that cannot hold a build (its .build is a file) gets none instead of an error', async (t) => {
  const root = fakeRepo('unused');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, '.build'), 'not a folder');
  assert.equal(await cliBuild(root), undefined);
  assert.equal(existsSync(join(root, '.build', 'cli')), false);
});

test('root building in a checkout someone else owns hands .build, the build and every file in it to that owner, so their own runs can still make and clear builds', { skip: process.getuid?.() === 0 ? false : 'needs root (it hands files to another owner)' }, async (t) => {
  const root = fakeRepo('owned');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const [uid, gid] = [4242, 4343];
  for (const p of [root, join(root, 'src'), join(root, 'src', 'cli'), join(root, 'scripts')]) chownSync(p, uid, gid);
  const build = await cliBuild(root);
  assert.ok(build, 'no build');
  const owners = (p: string) => {
    const st = lstatSync(p);
    return `${st.uid}:${st.gid}`;
  };
  const mine = `${uid}:${gid}`;
  for (const p of [join(root, '.build'), join(root, '.build', 'cli'), build, join(build, 'src', 'cli', 'main.js'), join(build, 'node_modules'), join(build, '.mesh-sds-cli-build')]) {
    assert.equal(owners(p), mine, `${p} is not the checkout owner's`);
  }
  // A checkout root owns is left to root.
  const rootOwned = fakeRepo('root');
  t.after(() => rmSync(rootOwned, { recursive: true, force: true }));
  const own = await cliBuild(rootOwned);
  assert.ok(own);
  assert.equal(owners(join(rootOwned, '.build')), '0:0');
  assert.equal(owners(join(own, 'src', 'cli', 'main.js')), '0:0');
});

test('a checkout copied elsewhere (its .build with it) gets a build of its own, not the one the copy carries (whose links lead back to the original)', async (t) => {
  const root = fakeRepo('unused');
  const copy = `${root}-copy`;
  t.after(() => [root, copy].forEach((d) => rmSync(d, { recursive: true, force: true })));
  // The CLI prints a file beside it: linked into a build, so it is read from the checkout the build links to.
  writeFileSync(join(root, 'src', 'cli', 'main.ts'), "import { readFileSync } from 'node:fs';\nconsole.log(readFileSync(new URL('./said.txt', import.meta.url), 'utf8'));\n");
  writeFileSync(join(root, 'src', 'cli', 'said.txt'), 'the original');
  const first = await cliBuild(root);
  assert.ok(first);
  assert.equal(runMain(first), 'the original');
  cpSync(root, copy, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(copy, 'src', 'cli', 'said.txt'), 'the copy');
  const second = await cliBuild(copy);
  assert.ok(second !== undefined && second.startsWith(join(copy, '.build', 'cli')), second);
  assert.notEqual(second.slice(copy.length), first.slice(root.length));
  assert.equal(runMain(second), 'the copy');
});

test('a file added beside the sources (not TypeScript, so linked) makes a new build: an old one would not have it', async (t) => {
  const root = fakeRepo('v1');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const before = sourceDigest(root);
  writeFileSync(join(root, 'src', 'cli', 'data.json'), '{"a":1}');
  const added = sourceDigest(root);
  assert.notEqual(added, before);
  const build = await cliBuild(root);
  assert.ok(build && existsSync(join(build, 'src', 'cli', 'data.json')));
  // Its contents are read through the link: a change to them needs no new build.
  writeFileSync(join(root, 'src', 'cli', 'data.json'), '{"a":2}');
  assert.equal(sourceDigest(root), added);
});

test('a build left incomplete (its main.js removed by hand) is moved aside and made again, not run', async (t) => {
  const root = fakeRepo('whole');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const build = await cliBuild(root);
  assert.ok(build);
  unlinkSync(join(build, 'src', 'cli', 'main.js'));
  assert.equal(await cliBuild(root), build);
  assert.equal(runMain(build), 'whole');
});

test('the bin runs the CLI from its build in .build/cli/<digest>, and the TypeScript under tsx when MESH_SDS_RUN_TSX=1 or no build can be made', async (t) => {
  const root = fakeRepo('unused');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'bin'));
  copyFileSync(join(repo, 'bin', 'mesh-sds.js'), join(root, 'bin', 'mesh-sds.js'));
  // The CLI says which file ran: the build's main.js or the source's main.ts.
  writeFileSync(join(root, 'src', 'cli', 'main.ts'), 'const ran: string = import.meta.url;\nconsole.log(ran);\n');
  const bin = (env: NodeJS.ProcessEnv) => execFileSync(process.execPath, [join(root, 'bin', 'mesh-sds.js')], { encoding: 'utf8', env: { ...process.env, ...env } }).trim();
  const built = join(root, '.build', 'cli', sourceDigest(root), 'src', 'cli', 'main.js');
  assert.equal(bin({ MESH_SDS_RUN_TSX: undefined }), pathToFileURL(built).href);
  assert.equal(bin({ MESH_SDS_RUN_TSX: '1' }), pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
  rmSync(join(root, '.build'), { recursive: true, force: true });
  writeFileSync(join(root, '.build'), 'not a folder');
  assert.equal(bin({ MESH_SDS_RUN_TSX: undefined }), pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
});
