// A hostile local user racing the agent: the out-dir does not exist yet, and between the agent's
// checks and its mkdir they put a symlink of theirs there (to a folder of ours, here one holding a
// cert.pem the agent must not replace). Node's fs is interposed to let them win the race every time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { lchownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { ScriptedSds } from './fake-sds.js';
import { identitySecret, makeSvid, trustSecret } from './svids.js';

test('a symlink another user puts at the out-dir while the agent makes it is refused, and nothing is written where it points', { timeout: 30_000, skip: process.getuid?.() === 0 ? false : 'giving a symlink to another user needs root' }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'mesh-sds-race-'));
  const outDir = join(root, 'out');
  const victim = join(root, 'victim');
  mkdirSync(victim);
  writeFileSync(join(victim, 'cert.pem'), 'precious\n');
  const a = makeSvid('A');
  const sds = await new ScriptedSds().start();
  sds.onStream = () => setImmediate(() => sds.push('1', [identitySecret(a), trustSecret(a)]));
  const realMkdir = fs.promises.mkdir;
  fs.promises.mkdir = (async (path: fs.PathLike, options?: fs.MakeDirectoryOptions) => {
    if (String(path) === outDir && !fs.existsSync(outDir)) {
      symlinkSync(victim, outDir);
      lchownSync(outDir, 12345, 12345);
    }
    return realMkdir(path, options);
  }) as typeof fs.promises.mkdir;
  syncBuiltinESMExports();
  const logs: string[] = [];
  try {
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir, log: (_l, m) => logs.push(m) });
    await assert.rejects(agent.done, /refusing to write through .*out: it is a symlink that uid 12345 owns/);
    assert.deepEqual(readdirSync(victim), ['cert.pem']);
    assert.equal(readFileSync(join(victim, 'cert.pem'), 'utf8'), 'precious\n');
  } finally {
    fs.promises.mkdir = realMkdir;
    syncBuiltinESMExports();
    sds.close();
    rmSync(root, { recursive: true, force: true });
  }
});
