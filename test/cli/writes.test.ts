// `apply`, `delete` and `import` run as a user runs them (the real executable, separate processes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { meshSds } from './run.js';
import { makeCa } from '../helpers/openssl.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml } from '../helpers/yaml.js';
import { PG_URL, adminQuery, dropSchema, testSchema } from '../store-postgres/helpers.js';

const ca = makeCa('cli-writes');
const trustYaml = (name: string, td: string) => meshTrustYaml(name, td, [ca.certPem]);

async function workspace(t: { after: (fn: () => Promise<void>) => void }) {
  const root = await mkdtemp(join(tmpdir(), 'mesh-sds-writes-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const resources = join(root, 'resources');
  await mkdir(resources);
  const flags = ['--resources', resources, '--state-dir', join(root, 'state')];
  return { root, resources, flags };
}

async function getJson(flags: string[], kind: string, name?: string): Promise<any> {
  const r = await meshSds(['get', kind, ...(name ? [name] : []), '-o', 'json', ...flags]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('two applies from stdin keep both resources (each resource gets a file of its own)', async (t) => {
  const w = await workspace(t);
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: trustYaml('first', 'first.example') })).code, 0);
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: trustYaml('second', 'second.example') })).code, 0);
  const names = (await getJson(w.flags, 'meshtrust')).map((r: { name: string }) => r.name).sort();
  assert.deepEqual(names, ['first', 'second']);
});

test('twenty concurrent apply processes to twenty resources lose none', async (t) => {
  const w = await workspace(t);
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => meshSds(['apply', '-f', '-', ...w.flags], { input: dataplaneYaml(`dp-${i}`, { app: `a${i}` }) })),
  );
  assert.deepEqual(results.map((r) => r.code), Array(20).fill(0), results.map((r) => r.stderr).join(''));
  const dps = await getJson(w.flags, 'dataplane');
  assert.equal(dps.length, 20);
  assert.equal((await readdir(w.resources)).filter((f) => !f.startsWith('.')).length, 20, 'no temp or lock file left behind');
});

test('two concurrent applies to one resource based on the same version: exactly one conflict, naming the resource', async (t) => {
  const w = await workspace(t);
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: trustYaml('shared', 'v1.example') })).code, 0);
  const { resourceVersion } = await getJson(w.flags, 'meshtrust', 'shared');
  assert.match(resourceVersion, /^[0-9a-f]{20}$/);
  const edit = (td: string) => trustYaml('shared', td).replace(/^name: shared$/m, `name: shared\nresourceVersion: ${resourceVersion}`);
  const [a, b] = await Promise.all([
    meshSds(['apply', '-f', '-', ...w.flags], { input: edit('a.example') }),
    meshSds(['apply', '-f', '-', ...w.flags], { input: edit('b.example') }),
  ]);
  assert.deepEqual([a.code, b.code].sort(), [0, 1], a.stderr + b.stderr);
  const loser = a.code === 1 ? a : b;
  assert.match(loser.stderr, /conflict: MeshTrust "shared" of mesh "default" was changed by another writer/);
  const winnerTd = a.code === 0 ? 'a.example' : 'b.example';
  assert.equal((await getJson(w.flags, 'meshtrust', 'shared')).spec.trustDomain, winnerTd, 'the winner is stored, not overwritten');
  // The stale version again: a conflict; --force overwrites.
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: edit('c.example') })).code, 1);
  assert.equal((await meshSds(['apply', '-f', '-', '--force', ...w.flags], { input: edit('c.example') })).code, 0);
  assert.equal((await getJson(w.flags, 'meshtrust', 'shared')).spec.trustDomain, 'c.example');
});

test("a resource defined in a user's file is refused by apply and delete, naming that file", async (t) => {
  const w = await workspace(t);
  await writeFile(join(w.resources, 'mine.yaml'), trustYaml('mine', 'mine.example'));
  const applied = await meshSds(['apply', '-f', '-', ...w.flags], { input: trustYaml('mine', 'other.example') });
  assert.equal(applied.code, 1);
  assert.match(applied.stderr, /MeshTrust "mine" of mesh "default" is defined in .*resources\/mine\.yaml, a file not written by apply/);
  const deleted = await meshSds(['delete', 'meshtrust', 'mine', ...w.flags]);
  assert.equal(deleted.code, 1);
  assert.match(deleted.stderr, /is defined in .*resources\/mine\.yaml, a file not written by apply: delete it there/);
  assert.equal(await readFile(join(w.resources, 'mine.yaml'), 'utf8'), trustYaml('mine', 'mine.example'), 'the user file is untouched');
});

