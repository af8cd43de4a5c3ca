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
