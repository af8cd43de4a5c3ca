// `token generate` refuses what would make a useless or dangerous token, saying exactly what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';

const claimsOf = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

async function withStateDir(fn: (state: string) => Promise<void>): Promise<void> {
  const state = await mkdtemp(join(tmpdir(), 'mesh-sds-token-gen-'));
  try {
    await fn(state);
  } finally {
    await rm(state, { recursive: true, force: true });
  }
}

test('token generate --valid-for: between 1m and 87600h (10 years), and every refusal says what is wrong', async () => {
  await withStateDir(async (state) => {
    const gen = (validFor: string) => meshSds(['token', 'generate', '--mesh', 'default', '--name', 'a', '--valid-for', validFor, '--state-dir', state, '--create-key']);
    const refusals: [string, RegExp][] = [
      ['99999999999999999999999h', /--valid-for "99999999999999999999999h" is longer than the maximum of 87600h \(10 years\)/],
      ['87601h', /longer than the maximum of 87600h/],
      [`${'9'.repeat(400)}h`, /longer than the maximum of 87600h/],
      ['1000y', /--valid-for "1000y" is not a duration: write a number and a unit of h, m or s.*no unit for days or years/],
      ['30d', /"30d" is not a duration.*30 days: 720h/],
      ['1ms', /--valid-for "1ms" is shorter than the minimum of 1m/],
      ['59s', /shorter than the minimum of 1m/],
      ['0', /--valid-for "0" is not positive/],
      ['-1h', /"-1h" is not positive/],
    ];
    for (const [validFor, message] of refusals) {
      const r = await gen(validFor);
      assert.equal(r.code, 1, `${validFor}: ${r.stderr}`);
      assert.match(r.stderr, message, validFor);
      assert.equal(r.stdout, '', `${validFor}: no token printed`);
    }
    for (const [validFor, seconds] of [['1m', 60], ['87600h', 87_600 * 3600], ['1h30m', 5400]] as const) {
      const r = await gen(validFor);
      assert.equal(r.code, 0, `${validFor}: ${r.stderr}`);
      const c = claimsOf(r.stdout.trim().split('\n').at(-1)!);
      assert.ok(Number.isSafeInteger(c.exp), `${validFor}: exp ${String(c.exp)}`);
      assert.equal((c.exp as number) - (c.iat as number), seconds, validFor);
    }
  });
});

