// Nothing prints a token, on the client side too: grpc-js refuses a non-ASCII metadata value with an
// error that quotes it whole; `mesh-sds fetch` refuses such a token first, without quoting it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from '../cli/run.js';

test('mesh-sds fetch with a token holding a non-ASCII character fails with a clear message and prints no part of the token', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-tokprint-'));
  try {
    const sig = randomBytes(64).toString('base64url');
    const token = `eyJhbGciOiJFZERTQSJ9.${randomBytes(60).toString('base64url')}.${sig}é`;
    writeFileSync(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
    const r = await meshSds(['fetch', '--server', '127.0.0.1:1', '--node', 'default.web', '--token-file', join(dir, 'token'), '--out-dir', join(dir, 'out')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /token contains whitespace or characters outside printable ASCII/);
    for (let i = 0; i + 16 <= sig.length; i += 4) {
      assert.ok(!`${r.stdout}${r.stderr}`.includes(sig.slice(i, i + 16)), 'no fragment of the token is printed');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a token too short to be one (a torn read of a token file) is not redacted from messages: they stay readable', async () => {
  const r = await meshSds(['fetch', '--server', '127.0.0.1:1', '--node', 'default.web', '--token', 'e', '--timeout', '1s'], { timeoutMs: 20_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^mesh-sds fetch: /);
  assert.doesNotMatch(r.stderr, /redacted/);
});
