// Every flag or variable that names a file to read refuses a FIFO (read, it would wait for a writer
// for ever, without a word), a device (/dev/zero: read until memory runs out) and a file over 1 MiB,
// at once and naming the flag, the path and what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa } from '../helpers/openssl.js';
import { meshSds } from './run.js';

/** Well past a refusal's start-up (about 2 s), well before a hung read would end by itself (never). */
const PROMPT_MS = 15_000;

test('a FIFO, /dev/zero or a 2 MiB file named by a file flag or variable ends the command at once with the flag, the path and the problem', { timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-flag-files-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const big = join(dir, 'big');
  await writeFile(big, Buffer.alloc(2 * 1024 * 1024, 'a'));
  const some = join(dir, 'some'); // read fine, refused (or not needed) later
  await writeFile(some, 'x\n');
  const key = join(dir, 'state.key');
  await writeFile(key, `${randomBytes(32).toString('base64')}\n`);
  const res = join(dir, 'r');
  await mkdir(res);
  const serve = ['serve', '--resources', res, '--state-dir', join(dir, 's'), '--auth', 'none', '--listen', '127.0.0.1:0'];
  const get = ['get', 'meshtrust', '--resources', res, '--state-dir', join(dir, 's')];
  const fetch = ['fetch', '--server', '127.0.0.1:1', '--node', 'default.backend-1', '--timeout', '2s'];
  const cases: { flag: string; what?: string; run: (f: string) => { args: string[]; env?: NodeJS.ProcessEnv } }[] = [
    { flag: '--state-key-file', what: 'get --state-key-file', run: (f) => ({ args: [...get, '--state-key-file', f] }) },
    { flag: '--state-key-file', what: 'MESH_SDS_STATE_KEY_FILE', run: (f) => ({ args: get, env: { MESH_SDS_STATE_KEY_FILE: f } }) },
    { flag: '--state-old-key-file', run: (f) => ({ args: [...get, '--state-key-file', key, '--state-old-key-file', f] }) },
    { flag: '--tls-cert', run: (f) => ({ args: [...serve, '--tls-cert', f, '--tls-key', some] }) },
    { flag: '--tls-key', what: 'MESH_SDS_TLS_KEY', run: (f) => ({ args: [...serve, '--tls-cert', some], env: { MESH_SDS_TLS_KEY: f } }) },
    { flag: '--federation-ca-file', run: (f) => ({ args: [...serve, '--federation-ca-file', f] }) },
    { flag: '--bundle-endpoint-tls-cert', run: (f) => ({ args: [...serve, '--bundle-endpoint', '127.0.0.1:0', '--bundle-endpoint-tls-cert', f, '--bundle-endpoint-tls-key', some] }) },
    { flag: '--bundle-endpoint-tls-key', run: (f) => ({ args: [...serve, '--bundle-endpoint', '127.0.0.1:0', '--bundle-endpoint-tls-cert', some, '--bundle-endpoint-tls-key', f] }) },
    { flag: '--ca-file', what: 'fetch --ca-file', run: (f) => ({ args: [...fetch, '--ca-file', f] }) },
    { flag: '--token-file', what: 'fetch --token-file', run: (f) => ({ args: [...fetch, '--token-file', f] }) },
    { flag: '--token-file', what: 'token revoke --token-file', run: (f) => ({ args: ['token', 'revoke', '--state-dir', join(dir, 's'), '--token-file', f] }) },
    { flag: '--store sslrootcert', what: '--store …?sslrootcert=', run: (f) => ({ args: ['get', 'meshtrust', '--store', `postgres://127.0.0.1:1/test?sslrootcert=${encodeURIComponent(f)}`] }) },
  ];
  const files = [
    { path: fifo, problem: 'is a FIFO, not a regular file' },
    { path: '/dev/zero', problem: 'is a character device, not a regular file' },
    { path: big, problem: 'is larger than 1 MiB: not read' },
  ];
  for (const c of cases) {
    await t.test(c.what ?? c.flag, async () => {
      // The three at once, each waited for (a hung one is killed): every failure is listed.
      const failures = await Promise.all(
        files.map(async ({ path, problem }) => {
          const { args, env } = c.run(path);
          const started = Date.now();
          const r = await meshSds(args, { env, timeoutMs: PROMPT_MS });
          const tail = (r.stderr.trim().split('\n').pop() ?? '').slice(0, 200);
          if (Date.now() - started >= PROMPT_MS - 1000) return `${path}: still running after ${PROMPT_MS} ms (killed): ${tail}`;
          if (r.code <= 0 || !r.stderr.includes(`cannot read ${c.flag} ${path}: ${problem}`)) return `${path}: exit code ${r.code}: ${tail}`;
          return undefined;
        }),
      );
      assert.deepEqual(failures.filter((f) => f !== undefined), []);
    });
  }
});

test('ordinary files (and links to them) still pass: fetch --ca-file reaches the server, --store sslrootcert reaches the database', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-flag-files-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = join(dir, 'ca.pem');
  await writeFile(ca, makeCa('flag-files').certPem);
  const link = join(dir, 'ca-link.pem');
  execFileSync('ln', ['-s', ca, link]);
  const fetch = await meshSds(['fetch', '--server', '127.0.0.1:1', '--node', 'default.backend-1', '--timeout', '1s', '--ca-file', link]);
  assert.equal(fetch.code, 1, fetch.stderr);
  assert.doesNotMatch(fetch.stderr, /cannot read/);
  assert.match(fetch.stderr, /127\.0\.0\.1:1|UNAVAILABLE|DEADLINE|ECONNREFUSED/);
  const store = await meshSds(['get', 'meshtrust', '--store', `postgres://127.0.0.1:1/test?sslrootcert=${encodeURIComponent(link)}`]);
  assert.equal(store.code, 1, store.stderr);
  assert.doesNotMatch(store.stderr, /cannot read/);
  assert.match(store.stderr, /ECONNREFUSED/);
});
