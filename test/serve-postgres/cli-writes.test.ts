// `apply` and `delete` against the Postgres store as a user runs them: separate processes at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { meshSds } from '../cli/run.js';
import { makeCa } from '../helpers/openssl.js';
import { dataplaneYaml, meshTrustYaml } from '../helpers/yaml.js';
import { PG_URL, dropSchema, testSchema } from '../store-postgres/helpers.js';

const schemas: string[] = [];
after(async () => {
  for (const s of schemas) await dropSchema(s);
});
const ca = makeCa('pg-cli-writes');

function store(): string[] {
  const schema = testSchema();
  schemas.push(schema);
  return ['--store', `${PG_URL}?schema=${schema}`];
}

async function getJson(flags: string[], kind: string, name?: string): Promise<any> {
  const r = await meshSds(['get', kind, ...(name ? [name] : []), '-o', 'json', ...flags]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('Postgres: twenty concurrent apply processes to twenty resources lose none', async () => {
  const flags = store();
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => meshSds(['apply', '-f', '-', ...flags], { input: dataplaneYaml(`dp-${i}`, { app: `a${i}` }) })),
  );
  assert.deepEqual(results.map((r) => r.code), Array(20).fill(0), results.map((r) => r.stderr).join(''));
  assert.equal((await getJson(flags, 'dataplane')).length, 20);
});

test('Postgres: two concurrent applies to one resource based on the same version give exactly one conflict naming it; --force overwrites', async () => {
  const flags = store();
  const trust = (td: string) => meshTrustYaml('shared', td, [ca.certPem]);
  assert.equal((await meshSds(['apply', '-f', '-', ...flags], { input: trust('v1.example') })).code, 0);
  const { resourceVersion } = await getJson(flags, 'meshtrust', 'shared');
  assert.match(String(resourceVersion), /^\d+$/);
  const edit = (td: string) => trust(td).replace(/^name: shared$/m, `name: shared\nresourceVersion: "${resourceVersion}"`);
  const [a, b] = await Promise.all([
    meshSds(['apply', '-f', '-', ...flags], { input: edit('a.example') }),
    meshSds(['apply', '-f', '-', ...flags], { input: edit('b.example') }),
  ]);
  assert.deepEqual([a.code, b.code].sort(), [0, 1], a.stderr + b.stderr);
  const loser = a.code === 1 ? a : b;
  assert.match(loser.stderr, /conflict: MeshTrust "shared" of mesh "default" was changed by another writer/);
  const winnerTd = a.code === 0 ? 'a.example' : 'b.example';
  assert.equal((await getJson(flags, 'meshtrust', 'shared')).spec.trustDomain, winnerTd, 'the winner is stored, not overwritten');
  assert.equal((await meshSds(['apply', '-f', '-', ...flags], { input: edit('c.example') })).code, 1, 'the stale version again: a conflict');
  assert.equal((await meshSds(['apply', '-f', '-', '--force', ...flags], { input: edit('c.example') })).code, 0);
  assert.equal((await getJson(flags, 'meshtrust', 'shared')).spec.trustDomain, 'c.example');
});

test('Postgres: delete removes an applied resource; deleting it again is an error', async () => {
  const flags = store();
  assert.equal((await meshSds(['apply', '-f', '-', ...flags], { input: dataplaneYaml('dp-1', { app: 'web' }) })).code, 0);
  const del = await meshSds(['delete', 'dataplane', 'dp-1', '--mesh', 'default', ...flags]);
  assert.equal(del.code, 0, del.stderr);
  assert.deepEqual(await getJson(flags, 'dataplane'), []);
  assert.notEqual((await meshSds(['delete', 'dataplane', 'dp-1', '--mesh', 'default', ...flags])).code, 0);
});