test('delete removes a resource written by apply; an unknown one is an error', async (t) => {
  const w = await workspace(t);
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: dataplaneYaml('web', { app: 'web' }, 'shop') })).code, 0);
  const r = await meshSds(['delete', 'dataplane', 'web', '--mesh', 'shop', ...w.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /deleted Dataplane "web" of mesh "shop"/);
  assert.deepEqual(await getJson(w.flags, 'dataplane'), []);
  const again = await meshSds(['delete', 'dataplane', 'web', '--mesh', 'shop', ...w.flags]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /Dataplane "web" of mesh "shop" not found/);
});

test('delete --resource-version deletes only that version: another is a conflict and keeps the resource; with --force it is refused as a contradiction', async (t) => {
  const w = await workspace(t);
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: dataplaneYaml('web', { app: 'web' }, 'shop') })).code, 0);
  const [{ resourceVersion }] = await getJson(w.flags, 'dataplane');
  const del = (...more: string[]) => meshSds(['delete', 'dataplane', 'web', '--mesh', 'shop', ...more, ...w.flags]);
  const stale = await del('--resource-version', '0'.repeat(20));
  assert.equal(stale.code, 1, stale.stdout);
  assert.match(stale.stderr, /conflict/);
  const both = await del('--force', '--resource-version', '0'.repeat(20));
  assert.equal(both.code, 1, both.stdout);
  assert.match(both.stderr, /option '--force' cannot be used with option '--resource-version/);
  assert.equal((await getJson(w.flags, 'dataplane')).length, 1, 'neither refusal deleted anything');
  const exact = await del('--resource-version', resourceVersion);
  assert.equal(exact.code, 0, exact.stderr);
  assert.deepEqual(await getJson(w.flags, 'dataplane'), []);
});

