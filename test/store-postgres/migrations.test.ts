// Versioned migrations (SPEC §6): a schema-version table, migrations in order under a lock, a schema
// created before versions existed adopted as version 1, a newer schema refused naming both versions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgresStore } from '../../src/store/postgres.js';
import { SCHEMA_VERSION } from '../../src/store/postgres-schema.js';
import pg from 'pg';
import { adminQuery, dataplaneYaml, dropSchema, PG_URL, sleep, testSchema, waitForSnapshot, withStores } from './helpers.js';

async function versions(schema: string): Promise<number[]> {
  const res = await adminQuery<{ version: number }>(`SELECT version FROM "${schema}".schema_version ORDER BY version`);
  return res.rows.map((r) => r.version);
}

const allVersions = () => Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1);

test('three stores opening an empty schema at the same instant migrate it once, every version recorded once', async () => {
  const schema = testSchema();
  try {
    const stores = await Promise.all([0, 1, 2].map(() => PostgresStore.open(PG_URL, { schema })));
    await Promise.all(stores.map((s) => s.close()));
    assert.deepEqual(await versions(schema), allVersions());
  } finally {
    await dropSchema(schema);
  }
});

test('a schema created before migrations were versioned is adopted as version 1 and migrated, its rows kept', async () => {
  const schema = testSchema();
  try {
    // Exactly what mesh-sds created before: no version table, the internal normalised form in `doc`.
    await adminQuery(`CREATE SCHEMA "${schema}"`);
    await adminQuery(`CREATE TABLE "${schema}".resources (
      kind text NOT NULL, mesh text NOT NULL, namespace text NOT NULL DEFAULT '', name text NOT NULL,
      source text NOT NULL DEFAULT '', source_name text NOT NULL DEFAULT '', doc jsonb,
      updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (kind, mesh, namespace, name))`);
    await adminQuery(`CREATE TABLE "${schema}".state (key text PRIMARY KEY, value text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    await adminQuery(`INSERT INTO "${schema}".state (key, value) VALUES ('ca/x', 'kept')`);
    const legacy = [
      ['Dataplane', 'dp-1', { kind: 'Dataplane', mesh: 'default', namespace: 'shop', name: 'dp-1', labels: { app: 'web', 'k8s.kuma.io/namespace': 'shop' }, source: { file: 'a.yaml', document: 0 } }],
      ['Secret', 'sec', { kind: 'Secret', mesh: 'default', namespace: '', name: 'sec', labels: {}, data: Buffer.from([0, 1, 254, 255]).toString('base64') }],
    ] as const;
    for (const [kind, name, doc] of legacy) {
      await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ($1, 'default', $2, $3, $4::jsonb)`, [
        kind, doc.namespace, name, JSON.stringify(doc),
      ]);
    }
    const store = await PostgresStore.open(PG_URL, { schema });
    try {
      await store.start();
      assert.deepEqual(await versions(schema), allVersions());
      const snap = store.snapshot!;
      assert.deepEqual(snap.errors, []);
      assert.deepEqual(snap.resources.get('Dataplane/default/shop/dp-1')?.labels, { app: 'web', 'k8s.kuma.io/namespace': 'shop' });
      const secret = snap.resources.get('Secret/default//sec');
      assert.ok(secret?.kind === 'Secret');
      assert.deepEqual([...secret.data], [0, 1, 254, 255]);
      assert.equal(await store.state.get('ca/x'), 'kept');
      // Writes after the migration work on the migrated table.
      assert.deepEqual(await store.apply(dataplaneYaml('dp-2', 'api'), 'b.yaml'), []);
    } finally {
      await store.close();
    }
  } finally {
    await dropSchema(schema);
  }
});

test('a schema newer than this binary knows is refused, naming both versions, and left untouched', async () => {
  const schema = testSchema();
  try {
    await (await PostgresStore.open(PG_URL, { schema })).close();
    const newer = SCHEMA_VERSION + 7;
    await adminQuery(`INSERT INTO "${schema}".schema_version (version, description) VALUES ($1, 'from the future')`, [newer]);
    await assert.rejects(
      PostgresStore.open(PG_URL, { schema }),
      (err: Error) => err.message.includes(`version ${newer}`) && err.message.includes(`version ${SCHEMA_VERSION}`) && err.message.includes(schema),
    );
    assert.deepEqual(await versions(schema), [...allVersions(), newer]);
  } finally {
    await dropSchema(schema);
  }
});

