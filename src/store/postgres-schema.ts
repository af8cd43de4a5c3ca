// Tables of the PostgreSQL store and their versioned migrations.
import type pg from 'pg';
import { quoted } from '../api/quote.js';
import { inTransaction } from './postgres-tx.js';

/**
 * NOTIFY channel whose payload is only the schema name: every replica of that schema reads everything
 * once. Sent after the change feed was repaired, on TRUNCATE (and by mesh-sds before schema version 2 for every write).
 */
export const RESOURCES_CHANNEL = 'mesh_sds_resources';
/** NOTIFY channel of the change feed: one JSON payload per changed row (see `ChangeNotice`). */
export const CHANGES_CHANNEL = 'mesh_sds_changes';

/** What the trigger sends for each inserted, updated or deleted row. A payload too large for NOTIFY carries `full: true`. */
export interface ChangeNotice {
  schema: string;
  kind?: string;
  mesh?: string;
  namespace?: string;
  name?: string;
  revision?: number;
  full?: boolean;
}

/**
 * A function body in dollar quotes whose tag it does not hold: the body names the schema, and a
 * schema name with `$$` in it ended a `$$` quote early (start-up failed: "syntax error at or near …").
 */
function dollarQuoted(body: string): string {
  let tag = '$mesh_sds$';
  while (body.includes(tag)) tag = `${tag.slice(0, -1)}_$`;
  return `${tag}${body}${tag}`;
}

/** Quotes an SQL identifier (schema names come from configuration, never trust them raw). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export interface SchemaTables {
  schema: string;
  resources: string;
  state: string;
  versions: string;
}

export function tablesOf(schema: string): SchemaTables {
  const s = quoteIdent(schema);
  return { schema, resources: `${s}.resources`, state: `${s}.state`, versions: `${s}.schema_version` };
}

interface Migration {
  version: number;
  description: string;
  up(c: pg.ClientBase, t: SchemaTables): Promise<void>;
}

/**
 * In order; never edit a released migration, add a new one. Version 1 is what mesh-sds created
 * before migrations were versioned (idempotent, so such a schema is adopted as version 1).
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'resources and state tables',
    async up(c, t) {
      await c.query(`
        CREATE TABLE IF NOT EXISTS ${t.resources} (
          kind text NOT NULL,
          mesh text NOT NULL,
          namespace text NOT NULL DEFAULT '',
          name text NOT NULL,
          source text NOT NULL DEFAULT '',
          source_name text NOT NULL DEFAULT '',
          doc jsonb,
          updated_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (kind, mesh, namespace, name)
        )`);
      await c.query(`ALTER TABLE ${t.resources} ADD COLUMN IF NOT EXISTS source_name text NOT NULL DEFAULT ''`);
      await c.query(`ALTER TABLE ${t.resources} ADD COLUMN IF NOT EXISTS doc jsonb`);
      await c.query(`
        CREATE TABLE IF NOT EXISTS ${t.state} (
          key text PRIMARY KEY,
          value text NOT NULL,
          updated_at timestamptz NOT NULL DEFAULT now()
        )`);
    },
  },
  {
    version: 2,
    description: 'row revisions and a change-feed trigger',
    async up(c, t) {
      const s = quoteIdent(t.schema);
      // One counter per schema: a row's `revision` is the last write that touched it, and the
      // optimistic-concurrency version of the resource.
      await c.query(`CREATE SEQUENCE IF NOT EXISTS ${s}.resource_revision`);
      await c.query(`ALTER TABLE ${t.resources} ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0`);
      await c.query(`UPDATE ${t.resources} SET revision = nextval(${quoteLiteral(`${s}.resource_revision`)})`);
      await createChangeFeed(c, t);
    },
  },
  {
    version: 3,
    description: 'the change feed also names the old key of a row an UPDATE renamed, and announces TRUNCATE',
    async up(c, t) {
      await createChangeFeed(c, t);
    },
  },
];

/** The triggers migrations 2 and 3 install, by name; each calls the function of the same name in the schema. */
const TRIGGERS = ['resources_stamp', 'resources_notify', 'resources_truncate'] as const;