test('token generate --label: control characters in keys and values are refused as in Dataplane labels, and the token stays under 4096 characters', async () => {
  await withStateDir(async (state) => {
    const gen = (...labels: string[]) => meshSds(['token', 'generate', '--mesh', 'default', '--name', 'a', ...labels.flatMap((l) => ['--label', l]), '--state-dir', state, '--create-key']);
    const esc = await gen('app=x\x1b[2J');
    assert.equal(esc.code, 1, esc.stderr);
    assert.match(esc.stderr, /label "app": the value must not hold control characters \(U\+001B at 1\)/);
    assert.ok(!esc.stderr.includes('\x1b'), 'the refusal does not print the ESC itself');
    assert.equal(esc.stdout, '');
    for (const [label, at] of [['app=a\nb', 'U+000A at 1'], ['app=\u009b', 'U+009B at 0'], ['app=\x7f', 'U+007F at 0']] as const) {
      const r = await gen(label);
      assert.equal(r.code, 1, `${JSON.stringify(label)}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`must not hold control characters (${at})`), `${JSON.stringify(label)}: ${r.stderr}`);
    }
    const inKey = await gen('a\x1bpp=x');
    assert.equal(inKey.code, 1, inKey.stderr);
    assert.match(inKey.stderr, /label key "a\\u001bpp" must not hold control characters \(U\+001B at 1\)/);
    const huge = await gen(`app=${'a'.repeat(100_000)}`);
    assert.equal(huge.code, 1, huge.stderr);
    assert.match(huge.stderr, /the token would be \d+ characters, more than the 4096 allowed: gRPC's default metadata limit is 8 KB/);
    assert.ok(huge.stderr.length < 1000, 'the refusal does not quote the value');
    assert.equal(huge.stdout, '');
    // Many ordinary labels within the bound still make a token.
    const fine = await gen(...Array.from({ length: 20 }, (_, i) => `label-${i}=value-${i}`), 'note=ünïcode and spaces are fine');
    assert.equal(fine.code, 0, fine.stderr);
    assert.ok(fine.stdout.trim().split('\n').at(-1)!.length <= 4096);
  });
});

test('token generate refuses a state that holds no token key (a mistyped --state-dir) unless --create-key asks for one', async () => {
  await withStateDir(async (root) => {
    const kidOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
    const gen = (stateDir: string, ...more: string[]) => meshSds(['token', 'generate', '--mesh', 'default', '--name', 'a', '--state-dir', stateDir, ...more]);
    const typo = join(root, 'stat');
    const missing = await gen(typo);
    assert.equal(missing.code, 1, missing.stdout);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /--state-dir .*\/stat does not exist: a token signed with a new key would be accepted by no server \(is it the server's state dir\?\); --create-key creates a new token key/);
    await assert.rejects(stat(typo), 'the mistyped state dir was not created');

    const empty = await gen(root);
    assert.equal(empty.code, 1, empty.stdout);
    assert.match(empty.stderr, /--state-dir .* holds no token key: a token signed with a new key would be accepted by no server \(is it the server's state\?\); --create-key creates one/);
    assert.deepEqual(await readdir(root), [], 'no key was created');

    const created = await gen(join(root, 'state'), '--create-key');
    assert.equal(created.code, 0, created.stderr);
    const kid = kidOf(created.stdout.trim().split('\n').at(-1)!);
    // Once there is a key, it is used, with or without --create-key.
    for (const more of [[], ['--create-key']]) {
      const again = await gen(join(root, 'state'), ...more);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(kidOf(again.stdout.trim().split('\n').at(-1)!), kid, `same key ${more.join(' ')}`);
    }
  });
});

test('token generate warns when --resources shows that the short --name reaches a namespaced Dataplane (the server would refuse the token), naming the full name; the full name, a Dataplane without namespace and a gateway name get no warning', async () => {
  await withStateDir(async (root) => {
    const resources = join(root, 'resources');
    await mkdir(resources);
    await writeFile(
      join(resources, 'dataplanes.yaml'),
      [
        'apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmetadata:\n  name: db-0\n  namespace: team-a\n  labels: { kuma.io/mesh: default, app: db }\n',
        'type: Dataplane\nname: web\nmesh: default\nlabels: { app: web }\n',
      ].join('---\n'),
    );
    const gen = (name: string) => meshSds(['token', 'generate', '--mesh', 'default', '--name', name, '--resources', resources, '--state-dir', join(root, 'state'), '--create-key']);
    const short = await gen('db-0');
    assert.equal(short.code, 0, short.stderr);
    assert.match(short.stderr, /warning: a server with --auth token refuses this token while that Dataplane exists: .*\(token generate --mesh default --name db-0\.team-a\) and Envoy connect as default\.db-0\.team-a/);
    assert.match(short.stdout.trim(), /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the token is still printed');
    for (const name of ['db-0.team-a', 'web', 'edge-gw']) {
      const r = await gen(name);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /refuses this token/, name);
    }
  });
});

test('token generate warns that a short --name several namespaces\' Dataplanes answer to is never served, naming the full node ids', async () => {
  await withStateDir(async (root) => {
    const resources = join(root, 'resources');
    await mkdir(resources);
    const dp = (ns: string) => `apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmetadata:\n  name: db-0\n  namespace: ${ns}\n  labels: { kuma.io/mesh: default, app: db }\n`;
    await writeFile(join(resources, 'dataplanes.yaml'), [dp('team-a'), dp('team-b')].join('---\n'));
    const r = await meshSds(['token', 'generate', '--mesh', 'default', '--name', 'db-0', '--resources', resources, '--state-dir', join(root, 'state'), '--create-key']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: a server with --auth token never serves this token: node id default\.db-0 is ambiguous: .*connect as default\.db-0\.team-a or default\.db-0\.team-b, with a token naming that Dataplane in full/);
  });
});

test('token generate --label: a key named __proto__ is refused, not silently left out of the token, and a key given twice is refused, not overwritten', async () => {
  await withStateDir(async (state) => {
    const gen = (...labels: string[]) => meshSds(['token', 'generate', '--mesh', 'default', '--name', 'a', ...labels.flatMap((l) => ['--label', l]), '--state-dir', state, '--create-key']);
    const proto = await gen('app=web', '__proto__=x');
    assert.equal(proto.code, 1, `a token without the label asked for was printed: ${proto.stdout}`);
    assert.match(proto.stderr, /label key "__proto__" must be letters/);
    assert.equal(proto.stdout, '');
    const twice = await gen('version=v1', 'version=v2');
    assert.equal(twice.code, 1, `one of the two values was dropped silently: ${twice.stdout}`);
    assert.match(twice.stderr, /--label "version" given twice \("v1" and "v2"\)/);
    assert.equal(twice.stdout, '');
    const ok = await gen('app=web', 'constructor=x');
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(claimsOf(ok.stdout.trim().split('\n').at(-1)!).labels, { app: 'web', constructor: 'x' });
  });
});

test('token generate signs while the revocation list is damaged (it never reads it); token revoke still refuses to rewrite it, naming the key', async () => {
  await withStateDir(async (root) => {
    const stateDir = join(root, 'state');
    const gen = () => meshSds(['token', 'generate', '--mesh', 'default', '--name', 'a', '--state-dir', stateDir, '--create-key']);
    const first = await gen();
    assert.equal(first.code, 0, first.stderr);
    // A truncated write of the list: before, every new proxy was refused a token until it was repaired.
    await writeFile(join(stateDir, 'auth', 'revoked'), '[{"jti":"abc","exp":1');
    const second = await gen();
    assert.equal(second.code, 0, second.stderr);
    assert.equal(claimsOf(second.stdout.trim().split('\n').at(-1)!).name, 'a');
    const revoke = await meshSds(['token', 'revoke', '--state-dir', stateDir], { input: first.stdout.trim().split('\n').at(-1)! });
    assert.equal(revoke.code, 1, revoke.stdout);
    assert.match(revoke.stderr, /state key auth\/revoked is not valid JSON/);
  });
});
