// Twenty `mesh-sds token revoke` processes at once lose no revocation (issue 11 point 5).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';
import { FileStateStore } from '../../src/store/file-state.js';
import { REVOKED_STATE_KEY, TokenAuthority } from '../../src/server/tokens.js';
import type { StateStore } from '../../src/store/types.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { openSealedState } from '../../src/store/state-setup.js';
import { PG_URL, openFreshStore } from '../store-postgres/helpers.js';

const N = 20;

async function twentyRevokersLoseNone(state: StateStore, storeArgs: string[], dir: string): Promise<void> {
  const ta = await TokenAuthority.open(state);
  const files: string[] = [];
  const jtis: string[] = [];
  for (let i = 0; i < N; i++) {
    const token = await ta.generate({ mesh: 'default', name: `dp-${i}`, validForMs: 3_600_000 });
    jtis.push((JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti);
    files.push(join(dir, `token-${i}`));
    await writeFile(files[i]!, token, { mode: 0o600 });
  }
  const runs = await Promise.all(files.map((f) => meshSds(['token', 'revoke', ...storeArgs, '--token-file', f])));
  runs.forEach((r, i) => assert.equal(r.code, 0, `revoker ${i} failed: ${r.stderr}`));
  const stored = (JSON.parse((await state.get(REVOKED_STATE_KEY))!) as { jti: string }[]).map((e) => e.jti);
  assert.deepEqual([...stored].sort(), [...jtis].sort());
}

test('twenty token revoke processes at once against one state dir lose none', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-revoke-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const stateDir = join(dir, 'state');
  await twentyRevokersLoseNone(await FileStateStore.open(stateDir), ['--state-dir', stateDir], dir);
});

test('twenty token revoke processes at once against one Postgres schema lose none', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-revoke-'));
  const { store, schema } = await openFreshStore(t, [dir]);
  const url = `${PG_URL}?schema=${schema}`;
  // Postgres keeps the token MAC key sealed: this process and the revokers share the state key.
  const keyFile = join(dir, 'state.key');
  await generateStateKeyFile(keyFile);
  const state = await openSealedState(store.state, { stateKeyFile: keyFile, postgres: true });
  await twentyRevokersLoseNone(state, ['--store', url, '--state-key-file', keyFile], dir);
});