test('--version prints the version of package.json', async () => {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = await meshSds(['--version']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('delete removes a ClusterFederatedTrustDomain (cluster-scoped: no mesh, whatever --mesh says)', async (t) => {
  const w = await workspace(t);
  const cftd = ['type: ClusterFederatedTrustDomain', 'name: zone-b', 'spec:', '  trustDomain: zone-b.example', '  bundleEndpointURL: https://zone-b.example:8443/b', '  bundleEndpointProfile: {type: https_web}', ''].join('\n');
  assert.equal((await meshSds(['apply', '-f', '-', ...w.flags], { input: cftd })).code, 0);
  const r = await meshSds(['delete', 'clusterfederatedtrustdomain', 'zone-b', ...w.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^deleted ClusterFederatedTrustDomain "zone-b"\n/);
  assert.deepEqual(await getJson(w.flags, 'clusterfederatedtrustdomain'), []);
});

test('apply refuses a file that is not UTF-8 or too large, as validate does', async (t) => {
  const w = await workspace(t);
  const file = join(w.root, 'latin1.yaml');
  await writeFile(file, Buffer.concat([Buffer.from('# caf'), Buffer.from([0xe9]), Buffer.from(`\n${trustYaml('x', 'x.example')}`)]));
  const r = await meshSds(['apply', '-f', file, ...w.flags]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /latin1\.yaml \(document 1\): file is not valid UTF-8: invalid byte 0xe9 at byte offset 5/);
  const big = await meshSds(['apply', '-f', '-', '--max-file-size', '100', ...w.flags], { input: trustYaml('x', 'x.example') });
  assert.equal(big.code, 1);
  assert.match(big.stderr, /stdin \(document 1\): file is \d+ bytes, larger than the limit of 100 bytes/);
  assert.deepEqual(await readdir(w.resources), []);
});

test("import names a broken file whose name holds terminal controls with them escaped, on one line: the terminal acts on none", async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  await writeFile(join(w.resources, 'trust.yaml'), trustYaml('t1', 'one.example'));
  await writeFile(join(w.resources, '\x1b]0;owned\x07\x1b[2J\nfake.yaml'), 'type: Dataplane\nname: Not_Valid\n');
  const r = await meshSds(['import', '--resources', w.resources, '--store', `${PG_URL}?schema=${schema}`, '--state-dir', join(w.root, 'state')]);
  assert.equal(r.code, 1, r.stdout);
  const controls = [...r.stderr].filter((c) => c !== '\n' && (c < ' ' || (c >= '\x7f' && c <= '\x9f')));
  assert.deepEqual(controls, [], r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.ok(lines.length >= 1 && lines.every((l) => l.startsWith('not imported: ')), r.stderr);
  assert.match(lines[0]!, /\\u001b\]0;owned\\u0007\\u001b\[2J\\nfake\.yaml/);
});

test('import copies a directory into Postgres and reports created, updated, unchanged; a second run changes nothing', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const url = `${PG_URL}?schema=${schema}`;
  await writeFile(join(w.resources, 'trust.yaml'), trustYaml('t1', 'one.example'));
  await writeFile(join(w.resources, 'dps.yaml'), `${dataplaneYaml('a', { app: 'a' })}---\n${dataplaneYaml('b', { app: 'b' })}`);
  const first = await meshSds(['import', '--resources', w.resources, '--store', url, '--state-dir', join(w.root, 'state')]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /imported .*: 3 created, 0 updated, 0 unchanged/);
  await writeFile(join(w.resources, 'trust.yaml'), trustYaml('t1', 'two.example'));
  const second = await meshSds(['import', '--resources', w.resources, '--store', url, '--state-dir', join(w.root, 'state')]);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /updated MeshTrust default\/t1/);
  assert.match(second.stdout, /0 created, 1 updated, 2 unchanged/);
  const third = await meshSds(['import', '--resources', w.resources, '--store', url, '--state-dir', join(w.root, 'state')]);
  assert.match(third.stdout, /0 created, 0 updated, 3 unchanged/);
  const got = await meshSds(['get', 'meshtrust', 't1', '-o', 'json', '--store', url, '--state-dir', join(w.root, 'state')]);
  assert.equal(JSON.parse(got.stdout).spec.trustDomain, 'two.example');
});

test('delete refuses a name, mesh or namespace that is not a valid resource name, and never touches a file outside --resources', async (t) => {
  const w = await workspace(t);
  await mkdir(join(w.root, 'victim'));
  const victim = join(w.root, 'victim', 'precious.yaml');
  await writeFile(victim, 'not a mesh-sds file\n');
  const cases = [
    ['dataplane', 'x/../../victim/precious'],
    ['dataplane', 'x/../../victim/precious', '--force'],
    ['dataplane', 'ok', '--mesh', 'x/../../victim', '--force'],
    ['dataplane', 'ok', '--namespace', 'x/../../victim', '--force'],
    ['dataplane', 'Not_A_Name', '--force'],
  ];
  for (const args of cases) {
    const r = await meshSds(['delete', ...args, ...w.flags]);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /is not a valid (name|mesh|namespace): must be a valid DNS-1123/, args.join(' '));
    assert.doesNotMatch(r.stderr, /version/, 'no digest of any file is shown');
  }
  assert.equal(await readFile(victim, 'utf8'), 'not a mesh-sds file\n');
});

test("a user's file that bears apply's file name for another resource is never replaced or removed, even with --force", async (t) => {
  const w = await workspace(t);
  const userFile = join(w.resources, 'dataplane_default__foo.yaml');
  await writeFile(userFile, trustYaml('partner-trust', 'partner.example'));
  for (const force of [[], ['--force']]) {
    const r = await meshSds(['apply', '-f', '-', ...force, ...w.flags], { input: dataplaneYaml('foo', { app: 'foo' }) });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /dataplane_default__foo\.yaml is not apply's file for Dataplane "foo" of mesh "default" .*even with --force/);
    assert.doesNotMatch(r.stderr, /another writer/);
  }
  const deleted = await meshSds(['delete', 'dataplane', 'foo', '--force', ...w.flags]);
  assert.equal(deleted.code, 1, deleted.stdout);
  assert.match(deleted.stderr, /dataplane_default__foo\.yaml is not apply's file for Dataplane "foo"/);
  assert.equal(await readFile(userFile, 'utf8'), trustYaml('partner-trust', 'partner.example'), 'the user file is untouched');
  assert.equal((await getJson(w.flags, 'meshtrust', 'partner-trust')).spec.trustDomain, 'partner.example');
});

test('apply of input that holds no resources is an error: nothing was applied', async (t) => {
  const w = await workspace(t);
  for (const input of ['', '\n', '# only a comment\n---\n']) {
    const r = await meshSds(['apply', '-f', '-', ...w.flags], { input });
    assert.equal(r.code, 1, JSON.stringify(input));
    assert.match(r.stderr, /no objects passed to apply: stdin holds no resources; nothing applied/);
    assert.doesNotMatch(r.stdout, /applied/);
  }
  assert.deepEqual(await readdir(w.resources), []);
});

test('import over a row that exists but is invalid reports it replaced, not created', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const url = `${PG_URL}?schema=${schema}`;
  const state = ['--state-dir', join(w.root, 'state')];
  // Creates the schema (a command that writes migrates it; get only reads and would refuse it);
  // then a row another tool wrote that does not validate.
  assert.match((await meshSds(['delete', 'meshtrust', 'none', '--store', url, ...state])).stderr, /MeshTrust "none" of mesh "default" not found/);
  await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('MeshTrust', 'default', '', 't1', $1)`, [
    'type: MeshTrust\nname: t1\nmesh: default\nspec: {trustDomain: "not a domain"}\n',
  ]);
  await writeFile(join(w.resources, 'trust.yaml'), trustYaml('t1', 'one.example'));
  await writeFile(join(w.resources, 'dp.yaml'), dataplaneYaml('a', { app: 'a' }));
  const r = await meshSds(['import', '--resources', w.resources, '--store', url, ...state]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^updated MeshTrust default\/t1 \(replaced an invalid row\)$/m);
  assert.match(r.stdout, /^created Dataplane default\/a$/m);
  assert.match(r.stdout, /1 created, 1 updated, 0 unchanged/);
});

test('delete removes a Postgres row another tool wrote under a name no resource can have (the directory store refuses such names)', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const url = `${PG_URL}?schema=${schema}`;
  const state = ['--state-dir', join(w.root, 'state')];
  // Creates the schema (a command that writes migrates it; get only reads and would refuse it).
  assert.match((await meshSds(['delete', 'dataplane', 'none', '--store', url, ...state])).stderr, /Dataplane "none" of mesh "default" not found/);
  await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'Web_1', $1)`, [
    'type: Dataplane\nname: Web_1\nmesh: default\nlabels: {app: web}\n',
  ]);
  const r = await meshSds(['delete', 'dataplane', 'Web_1', '--force', '--store', url, ...state]);
  assert.equal(r.code, 0, r.stderr);
  const { rows } = await adminQuery(`SELECT name FROM "${schema}".resources WHERE kind = 'Dataplane'`);
  assert.deepEqual(rows, []);
  // A kind in other letters is a problem of its own at load; `delete dataplane` removes that row too.
  await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('dataplane', 'default', '', 'web', $1), ('MeshTrust', 'default', '', 'web', '')`, [
    'type: Dataplane\nname: web\nmesh: default\nlabels: {app: web}\n',
  ]);
  assert.match((await meshSds(['get', 'dataplane', '--store', url, ...state])).stderr, /row dataplane\/default\/\/web/);
  const lower = await meshSds(['delete', 'dataplane', 'web', '--store', url, ...state]);
  assert.equal(lower.code, 0, lower.stderr);
  assert.match(lower.stdout, /deleted Dataplane "web" of mesh "default"/);
  const left = await adminQuery(`SELECT kind, name FROM "${schema}".resources`);
  assert.deepEqual(left.rows, [{ kind: 'MeshTrust', name: 'web' }], 'only that row went: not a row of another kind by that name');
});

test('apply against a store whose table another session holds locked fails at the statement limit, saying what to look for, not just "canceling statement due to statement timeout"', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const url = `${PG_URL}?schema=${schema}`;
  const flags = ['--store', url, '--state-dir', join(w.root, 'state')];
  assert.equal((await meshSds(['apply', '-f', '-', ...flags], { input: dataplaneYaml('web', { app: 'web' }) })).code, 0);
  const locker = new pg.Client({ connectionString: PG_URL });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${schema}".resources IN ACCESS EXCLUSIVE MODE`);
    const r = await meshSds(['apply', '--force', '-f', '-', ...flags], { input: dataplaneYaml('web', { app: 'db' }) });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /the database gave up on a statement at the time limit \(canceling statement due to statement timeout\): another session may hold a lock on the store's tables \(find it in pg_locks and pg_stat_activity\)/);
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
});