/**
 * The row stamp and change-feed triggers and their functions (idempotent). Used by migrations 2 and 3 and
 * to repair a schema that lost them: a later migration that changes them must change this too.
 */
async function createChangeFeed(c: pg.ClientBase, t: SchemaTables): Promise<void> {
  const s = quoteIdent(t.schema);
  await c.query(`
    CREATE OR REPLACE FUNCTION ${s}.resources_stamp() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuoted(`
    BEGIN
      NEW.revision := nextval(${quoteLiteral(`${s}.resource_revision`)});
      NEW.updated_at := now();
      RETURN NEW;
    END`)}`);
  // Every write, including rows written with SQL by another tool, tells every replica which
  // row changed (delivered on commit). NOTIFY payloads are limited to 8000 bytes. An UPDATE of
  // the key columns (a rename, a kind spelt right) also names the old key, which no longer
  // exists: told only the new one, replicas kept serving the old resource until a full reload.
  await c.query(`
    CREATE OR REPLACE FUNCTION ${s}.resources_notify() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuoted(`
    DECLARE
      r record;
      payload text;
    BEGIN
      FOR i IN 1..2 LOOP
        IF i = 1 THEN
          IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
        ELSE
          EXIT WHEN TG_OP <> 'UPDATE';
          EXIT WHEN (OLD.kind, OLD.mesh, OLD.namespace, OLD.name) IS NOT DISTINCT FROM (NEW.kind, NEW.mesh, NEW.namespace, NEW.name);
          r := OLD;
        END IF;
        payload := json_build_object('schema', ${quoteLiteral(t.schema)}, 'kind', r.kind, 'mesh', r.mesh,
          'namespace', r.namespace, 'name', r.name, 'revision', r.revision)::text;
        IF octet_length(payload) > 7900 THEN
          payload := json_build_object('schema', ${quoteLiteral(t.schema)}, 'full', true)::text;
        END IF;
        PERFORM pg_notify(${quoteLiteral(CHANGES_CHANNEL)}, payload);
      END LOOP;
      RETURN NULL;
    END`)}`);
  // TRUNCATE fires no row trigger: without this, every replica kept serving the emptied table's rows.
  await c.query(`
    CREATE OR REPLACE FUNCTION ${s}.resources_truncate() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuoted(`
    BEGIN
      PERFORM pg_notify(${quoteLiteral(RESOURCES_CHANNEL)}, ${quoteLiteral(t.schema)});
      RETURN NULL;
    END`)}`);
  await c.query(`DROP TRIGGER IF EXISTS resources_stamp ON ${t.resources}`);
  await c.query(`CREATE TRIGGER resources_stamp BEFORE INSERT OR UPDATE ON ${t.resources}
    FOR EACH ROW EXECUTE FUNCTION ${s}.resources_stamp()`);
  await c.query(`DROP TRIGGER IF EXISTS resources_notify ON ${t.resources}`);
  await c.query(`CREATE TRIGGER resources_notify AFTER INSERT OR UPDATE OR DELETE ON ${t.resources}
    FOR EACH ROW EXECUTE FUNCTION ${s}.resources_notify()`);
  await c.query(`DROP TRIGGER IF EXISTS resources_truncate ON ${t.resources}`);
  await c.query(`CREATE TRIGGER resources_truncate AFTER TRUNCATE ON ${t.resources}
    FOR EACH STATEMENT EXECUTE FUNCTION ${s}.resources_truncate()`);
}

/**
 * What of the triggers (and their functions) is missing or disabled: dropped by hand, the schema
 * version still says they are there, and replicas would silently never see a change.
 */
