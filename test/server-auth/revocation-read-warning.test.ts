// A revocation list the running server cannot read (a damaged record, a store that is down) is
// warned about: the server keeps the last list read, so revocations made since are not enforced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a damaged revocation record is warned about once, naming its state key, while the server keeps serving', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-revoked-read-'));
  const resourcesDir = join(root, 'resources');
  const stateDir = join(root, 'state');
  await cp(join(import.meta.dirname, '..', '..', 'examples', 'quickstart'), resourcesDir, { recursive: true });
  const lines: { level: string; msg: string; stateKey?: string; err?: string }[] = [];
  const destination = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(...c.toString().trim().split('\n').map((l) => JSON.parse(l))), cb()) });
  const s = await startServer({ resourcesDir, stateDir, listen: '127.0.0.1:0', auth: 'token', zone: 'default', logger: createLogger('info', { destination }), revocationRefreshMs: 100 });
  try {
    await s.ready;
    await s.tokens!.revoke('some-token-id'); // the record exists, as on any server that revoked once
    await writeFile(join(stateDir, 'auth', 'revoked'), '[{"jti": "cut short');
    await sleep(1500); // about 14 refreshes
    const warned = lines.filter((l) => l.msg.startsWith('re-reading token revocations failed'));
    assert.equal(warned.length, 1, `one warning for one lasting reason, got ${warned.length}`);
    assert.equal(warned[0]!.level, 'warn');
    assert.equal(warned[0]!.stateKey, 'auth/revoked');
    assert.ok(s.tokens!.isRevoked('some-token-id'), 'the last list read stays in force');
    assert.equal(s.tokens!.revocationsHealth().ok, false, 'and readiness says it is stale');
  } finally {
    await s.close();
    await rm(root, { recursive: true, force: true });
  }
});
