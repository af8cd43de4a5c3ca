// `token revoke` given something that is not quite a token says what is wrong with it, never the
// token: "malformed token" alone left an operator guessing at a wrapped line or quotes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';

test('token revoke names a wrapped, quoted, cut or foreign token for what it is, without printing it, and revokes nothing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-revoke-input-'));
  try {
    const gen = async (state: string) => {
      const r = await meshSds(['token', 'generate', '--mesh', 'default', '--name', 'a', '--state-dir', state, '--create-key']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n').at(-1)!;
    };
    const state = join(root, 'state');
    const token = await gen(state);
    const foreign = await gen(join(root, 'other'));
    const cases: [string, string, RegExp][] = [
      ['wrapped', `${token.slice(0, 80)}\n${token.slice(80)}`, /not a token: the token holds whitespace at character 81 of \d+ \(a line break where a terminal wrapped it\?\)/],
      ['quoted', `"${token}"`, /not a token: the token is quoted/],
      ['header', `authorization: Bearer ${token}`, /not a token: give the token alone, not the "authorization:" header/],
      ['cut', token.slice(0, token.lastIndexOf('.')), /a token is three base64url parts joined by '.', this text has 2/],
      ['foreign', foreign, /token signature invalid: the token was not signed with the key of this state/],
    ];
    for (const [what, input, says] of cases) {
      const r = await meshSds(['token', 'revoke', '--state-dir', state], { input });
      assert.equal(r.code, 1, `${what}: ${r.stdout}`);
      assert.match(r.stderr, says, what);
      for (const part of input.split(/[.\s"]/)) if (part.length > 20) assert.ok(!r.stderr.includes(part), `${what}: the token is not printed`);
    }
    const ok = await meshSds(['token', 'revoke', '--state-dir', state], { input: `Bearer ${token}\n` });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^revoked token /);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