async function missingTriggers(c: pg.ClientBase, t: SchemaTables): Promise<string[]> {
  const res = await c.query<{ name: string; fn: boolean; enabled: string | null }>(
    `SELECT n.name, to_regprocedure(format('%I.%I()', $1::text, n.name)) IS NOT NULL AS fn, tg.tgenabled AS enabled
     FROM unnest($2::text[]) WITH ORDINALITY AS n(name, i)
     LEFT JOIN pg_trigger tg ON tg.tgrelid = to_regclass(format('%I.resources', $1::text)) AND tg.tgname = n.name
       AND NOT tg.tgisinternal AND tg.tgfoid = to_regprocedure(format('%I.%I()', $1::text, n.name))
     ORDER BY n.i`,
    [t.schema, TRIGGERS],
  );
  return res.rows.flatMap((r) => {
    const trigger = `trigger ${r.name} on ${t.schema}.resources`;
    const out = r.fn ? [] : [`function ${t.schema}.${r.name}()`];
    // 'O' and 'A' fire in ordinary sessions; 'D' is disabled, 'R' fires only on replicas.
    if (r.enabled === null) out.push(trigger);
    else if (r.enabled !== 'O' && r.enabled !== 'A') out.push(`${trigger} (disabled)`);
    return out;
  });
}

/**
 * Recreates the triggers when any part is missing; returns what was missing. Every replica listening
 * is then told to read everything once (on commit): the writes made meanwhile were announced to none.
 */
async function repairTriggers(c: pg.ClientBase, t: SchemaTables): Promise<string[]> {
  const missing = await missingTriggers(c, t);
  if (missing.length === 0) return [];
  try {
    await createChangeFeed(c, t);
  } catch (err) {
    throw new Error(`postgres schema "${t.schema}": ${missing.join(', ')} missing and could not be recreated: ${(err as Error).message}`, { cause: err });
  }
  await c.query('SELECT pg_notify($1, $2)', [RESOURCES_CHANNEL, t.schema]);
  return missing;
}

/** The schema version this binary creates and understands. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

// Any fixed number works; it only has to be the same for every replica (the schema is the second key).
const MIGRATION_LOCK_ID = 0x6d657368; // 'mesh'

export const MIGRATION_TIMEOUT_MS = 120_000;

export class SchemaTooNewError extends Error {}

/** A read-only command's schema is missing, empty or not at this binary's version: nothing is created or migrated. */
export class SchemaNotReadyError extends Error {}

/**
 * For commands that only read (get, inspect, export-trust): the schema must exist, hold the tables
 * and be at this binary's version. Nothing is created, migrated or repaired: a mistyped
 * `?schema=` would otherwise create a schema and tables and print an empty, successful result.
 */
export async function checkSchemaReadOnly(client: pg.ClientBase, t: SchemaTables): Promise<number> {
  const name = quoted(t.schema);
  const fix = 'serve, apply or import create and migrate it; this command only reads';
  const ns = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [t.schema]);
  if (ns.rowCount === 0) throw new SchemaNotReadyError(`postgres schema ${name} does not exist (check the schema= parameter of --store; ${fix})`);
  const tables = await client.query<{ versions: boolean; resources: boolean; state: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AS versions, to_regclass($2) IS NOT NULL AS resources, to_regclass($3) IS NOT NULL AS state',
    [t.versions, t.resources, t.state],
  );
  const row = tables.rows[0];
  const missing = (['resources', 'state', 'versions'] as const).filter((k) => !row?.[k]).map((k) => (k === 'versions' ? 'schema_version' : k));
  if (missing.length > 0) throw new SchemaNotReadyError(`postgres schema ${name} holds no mesh-sds tables (missing: ${missing.join(', ')}); is it the server's schema? (${fix})`);
  const foreign = await foreignVersionTable(client, t);
  if (foreign !== undefined) throw new SchemaNotReadyError(foreign);
  const res = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${t.versions}`);
  const version = res.rows[0]?.v ?? 0;
  if (version > SCHEMA_VERSION) {
    throw new SchemaTooNewError(`postgres schema ${name} is at version ${version}, newer than this mesh-sds knows (version ${SCHEMA_VERSION}): upgrade mesh-sds`);
  }
  if (version < SCHEMA_VERSION) {
    throw new SchemaNotReadyError(`postgres schema ${name} is at version ${version}, older than this mesh-sds (version ${SCHEMA_VERSION}): ${fix}`);
  }
  return version;
}

/**
 * Checks a running schema's change feed and recreates what is missing, serialised with migrations
 * and other replicas' repairs by the migration lock. Waits at most `lockTimeoutMs` for the table
 * (recreating a trigger locks it against writers): a long transaction holding it fails the repair
 * instead of stalling every reader queued behind it. Returns what was missing and recreated
 * (empty: nothing, or another replica got there first).
 */
export async function repairChangeFeed(pool: pg.Pool, t: SchemaTables, lockTimeoutMs: number): Promise<string[]> {
  return inTransaction(pool, async (c) => {
    await c.query(`SET LOCAL lock_timeout = '${Math.max(1, Math.round(lockTimeoutMs))}ms'`);
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK_ID, t.schema]);
    // A newer mesh-sds may have migrated the schema since this one started: its triggers are not
    // ours to put back (this binary's would undo its migration).
    const res = await c.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${t.versions}`);
    const version = res.rows[0]?.v ?? 0;
    if (version !== SCHEMA_VERSION) {
      throw new Error(`the schema is at version ${version}, this mesh-sds knows version ${SCHEMA_VERSION}: not recreated (upgrade this replica)`);
    }
    return repairTriggers(c, t);
  });
}

