// get, inspect and export-trust only read: against Postgres they refuse a schema that does not exist
// (a mistyped ?schema=) or holds no mesh-sds tables, naming it, and create nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meshSds } from './run.js';
import { dataplaneYaml } from '../helpers/yaml.js';
import { PG_URL, adminQuery, dropSchema, testSchema } from '../store-postgres/helpers.js';

const withSchema = (schema: string) => `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}`;

const READ_ONLY = [['get', 'dataplane'], ['inspect', '--dataplane', 'default.web-1'], ['export-trust', '--mesh', 'default']];

async function tablesOf(schema: string): Promise<{ schema: boolean; tables: string[] }> {
  const ns = await adminQuery('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  const tables = await adminQuery<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name', [schema]);
  return { schema: (ns.rowCount ?? 0) > 0, tables: tables.rows.map((r) => r.table_name) };
}

test('read-only commands refuse a Postgres schema that does not exist, naming it, and create nothing', async (t) => {
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  for (const args of READ_ONLY) {
    const r = await meshSds([...args, '--store', withSchema(schema)]);
    assert.equal(r.code, 1, `${args[0]}: ${r.stdout}`);
    assert.equal(r.stdout, '', args[0]);
    assert.ok(r.stderr.includes(`postgres schema "${schema}" does not exist (check the schema= parameter of --store;`), `${args[0]}: ${r.stderr}`);
  }
  assert.deepEqual(await tablesOf(schema), { schema: false, tables: [] }, 'no schema and no table was created');
});

test('read-only commands refuse an existing schema without mesh-sds tables, creating none; after apply they read it', async (t) => {
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  await adminQuery(`CREATE SCHEMA "${schema}"`);
  for (const args of READ_ONLY) {
    const r = await meshSds([...args, '--store', withSchema(schema)]);
    assert.equal(r.code, 1, `${args[0]}: ${r.stdout}`);
    assert.ok(r.stderr.includes(`postgres schema "${schema}" holds no mesh-sds tables (missing: resources, state, schema_version)`), `${args[0]}: ${r.stderr}`);
  }
  assert.deepEqual(await tablesOf(schema), { schema: true, tables: [] }, 'no table was created');
  // apply writes: it creates the tables, and then get reads them.
  const applied = await meshSds(['apply', '-f', '-', '--store', withSchema(schema)], { input: dataplaneYaml('web-1', { app: 'web' }) });
  assert.equal(applied.code, 0, applied.stderr);
  const got = await meshSds(['get', 'dataplane', '--store', withSchema(schema)]);
  assert.equal(got.code, 0, got.stderr);
  assert.match(got.stdout, /^default\s+web-1\s+app=web$/m);
});

test('get lists a row whose key columns another tool filled with terminal controls and a line break escaped, on one line: the terminal acts on none of them', async (t) => {
  const schema = testSchema();
  t.after(() => dropSchema(schema));
  const applied = await meshSds(['apply', '-f', '-', '--store', withSchema(schema), '--insecure-plaintext-state'], { input: dataplaneYaml('web', { app: 'web' }) });
  assert.equal(applied.code, 0, applied.stderr);
  // Sets the window title, clears the screen, and (C1 CSI, a line break) forges a line of its own.
  const hostile = '\x1b]0;pwned\x07\x1b[2J\x9b31m\n  fake problem';
  await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ('Dataplane', 'default', '', $1, '{}')`, [hostile]);
  const r = await meshSds(['get', 'dataplane', '--store', withSchema(schema)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /web/);
  const controls = [...r.stderr].filter((c) => c !== '\n' && (c < ' ' || (c >= '\x7f' && c <= '\x9f')));
  assert.deepEqual(controls, [], 'no control character reaches the terminal');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 2, r.stderr);
  assert.ok(lines[1]!.includes('row Dataplane/default//\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\n  fake problem (document 1)'), lines[1]);
});
