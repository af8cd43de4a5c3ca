import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DataSourceError, resolveDataSource } from '../../src/pki/data-source.js';
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
    await assert.rejects(resolveDataSource({ type: 'File', file: { path: `${dir.path}/missing.pem` } }), fails(`file "${dir.path}/missing.pem" cannot be read: ENOENT`));
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