/** What of the change feed is missing in a running schema (a catalog read; see missingTriggers). */
export async function changeFeedGaps(pool: pg.Pool, t: SchemaTables): Promise<string[]> {
  const c = await pool.connect();
  try {
    return await missingTriggers(c, t);
  } finally {
    c.release();
  }
}

/**
 * Why the schema's `schema_version` table is another tool's (its `version` is not an integer
 * column), or undefined. Flyway before version 5 named its table so: read as mesh-sds's, its
 * text versions said "newer than this mesh-sds knows: upgrade mesh-sds", or failed on a table
 * that does not exist.
 */
async function foreignVersionTable(c: pg.ClientBase, t: SchemaTables): Promise<string | undefined> {
  const res = await c.query<{ type: string }>(
    `SELECT format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
     WHERE a.attrelid = to_regclass($1) AND a.attname = 'version' AND a.attnum > 0 AND NOT a.attisdropped`,
    [t.versions],
  );
  const type = res.rows[0]?.type;
  if (type === 'integer') return undefined;
  return `postgres schema ${quoted(t.schema)} holds a schema_version table that is not mesh-sds's (its version column is ${type ?? 'missing'}, not integer: another tool's, such as Flyway before version 5): give mesh-sds a schema of its own (?schema= of --store)`;
}

/** Columns a table of mesh-sds's from before versioning has, which migration 1 does not add. */
const ADOPTABLE: Readonly<Record<string, readonly string[]>> = {
  resources: ['kind', 'mesh', 'namespace', 'name', 'source', 'updated_at'],
  state: ['key', 'value'],
};

/**
 * `resources` and `state` tables of an unversioned schema that mesh-sds did not create, each with
 * the columns it lacks. Adopted as mesh-sds's (a schema from before versioning), another
 * application's `public.resources` got columns and triggers, and its own inserts failed.
 */
async function foreignTables(c: pg.ClientBase, t: SchemaTables): Promise<string[]> {
  const res = await c.query<{ name: string; columns: string[] }>(
    `SELECT cl.relname AS name, array_agg(a.attname::text) FILTER (WHERE a.attname IS NOT NULL) AS columns
     FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
     LEFT JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = $1 AND cl.relname = ANY($2::text[])
     GROUP BY cl.relname ORDER BY cl.relname`,
    [t.schema, Object.keys(ADOPTABLE)],
  );
  return res.rows.flatMap((r) => {
    const missing = (ADOPTABLE[r.name] ?? []).filter((col) => !(r.columns ?? []).includes(col));
    return missing.length === 0 ? [] : [`a table ${t.schema}.${r.name} without column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`];
  });
}