test("a schema holding another application's resources or state table is refused, naming each and the columns it lacks, and left untouched: that application's writes keep working", async () => {
  const schema = testSchema();
  try {
    await adminQuery(`CREATE SCHEMA "${schema}"`);
    await adminQuery(`CREATE TABLE "${schema}".resources (id serial PRIMARY KEY, title text NOT NULL)`);
    await adminQuery(`CREATE TABLE "${schema}".state (key text PRIMARY KEY, data jsonb)`);
    await adminQuery(`INSERT INTO "${schema}".resources (title) VALUES ('theirs')`);
    await assert.rejects(
      PostgresStore.open(PG_URL, { schema }),
      (err: Error) =>
        err.message.includes(`postgres schema "${schema}" holds a table ${schema}.resources without columns kind, mesh, namespace, name, source, updated_at and a table ${schema}.state without column value`) &&
        /refusing to adopt it/.test(err.message),
    );
    const columns = await adminQuery<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'resources' ORDER BY ordinal_position",
      [schema],
    );
    assert.deepEqual(columns.rows.map((r) => r.column_name), ['id', 'title'], 'no column added');
    const tables = await adminQuery<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema]);
    assert.deepEqual(tables.rows.map((r) => r.table_name), ['resources', 'state'], 'no schema_version table left behind');
    await adminQuery(`INSERT INTO "${schema}".resources (title) VALUES ('theirs, later')`); // no trigger of ours fires
  } finally {
    await dropSchema(schema);
  }
});

test("a schema whose schema_version table is another tool's (Flyway's, a text version column) is refused naming it, by serve and by read-only commands, instead of 'newer than this mesh-sds: upgrade mesh-sds'", async () => {
  const schema = testSchema();
  try {
    await adminQuery(`CREATE SCHEMA "${schema}"`);
    await adminQuery(`CREATE TABLE "${schema}".schema_version (installed_rank int PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL, script varchar(1000) NOT NULL DEFAULT 'V1__init.sql')`);
    await adminQuery(`INSERT INTO "${schema}".schema_version (installed_rank, version, description) VALUES (1, '5', 'init')`);
    const expected = `postgres schema "${schema}" holds a schema_version table that is not mesh-sds's (its version column is character varying(50), not integer`;
    await assert.rejects(PostgresStore.open(PG_URL, { schema }), (err: Error) => err.message.startsWith(expected) && !/upgrade mesh-sds/.test(err.message));
    // A read-only command finds mesh-sds's other tables there too, and still names the foreign one.
    await adminQuery(`CREATE TABLE "${schema}".resources (kind text, mesh text, namespace text, name text, source text, updated_at timestamptz)`);
    await adminQuery(`CREATE TABLE "${schema}".state (key text, value text)`);
    await assert.rejects(PostgresStore.open(PG_URL, { schema, readOnly: true }), (err: Error) => err.message.startsWith(expected));
    const { rows } = await adminQuery<{ version: string }>(`SELECT version FROM "${schema}".schema_version`);
    assert.deepEqual(rows, [{ version: '5' }], 'left untouched');
  } finally {
    await dropSchema(schema);
  }
});

/** Opens a session that holds the resources table (a transaction left open after a SELECT, as psql users do). */
async function holdTable(schema: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query('BEGIN');
  await c.query(`SELECT count(*) FROM "${schema}".resources`);
  return c;
}