test('apply refuses an inline CA the server would refuse (here a key of another CA), as validate does, and keeps the good one stored', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const inline = (certPem: string, keyPem: string) =>
    meshIdentityYaml('inline', {
      provider: { type: 'Bundled', bundled: { insecureAllowSelfSigned: true, ca: { certificate: { type: 'InsecureInline', insecureInline: { value: certPem } }, privateKey: { type: 'InsecureInline', insecureInline: { value: keyPem } } } } },
    });
  const good = inline(ca.certPem, ca.keyPem);
  for (const flags of [w.flags, ['--store', `${PG_URL}?schema=${schema}`, '--state-dir', join(w.root, 'pg-state')]]) {
    assert.equal((await meshSds(['apply', '-f', '-', ...flags], { input: good })).code, 0);
    const before = await getJson(flags, 'meshidentity', 'inline');
    const wrongKey = await meshSds(['apply', '-f', '-', ...flags], { input: inline(ca.certPem, makeCa('other').keyPem) });
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stderr, /stdin \(document 1\): spec\.provider\.bundled\.ca: private key does not match the CA certificate\nnothing applied/);
    assert.deepEqual(await getJson(flags, 'meshidentity', 'inline'), before, 'the good CA is still stored');
  }
});

test('apply into a --resources folder that does not exist (a typo) is refused naming it, and creates nothing', async (t) => {
  const w = await workspace(t);
  const typo = join(w.root, 'resorces');
  const r = await meshSds(['apply', '-f', '-', '--resources', typo, '--state-dir', join(w.root, 'state')], { input: trustYaml('t', 't.example') });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--resources .*resorces: no such directory/);
  assert.deepEqual((await readdir(w.root)).sort(), ['resources']);
});