/**
 * Brings the schema to SCHEMA_VERSION: every pending migration in order, in one transaction under
 * an advisory lock, so replicas starting at the same instant migrate once and the others wait.
 * A schema newer than this binary knows is refused (naming both versions), never touched.
 * `repaired`: the triggers or functions found missing (or disabled) and recreated.
 */
export async function migrate(
  client: pg.ClientBase,
  t: SchemaTables,
  opts: { lockTimeoutMs?: number; timeoutMs?: number } = {},
): Promise<{ from: number; to: number; repaired: string[] }> {
  const lockTimeoutMs = Math.max(1, Math.round(opts.lockTimeoutMs ?? 2000));
  const timeoutMs = opts.timeoutMs ?? MIGRATION_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  // Changing the table (a migration, a trigger put back) needs its exclusive lock; waiting for it
  // queues every other session's reads and writes behind the request. Asked for while a long
  // transaction held the table, every running replica's reads and writes stalled until it ended
  // (up to the 120 s timeout). So the lock is waited for briefly, and asked for again after a pause.
  for (;;) {
    try {
      // The table's lock_timeout ends first, so the error says what held it.
      return await migrateOnce(client, t, lockTimeoutMs, Math.max(0, Math.round(deadline - performance.now())) + lockTimeoutMs);
    } catch (err) {
      if (!lockTimedOut(err)) throw err;
      if (performance.now() + lockTimeoutMs >= deadline) {
        throw new Error(
          `postgres schema ${quoted(t.schema)}: another session holds a lock on its tables (${t.resources} or ${t.versions}: a long transaction, find it in pg_locks and pg_stat_activity), so it could not be migrated or its change-feed triggers recreated within ${timeoutMs / 1000} s`,
          { cause: err },
        );
      }
      await new Promise((r) => setTimeout(r, lockTimeoutMs));
    }
  }
}

/** Whether a lock_timeout ended the statement (repairTriggers wraps the database's error). */
function lockTimedOut(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) if ((e as { code?: unknown }).code === '55P03') return true;
  return false;
}

async function migrateOnce(client: pg.ClientBase, t: SchemaTables, lockTimeoutMs: number, timeoutMs: number): Promise<{ from: number; to: number; repaired: string[] }> {
  await client.query('BEGIN');
  try {
    // Waiting for another replica's migration is expected at start-up; the pool's short timeout is for serving.
    await client.query(`SET LOCAL statement_timeout = '${timeoutMs}ms'`);
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK_ID, t.schema]);
    // Set once the advisory lock is held: that one may be waited for (another replica migrating).
    await client.query(`SET LOCAL lock_timeout = '${lockTimeoutMs}ms'`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS ${t.versions} (
        version integer PRIMARY KEY,
        description text NOT NULL DEFAULT '',
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const foreignVersions = await foreignVersionTable(client, t);
    if (foreignVersions !== undefined) throw new Error(foreignVersions);
    const res = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${t.versions}`);
    const from = res.rows[0]?.v ?? 0;
    if (from > SCHEMA_VERSION) {
      throw new SchemaTooNewError(
        `postgres schema "${t.schema}" is at version ${from}, newer than this mesh-sds knows (version ${SCHEMA_VERSION}): upgrade mesh-sds`,
      );
    }
    if (from === 0) {
      const foreign = await foreignTables(client, t);
      if (foreign.length > 0) {
        throw new Error(
          `postgres schema ${quoted(t.schema)} holds ${foreign.join(' and ')}: another application's table, not one mesh-sds created; refusing to adopt it (mesh-sds would add columns and triggers to it). Give mesh-sds a schema of its own (?schema= of --store)`,
        );
      }
    }
    for (const m of MIGRATIONS) {
      if (m.version <= from) continue;
      await m.up(client, t);
      await client.query(`INSERT INTO ${t.versions} (version, description) VALUES ($1, $2)`, [m.version, m.description]);
    }
    // The version table says what was installed, not what is still there.
    const repaired = await repairTriggers(client, t);
    await client.query('COMMIT');
    return { from, to: Math.max(from, SCHEMA_VERSION), repaired };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