async function waitForMigratorOnLock(): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const res = await adminQuery(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'mesh-sds-migrate' AND wait_event_type = 'Lock'`);
    if (res.rowCount) return;
    await sleep(10);
  }
  throw new Error('the migration never waited on a lock');
}

test('a replica starting while a long transaction holds the resources table (trigger to recreate) does not stall the running replicas: their writes and reads go through while it waits, and it repairs the feed once the table is free', async () => {
  await withStores(1, async ([a], schema) => {
    await adminQuery(`DROP TRIGGER resources_truncate ON "${schema}".resources`);
    const idle = await holdTable(schema);
    let opened: PostgresStore | undefined;
    const opening = PostgresStore.open(PG_URL, { schema, feedRepairLockTimeoutMs: 300 }).then((b) => (opened = b));
    try {
      await waitForMigratorOnLock();
      // Queued behind the migration's exclusive lock request, these waited (and failed at the 5 s statement timeout) until it got it.
      assert.deepEqual(await a!.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
      assert.equal((await a!.list('Dataplane')).length, 1);
      assert.equal(opened, undefined, 'still waiting for the table');
    } finally {
      await idle.query('ROLLBACK');
      await idle.end();
      await (await opening).close();
    }
    const triggers = await adminQuery(`SELECT 1 FROM pg_trigger WHERE tgname = 'resources_truncate' AND tgrelid = to_regclass($1)`, [`"${schema}".resources`]);
    assert.equal(triggers.rowCount, 1, 'recreated once the table was free');
  });
});

test('a replica that cannot get the resources table for its migration within the migration timeout fails to start, saying a session holds the table', async () => {
  await withStores(1, async (_stores, schema) => {
    await adminQuery(`DROP TRIGGER resources_truncate ON "${schema}".resources`);
    const idle = await holdTable(schema);
    try {
      await assert.rejects(
        PostgresStore.open(PG_URL, { schema, feedRepairLockTimeoutMs: 200, migrationTimeoutMs: 1000 }),
        (e: Error) => e.message.includes(`"${schema}".resources`) && /another session holds a lock/.test(e.message) && /pg_stat_activity/.test(e.message),
      );
    } finally {
      await idle.query('ROLLBACK');
      await idle.end();
    }
  });
});

test('a schema name Postgres would cut (over 63 bytes), an empty one or one holding a NUL is refused before anything is opened, naming the rule: two long names sharing their first 63 bytes were one schema', async () => {
  const prefix = `mesh_sds_test_${'x'.repeat(49)}`; // 63 bytes
  for (const [url, reason] of [
    [`${PG_URL}?schema=${prefix}_prod`, /postgres schema "mesh_sds_test_x+_prod" is 68 bytes long: Postgres cuts names to 63 bytes/],
    [`${PG_URL}?schema=`, /postgres schema "" is empty/],
    [`${PG_URL}?schema=a%00b`, /postgres schema .* holds a NUL/],
  ] as const) {
    await assert.rejects(PostgresStore.open(url), (e: Error) => reason.test(e.message));
  }
  const left = await adminQuery(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [prefix]);
  assert.equal(left.rowCount, 0, 'nothing created');
  const ok = await PostgresStore.open(PG_URL, { schema: prefix });
  await ok.close();
  await dropSchema(prefix);
});

test("a schema name holding $$, quotes and a semicolon is created, migrated and served like any other (its name was spliced into a $$-quoted function body)", async () => {
  const schema = `${testSchema()}$$ x'"; --`;
  try {
    await withStoresOn(schema, async (a) => {
      assert.deepEqual(await a.apply(dataplaneYaml('dp-1', 'web'), 'a.yaml'), []);
      await adminQuery(`INSERT INTO ${ident(schema)}.resources (kind, mesh, name, source) VALUES ('Dataplane', 'default', 'dp-2', $1)`, [dataplaneYaml('dp-2', 'web')]);
      await waitForSnapshot(a, (s) => s.resources.has('Dataplane/default//dp-1') && s.resources.has('Dataplane/default//dp-2'));
    });
  } finally {
    await adminQuery(`DROP SCHEMA IF EXISTS ${ident(schema)} CASCADE`);
  }
});

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

async function withStoresOn(schema: string, fn: (s: PostgresStore) => Promise<void>): Promise<void> {
  const s = await PostgresStore.open(PG_URL, { schema });
  try {
    await s.start();
    await fn(s);
  } finally {
    await s.close();
  }
}