test('validate and apply refuse an inline CA whose URI SAN names another trust domain than the identity renders, as the server does', async (t) => {
  const w = await workspace(t);
  const lk = makeCa('lk', { trustDomain: 'lk.example' });
  const file = join(w.root, 'mi.yaml');
  const identity = (trustDomain: string) => meshIdentityYaml('leaky', { trustDomain, path: '/x', insecureAllowSelfSigned: true, ca: lk });
  await writeFile(file, identity('other.example'));
  const validated = await meshSds(['validate', file]);
  assert.equal(validated.code, 1, validated.stdout);
  assert.match(validated.stderr, /spec\.provider\.bundled\.ca: CA certificate is the CA of trust domain "lk\.example" \(its URI SAN\), not of "other\.example"/);
  const applied = await meshSds(['apply', '-f', file, ...w.flags]);
  assert.equal(applied.code, 1, applied.stdout);
  assert.match(applied.stderr, /not of "other\.example"[^\n]*\nnothing applied/);
  assert.deepEqual(await readdir(w.resources), [], 'nothing stored');
  // A template of .Zone: rendered with apply's --zone; validate checks it only when given --zone.
  await writeFile(file, identity('lk.{{ .Zone }}'));
  assert.equal((await meshSds(['validate', file])).code, 0, 'the zone is unknown: not checked');
  const wrongZone = await meshSds(['validate', '--zone', 'east', file]);
  assert.equal(wrongZone.code, 1);
  assert.match(wrongZone.stderr, /not of "lk\.east" \(trust domain rendered with --zone east: give the server's --zone if it differs\)/);
  assert.equal((await meshSds(['validate', '--zone', 'example', file])).code, 0);
  assert.equal((await meshSds(['apply', '-f', file, ...w.flags])).code, 1, 'the default zone renders lk.default');
  const right = await meshSds(['apply', '-f', file, '--zone', 'example', ...w.flags]);
  assert.equal(right.code, 0, right.stderr);
});

test('validate and apply refuse a trust domain template that renders longer than 253 characters with its mesh (or zone), as the server would (CaInvalid, not ready); text alone that long is refused whatever the zone', async (t) => {
  const w = await workspace(t);
  const file = join(w.root, 'mi.yaml');
  await writeFile(file, meshIdentityYaml('long', { trustDomain: `${'t'.repeat(240)}.{{ .Mesh }}.example`, path: '/x' }));
  const validated = await meshSds(['validate', file]);
  assert.equal(validated.code, 1, validated.stdout);
  assert.match(validated.stderr, /spec\.spiffeID\.trustDomain: invalid trust domain "t{240}\.default\.example": [^\n]*253[^\n]* when rendered for mesh "default"/);
  const applied = await meshSds(['apply', '-f', file, ...w.flags]);
  assert.equal(applied.code, 1, applied.stdout);
  assert.match(applied.stderr, /when rendered for mesh "default"\nnothing applied/);
  assert.deepEqual(await readdir(w.resources), [], 'nothing stored');
  // .Zone: checked with the zone given; the text alone over 253 needs no zone.
  const long = 't'.repeat(250);
  await writeFile(file, meshIdentityYaml('long', { trustDomain: `${long}.{{ .Zone }}`, path: '/x' }));
  assert.equal((await meshSds(['validate', file])).code, 0, 'the zone is unknown: 251 characters of text may still fit');
  const zoned = await meshSds(['validate', '--zone', 'east', file]);
  assert.equal(zoned.code, 1);
  assert.match(zoned.stderr, /"t{250}\.east"[^\n]* \(rendered with --zone east: give the server's --zone if it differs\)/);
  await writeFile(file, meshIdentityYaml('long', { trustDomain: `${long}.abcd.{{ .Zone }}`, path: '/x' }));
  const text = await meshSds(['validate', file]);
  assert.equal(text.code, 1);
  assert.match(text.stderr, /spec\.spiffeID\.trustDomain: must not be longer than 253 characters once rendered, and its text alone is 256/);
  // Within the limit it is stored.
  await writeFile(file, meshIdentityYaml('fits', { trustDomain: `${'t'.repeat(200)}.{{ .Mesh }}`, path: '/x' }));
  const fits = await meshSds(['apply', '-f', file, ...w.flags]);
  assert.equal(fits.code, 0, fits.stderr);
});

test('a store URL and a resource directory together are refused, naming where each came from (MESH_SDS_STORE no longer silently overrides --resources)', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const url = `${PG_URL}?schema=${schema}`;
  const fromEnv = await meshSds(['apply', '-f', '-', '--resources', w.resources, '--state-dir', join(w.root, 'state')], { input: trustYaml('where', 'where.example'), env: { MESH_SDS_STORE: url } });
  assert.equal(fromEnv.code, 1, fromEnv.stdout);
  assert.match(fromEnv.stderr, /both a store URL \(MESH_SDS_STORE in the environment\) and a resource directory \(--resources on the command line\) are given/);
  assert.deepEqual(await readdir(w.resources), [], 'nothing written to the directory');
  const { rows } = await adminQuery('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema]);
  assert.deepEqual(rows, [], 'nor to Postgres');
  const fromFlags = await meshSds(['get', 'meshtrust', '--store', url, '--state-dir', join(w.root, 'state')], { env: { MESH_SDS_RESOURCES: w.resources } });
  assert.equal(fromFlags.code, 1);
  assert.match(fromFlags.stderr, /both a store URL \(--store on the command line\) and a resource directory \(MESH_SDS_RESOURCES in the environment\)/);
});

test('a --store URL with a query parameter mesh-sds does not know is refused naming it and the known ones, before anything is created (a ?schem= typo used the public schema)', async (t) => {
  const w = await workspace(t);
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const publicTables = async () => (await adminQuery("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")).rows;
  const before = await publicTables();
  // Should this regress, what it created in public is removed (the database is shared).
  t.after(async () => {
    if (before.some((r) => r.table_name === 'resources') || !(await publicTables()).some((r) => r.table_name === 'resources')) return;
    await adminQuery('DROP TABLE IF EXISTS public.resources, public.state, public.schema_version CASCADE; DROP FUNCTION IF EXISTS public.resources_stamp(), public.resources_notify(), public.resources_truncate(); DROP SEQUENCE IF EXISTS public.resource_revision');
  });
  const flags = (query: string) => ['--store', `${PG_URL}?${query}`, '--state-dir', join(w.root, 'state')];
  const typo = await meshSds(['apply', '-f', '-', ...flags(`schem=${schema}&scheme=x`)], { input: trustYaml('typo', 'typo.example') });
  assert.equal(typo.code, 1, typo.stdout);
  assert.match(typo.stderr, /--store: unknown query parameters "schem", "scheme" \(known: schema, application_name, host, port, user, password, .*sslmode, sslcert, sslkey, sslrootcert/);
  assert.deepEqual(await publicTables(), before, 'no table created in public');
  // Every parameter the README and the tests use is still accepted.
  const ok = await meshSds(['apply', '-f', '-', ...flags(`schema=${schema}&application_name=fixd-writes&sslmode=disable`)], { input: trustYaml('ok', 'ok.example') });
  assert.equal(ok.code, 0, ok.stderr);
});
