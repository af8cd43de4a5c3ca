// Commands that only read (get, inspect, export-trust) or need what is already there (token
// revoke) refuse a directory that does not exist, naming it, instead of creating it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';

async function root(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-ro-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('get, inspect and export-trust with a missing --resources directory fail naming it, and do not create it', async (t) => {
  const dir = await root(t);
  const missing = join(dir, 'typo', 'resources');
  const flags = ['--resources', missing, '--state-dir', join(dir, 'state')];
  for (const args of [['get', 'meshidentity'], ['inspect', '--dataplane', 'default.web'], ['export-trust', '--mesh', 'default']]) {
    const r = await meshSds([...args, ...flags]);
    assert.equal(r.code, 1, `${args[0]}: ${r.stdout}`);
    assert.match(r.stderr, new RegExp(`--resources ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such directory`), args[0]);
    assert.equal(r.stdout, '', args[0]);
  }
  await assert.rejects(stat(join(dir, 'typo')), 'nothing was created');
});

test('token revoke against a state dir that is missing or holds no token key fails naming it, and creates no key', async (t) => {
  const dir = await root(t);
  const token = 'eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln'; // any token: the missing key is found first
  const missing = join(dir, 'typo-state');
  const r = await meshSds(['token', 'revoke', '--state-dir', missing], { input: token });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /--state-dir .*typo-state: no such directory/);
  await assert.rejects(stat(missing), 'nothing was created');
  const empty = join(dir, 'empty-state');
  await mkdir(empty);
  const e = await meshSds(['token', 'revoke', '--state-dir', empty], { input: token });
  assert.equal(e.code, 1, e.stdout);
  assert.match(e.stderr, /--state-dir .*empty-state holds no token key/);
  assert.deepEqual(await readdir(empty, { recursive: true }), [], 'no key was created');
});
