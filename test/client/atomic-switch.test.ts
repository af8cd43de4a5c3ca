// The files are switched as a whole (a `..data` symlink renamed over, as Kubernetes does): a reader
// reading cert.pem and key.pem in a tight loop while the agent rotates never finds a key beside a
// certificate of another pair.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { writeAtomically } from '../../src/client/atomic-dir.js';
import type { TestCa } from '../helpers/openssl.js';
import { identitySecret, makeSvid, trustSecret } from './svids.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

/**
 * Reads cert (t1), key (t2), cert (t3) until told to stop. When cert t1 equals cert t3 and the key
 * does not match it, the directory itself held a mismatched pair at t2.
 */
const READER = `
const { readFileSync, existsSync } = require('node:fs');
const { X509Certificate, createPrivateKey } = require('node:crypto');
const [dir, stop] = process.argv.slice(1);
let reads = 0, torn = 0;
while (!existsSync(stop)) {
  let c1, k, c3;
  try { c1 = readFileSync(dir + '/cert.pem', 'utf8'); k = readFileSync(dir + '/key.pem', 'utf8'); c3 = readFileSync(dir + '/cert.pem', 'utf8'); } catch { continue; }
  if (c1 !== c3) continue;
  reads++;
  try { if (!new X509Certificate(c1).checkPrivateKey(createPrivateKey(k))) torn++; } catch { reads--; }
}
console.log(JSON.stringify({ reads, torn }));
`;

describe('atomic switch of the whole file set', () => {
  let root: string;
  let cas: TestCa[];
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-atomic-'));
    cas = ['A', 'B', 'C'].map((n) => makeSvid(n));
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const identity = identitySecret;
  const trust = trustSecret;

  it('a reader never sees a key beside another pair\'s certificate over 60 rotations', { timeout: 120_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'rotating');
    const stop = join(root, 'stop-reader');
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('0', [identity(cas[0]!), trust(cas[0]!)]);
      await agent.firstWrite;
      const reader = spawn(process.execPath, ['-e', READER, dir, stop], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const ended = new Promise<void>((r) => reader.on('exit', () => r()));
      for (let v = 1; v <= 60; v++) {
        sds.push(String(v), [identity(cas[v % cas.length]!)]);
        await waitFor(() => sds.answerTo(String(v)) !== undefined, `the answer to version ${v}`);
        await new Promise((r) => setTimeout(r, 5)); // let the reader run between rotations
      }
      writeFileSync(stop, '');
      await ended;
      const result = JSON.parse(out) as { reads: number; torn: number };
      assert.ok(result.reads > 0, out);
      assert.equal(result.torn, 0, `mismatched pairs seen: ${out}`);
      // The layout Envoy's watched_directory expects: names linked into ..data, one version directory.
      for (const f of ['cert.pem', 'key.pem', 'bundle.pem', 'svid.json']) assert.equal(readlinkSync(join(dir, f)), `..data/${f}`);
      const versions = readdirSync(dir).filter((n) => n.startsWith('..') && n !== '..data');
      assert.deepEqual(versions, [readlinkSync(join(dir, '..data'))], 'old version directories are removed');
      assert.equal(statSync(join(dir, 'key.pem')).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, '..data')).mode & 0o777, 0o755);
    } finally {
      writeFileSync(stop, '');
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });

  it('upgrading plain files an older version wrote to links never shows a reader the new certificate beside the old key (200 upgrades)', { timeout: 120_000 }, async () => {
    const dir = join(root, 'upgrading');
    const stop = join(root, 'stop-upgrade-reader');
    const reader = spawn(process.execPath, ['-e', READER, dir, stop], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const ended = new Promise<void>((r) => reader.on('exit', () => r()));
    try {
      for (let i = 0; i < 200; i++) {
        // The old layout, put in place whole (a reader never finds half-written plain files).
        const staged = `${dir}.plain`;
        rmSync(staged, { recursive: true, force: true });
        mkdirSync(staged);
        const [old, next] = [cas[i % 3]!, cas[(i + 1) % 3]!];
        writeFileSync(join(staged, 'cert.pem'), old.certPem);
        writeFileSync(join(staged, 'key.pem'), old.keyPem, { mode: 0o600 });
        rmSync(dir, { recursive: true, force: true });
        renameSync(staged, dir);
        await writeAtomically(dir, [
          { file: 'cert.pem', data: next.certPem, mode: 0o644 },
          { file: 'key.pem', data: next.keyPem, mode: 0o600 },
        ]);
        assert.equal(readlinkSync(join(dir, 'key.pem')), '..data/key.pem');
        assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), next.keyPem);
        await new Promise((r) => setTimeout(r, 1));
      }
    } finally {
      writeFileSync(stop, '');
      await ended;
    }
    const result = JSON.parse(out) as { reads: number; torn: number };
    assert.ok(result.reads > 0, out);
    assert.equal(result.torn, 0, `mismatched pairs seen: ${out}`);
  });

  it('plain files an older version wrote are replaced by links into ..data', { timeout: 30_000 }, async () => {
    const sds = await new ScriptedSds().start();
    sds.onStream = () => setImmediate(() => sds.push('1', [identity(cas[1]!), trust(cas[1]!)]));
    const dir = join(root, 'upgrade');
    mkdirSync(dir);
    writeFileSync(join(dir, 'cert.pem'), cas[0]!.certPem);
    writeFileSync(join(dir, 'key.pem'), cas[0]!.keyPem, { mode: 0o600 });
    try {
      const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir });
      await agent.done;
      assert.ok(lstatSync(join(dir, 'cert.pem')).isSymbolicLink());
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), cas[1]!.certPem);
      assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), cas[1]!.keyPem);
    } finally {
      sds.close();
    }
  });

  it('upgrading a plain key.pem of mode 0644 never writes a copy of a key wider than 0600, not even the version that holds the old one', { timeout: 30_000 }, async () => {
    const dir = join(root, 'upgrade-open-key');
    mkdirSync(dir);
    writeFileSync(join(dir, 'cert.pem'), cas[0]!.certPem);
    writeFileSync(join(dir, 'key.pem'), cas[0]!.keyPem, { mode: 0o644 });
    chmodSync(join(dir, 'key.pem'), 0o644); // not the umask's
    const keyModes = () =>
      readdirSync(dir)
        .filter((n) => n.startsWith('..') && n !== '..data')
        .map((v) => `${v}/key.pem ${(statSync(join(dir, v, 'key.pem')).mode & 0o777).toString(8)}`);
    let seenBeforeSwitch: string[] = [];
    await writeAtomically(dir, [
      { file: 'cert.pem', data: cas[1]!.certPem, mode: 0o644 },
      { file: 'key.pem', data: cas[1]!.keyPem, mode: 0o600 },
    ], async () => {
      seenBeforeSwitch = keyModes();
    });
    // Before the switch: the version holding the old key (the names' first target) and the new one.
    assert.equal(seenBeforeSwitch.length, 2, seenBeforeSwitch.join(', '));
    for (const m of seenBeforeSwitch) assert.match(m, / 600$/);
    assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), cas[1]!.keyPem);
    assert.equal(statSync(join(dir, 'key.pem')).mode & 0o777, 0o600);
  });
});
