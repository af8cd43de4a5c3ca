import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { symlinkSync, writeFileSync } from 'node:fs';
import { DataSourceError, MAX_DATA_SOURCE_FILE_BYTES, resolveDataSource } from '../../src/pki/data-source.js';
import { tempDir, type TempDir } from './helpers.js';

describe('resolveDataSource', () => {
  let dir: TempDir;
  before(() => (dir = tempDir()));
  after(() => dir.cleanup());

  const fails = (message: string | RegExp) => (e: unknown) => {
    assert.ok(e instanceof DataSourceError, String(e));
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  };

  it('reads a File by absolute path and refuses relative or missing paths', async () => {
    const p = dir.file('ca.pem', 'PEM-DATA\n');
    assert.equal(await resolveDataSource({ type: 'File', file: { path: p } }), 'PEM-DATA\n');
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: 'rel/ca.pem' } }), fails('file "rel/ca.pem": path must be absolute'));
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: `${dir.path}/missing.pem` } }), fails(`file "${dir.path}/missing.pem" cannot be read: no such file or directory (ENOENT)`));
  });

  it('a key pasted into a File path (meant for InsecureInline) is described in the error, never quoted', async () => {
    const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    for (const path of [pem, `/${pem}`]) {
      const err = await resolveDataSource({ type: 'File', file: { path } }).catch((e: unknown) => e);
      assert.ok(err instanceof DataSourceError, String(err));
      assert.match(err.message, /^file <not shown: \d+ characters, looks like a PEM private key>(: path must be absolute| cannot be read: no such file or directory \(ENOENT\))$/);
      assert.ok(!err.message.includes('PRIVATE KEY') && !err.message.includes(pem.split('\n')[1]!.slice(0, 20)), err.message);
    }
  });

  it('refuses a File that no CA file can be — a FIFO, a device, a huge or non-UTF-8 file — at once, naming why', async () => {
    // A FIFO without a writer used to hang one of libuv's four threads for good (every file read
    // of the server waits behind them), /dev/zero to be read until memory ran out.
    const fifo = `${dir.path}/ca.fifo`;
    execFileSync('mkfifo', [fifo]);
    const started = Date.now();
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: fifo } }), fails(`file "${fifo}" cannot be read: not a regular file`));
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: '/dev/zero' } }), fails('file "/dev/zero" cannot be read: not a regular file'));
    assert.ok(Date.now() - started < 2000);
    const big = dir.file('big.pem', 'A'.repeat(MAX_DATA_SOURCE_FILE_BYTES + 1));
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: big } }), fails(new RegExp(`file ".*big.pem" cannot be read: file is ${MAX_DATA_SOURCE_FILE_BYTES + 1} bytes, larger than the limit of ${MAX_DATA_SOURCE_FILE_BYTES} bytes: not read$`)));
    const latin1 = dir.file('latin1.pem', '');
    writeFileSync(latin1, Buffer.from([0x2d, 0x2d, 0xe9, 0x2d]));
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: latin1 } }), fails(/cannot be read: file is not valid UTF-8: invalid byte 0xe9 at byte offset 2/));
    const link = `${dir.path}/link.pem`;
    symlinkSync(dir.file('target.pem', 'LINKED\n'), link);
    assert.equal(await resolveDataSource({ type: 'File', file: { path: link } }), 'LINKED\n', 'a symlink to a regular file is read');
  });

  it('reads an EnvVar from the given environment, naming a missing variable', async () => {
    const env = { MESH_CA_KEY: 'KEY-DATA' };
    assert.equal(await resolveDataSource({ type: 'EnvVar', envVar: { name: 'MESH_CA_KEY' } }, { env }), 'KEY-DATA');
    await assert.rejects(resolveDataSource({ type: 'EnvVar', envVar: { name: 'NOPE_X' } }, { env }), fails('environment variable NOPE_X is not set'));
    await assert.rejects(resolveDataSource({ type: 'EnvVar', envVar: { name: 'EMPTY' } }, { env: { EMPTY: '' } }), fails('environment variable EMPTY is not set'));
  });

  it('falls back to process.env when no env is given', async () => {
    process.env.MESH_SDS_TEST_DS = 'from-process';
    try {
      assert.equal(await resolveDataSource({ type: 'EnvVar', envVar: { name: 'MESH_SDS_TEST_DS' } }), 'from-process');
    } finally {
      delete process.env.MESH_SDS_TEST_DS;
    }
  });

  it('returns InsecureInline values verbatim', async () => {
    assert.equal(await resolveDataSource({ type: 'InsecureInline', insecureInline: { value: 'inline\nvalue' } }), 'inline\nvalue');
  });

  it('resolves a Secret through ctx.secret and names a missing one', async () => {
    const asked: string[] = [];
    const secret = (name: string) => {
      asked.push(name);
      return name === 'ca-key' ? Buffer.from('SECRET-DATA') : undefined;
    };
    assert.equal(await resolveDataSource({ type: 'Secret', secretRef: { kind: 'Secret', name: 'ca-key' } }, { secret }), 'SECRET-DATA');
    await assert.rejects(resolveDataSource({ type: 'Secret', secretRef: { kind: 'Secret', name: 'gone' } }, { secret }), fails('secret "gone" not found'));
    await assert.rejects(resolveDataSource({ type: 'Secret', secretRef: { kind: 'Secret', name: 'x' } }), fails('secret "x" not found'));
    assert.deepEqual(asked, ['ca-key', 'gone']);
  });
});
