// `serve` refuses a bad address or log level naming the flag, before it opens anything: a typo must
// not leave a migrated Postgres schema or CA private keys in a new --state-dir behind.
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, meshSds } from './run.js';
import { startProc } from '../e2e/procs.js';
import { PG_URL, adminQuery, dropSchema, testSchema } from '../store-postgres/helpers.js';

async function root(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-serve-flags-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const schemaExists = async (schema: string) => (await adminQuery('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema])).rows.length > 0;

test('serve refuses a bad --listen, --admin or --bundle-endpoint address, two listeners on one address, an unknown --socket-group or a missing --state-key-file naming the flag, before creating a state dir or a Postgres schema', async (t) => {
  const dir = await root(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const cases: [string[], RegExp][] = [
    [['--listen', '127.0.0.1:99999'], /--listen 127\.0\.0\.1:99999: expected host:port/],
    [['--listen', 'localhost'], /--listen localhost: expected host:port/],
    [['--admin', '127.0.0.1:99999'], /--admin: invalid port in "127\.0\.0\.1:99999"/],
    [['--bundle-endpoint', 'localhost'], /--bundle-endpoint: listen address must be host:port, got "localhost"/],
    [['--listen', `unix://${dir}/sds.sock`, '--socket-group', 'no-such-group-mesh-sds'], /--socket-group no-such-group-mesh-sds: no such group/],
    [['--listen', '127.0.0.1:47391', '--admin', '127.0.0.1:47391'], /--listen 127\.0\.0\.1:47391 and --admin 127\.0\.0\.1:47391 are the same address: each listener needs a port of its own/],
    [['--state-key-file', join(dir, 'missing.key')], /cannot read --state-key-file .*missing\.key: no such file or directory/],
    [['--state-old-key-file', join(dir, 'old.key')], /--state-old-key-file needs --state-key-file/],
    [['--listen', '127.0.0.1:47392', '--bundle-endpoint', '0.0.0.0:47392'], /--listen 127\.0\.0\.1:47392 and --bundle-endpoint 0\.0\.0\.0:47392 are the same address/],
  ];
  for (const [flags, message] of cases) {
    for (const store of [['--resources', 'examples/quickstart'], ['--store', `${PG_URL}?schema=${schema}`, '--insecure-plaintext-state']]) {
      const stateDir = join(dir, 'state');
      const r = await meshSds(['serve', ...store, '--state-dir', stateDir, '--auth', 'none', '--listen', '127.0.0.1:0', ...flags], { timeoutMs: 30_000 });
      assert.equal(r.code, 1, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      await assert.rejects(stat(stateDir), `${flags.join(' ')}: no state dir created`);
      assert.equal(await schemaExists(schema), false, `${flags.join(' ')}: no schema created`);
    }
  }
});

test('serve --log-level with an unknown level is refused naming the flag and the levels', async (t) => {
  const dir = await root(t);
  const r = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0', '--log-level', 'verbose'], { timeoutMs: 30_000 });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /option '--log-level <level>' argument 'verbose' is invalid\. Allowed choices are trace, debug, info, warn, error, fatal, silent/);
  assert.doesNotMatch(r.stderr, /custom levels/);
});

test('serve with an --admin port already in use names --admin in its error', async (t) => {
  const dir = await root(t);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = (taken.address() as { port: number }).port;
  const r = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0', '--admin', `127.0.0.1:${port}`], { timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`--admin: cannot listen on 127.0.0.1:${port}: listen EADDRINUSE`), r.stderr);
});

test('serve with a --listen port already in use names --listen in its error', async (t) => {
  const dir = await root(t);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = (taken.address() as { port: number }).port;
  const r = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', `127.0.0.1:${port}`], { timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`--listen: cannot listen on 127.0.0.1:${port}: listen EADDRINUSE`), r.stderr);
});

test('serve refuses a --drain longer than its timers can hold, instead of ending every stream at once on SIGTERM', async (t) => {
  const dir = await root(t);
  for (const drain of ['600h', '99999999h']) {
    const r = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0', '--drain', drain], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, `${drain}: ${r.stderr}`);
    assert.ok(r.stderr.includes(`--drain: "${drain}" is longer than the longest drain, 596h`), r.stderr);
  }
});

test('serve refuses an empty --state-dir or MESH_SDS_STATE_DIR naming it, instead of making the current directory its state', async (t) => {
  const dir = await root(t);
  const cwd = join(dir, 'cwd');
  await mkdir(cwd);
  const mode = (await stat(cwd)).mode;
  for (const [args, env, source] of [
    [['--state-dir', ''], {}, "option '--state-dir <dir>' argument '' is invalid"],
    [[], { MESH_SDS_STATE_DIR: '' }, "option '--state-dir <dir>' value '' from env 'MESH_SDS_STATE_DIR' is invalid"],
  ] as const) {
    const r = await meshSds(['serve', '--resources', join(process.cwd(), 'examples/quickstart'), ...args, '--auth', 'none', '--listen', '127.0.0.1:0'], { env, timeoutMs: 20_000, cwd });
    assert.equal(r.code, 1, `${source}: ${r.stderr}`);
    assert.ok(r.stderr.includes(source), r.stderr);
    assert.match(r.stderr, /an empty path would put the state \(CA private keys\) in the current directory/);
    assert.deepEqual(await readdir(cwd), [], 'nothing written in the current directory');
    assert.equal((await stat(cwd)).mode, mode, 'its mode untouched');
  }
});

test('serve and get with a --store database that cannot be reached name --store and say so, without the password', async (t) => {
  const dir = await root(t);
  const url = 'postgres://postgres:hunter2@127.0.0.1:1/test';
  for (const args of [['serve', '--auth', 'none', '--listen', '127.0.0.1:0'], ['get', 'meshidentity']]) {
    const r = await meshSds([...args, '--store', url, '--state-dir', join(dir, 'state')], { timeoutMs: 30_000 });
    assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
    assert.ok(r.stderr.includes('--store postgres://[REDACTED]@127.0.0.1:1/test: cannot connect to the database: connect ECONNREFUSED 127.0.0.1:1'), r.stderr);
    assert.doesNotMatch(r.stderr, /hunter2/);
  }
});

test('serve with a --state-dir that is a file names --state-dir and says it cannot be the state directory', async (t) => {
  const dir = await root(t);
  const file = join(dir, 'not-a-dir');
  await writeFile(file, 'x');
  const r = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', file, '--auth', 'none', '--listen', '127.0.0.1:0'], { timeoutMs: 30_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`--state-dir ${file} cannot be used as the state directory: not a directory (ENOTDIR)`), r.stderr);
});

test('serve warns, naming --resources, when the resource directory did not exist and was created empty', async (t) => {
  const dir = await root(t);
  const missing = join(dir, 'typo-resources');
  const proc = startProc('mesh-sds', process.execPath, [BIN, 'serve', '--resources', missing, '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0']);
  t.after(() => proc.stop('SIGKILL'));
  await proc.waitForLine(/"msg":"ready"/, 30_000);
  assert.ok(proc.stdout().includes(`"msg":"--resources ${missing} did not exist: created it empty, so no resources are served until files are put there (a mistyped path?)"`), proc.stdout());
  const existing = startProc('mesh-sds', process.execPath, [BIN, 'serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0']);
  t.after(() => existing.stop('SIGKILL'));
  await existing.waitForLine(/"msg":"ready"/, 30_000);
  assert.doesNotMatch(existing.stdout(), /did not exist/);
});

test('a key given as --resources is described in the log line that says the directory was created, and in "serving", never shown in a field', async (t) => {
  const dir = await root(t);
  // Relative, as an env-from-Secret mix-up gives it: no folder of its own vouches for it being a path.
  let key = randomBytes(32).toString('base64');
  while (key.includes('/')) key = randomBytes(32).toString('base64');
  const proc = startProc('mesh-sds', process.execPath, [BIN, 'serve', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0'], { cwd: dir, env: { ...process.env, MESH_SDS_RESOURCES: key } });
  t.after(() => proc.stop('SIGKILL'));
  await proc.waitForLine(/"msg":"ready"/, 30_000);
  assert.match(proc.stdout(), /--resources <not a file path: 44 characters, looks like a base64 key or token; not shown> did not exist/);
  assert.ok(!proc.stdout().includes(key.slice(0, 24)), `the key is logged:\n${proc.stdout()}`);
});

test('a bad value set by an environment variable is refused naming the variable, not only the flag the operator never typed', async (t) => {
  const dir = await root(t);
  const cases: [NodeJS.ProcessEnv, RegExp][] = [
    [{ MESH_SDS_DRAIN: 'xyz' }, /--drain: "xyz" is not a duration.*set by MESH_SDS_DRAIN in the environment/],
    [{ MESH_SDS_DRAIN: '600h' }, /--drain: "600h" is longer than the longest drain.*set by MESH_SDS_DRAIN in the environment/],
    [{ MESH_SDS_MAX_CONNECTIONS: '-3' }, /from env 'MESH_SDS_MAX_CONNECTIONS' is invalid\. --max-connections: "-3" is not a whole number/],
    [{ MESH_SDS_PREPARE_SVIDS: 'all' }, /from env 'MESH_SDS_PREPARE_SVIDS' is invalid\. --prepare-svids: "all" is not a whole number/],
    [{ MESH_SDS_ADMIN: '127.0.0.1:99999' }, /--admin: invalid port .*set by MESH_SDS_ADMIN in the environment/],
  ];
  for (const [env, message] of cases) {
    const r = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0'], { env, timeoutMs: 30_000 });
    assert.equal(r.code, 1, `${JSON.stringify(env)}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  // Typed on the command line, the flag alone is named.
  const typed = await meshSds(['serve', '--resources', 'examples/quickstart', '--state-dir', join(dir, 'state'), '--auth', 'none', '--listen', '127.0.0.1:0', '--drain', 'xyz'], { env: { MESH_SDS_DRAIN: '' }, timeoutMs: 30_000 });
  assert.equal(typed.code, 1, typed.stderr);
  assert.ok(typed.stderr.includes('--drain: "xyz" is not a duration') && !typed.stderr.includes('MESH_SDS_DRAIN'), typed.stderr);
});
