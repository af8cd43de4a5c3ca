// Tables of the PostgreSQL store and their idempotent migrations.
import type pg from 'pg';

/** NOTIFY channel shared by every replica; the payload is the schema that changed. */
export const RESOURCES_CHANNEL = 'mesh_sds_resources';

/** Quotes an SQL identifier (schema names come from configuration, never trust them raw). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface SchemaTables {
  schema: string;
  resources: string;
  state: string;
}

export function tablesOf(schema: string): SchemaTables {
  const s = quoteIdent(schema);
  return { schema, resources: `${s}.resources`, state: `${s}.state` };
}

// Any fixed number works; it only has to be the same for every replica.
const MIGRATION_LOCK_ID = 0x6d657368; // 'mesh'

/**
 * Creates the schema and tables when missing. Runs under a transaction-scoped advisory lock because
 * concurrent `CREATE TABLE IF NOT EXISTS` from two replicas starting together can still collide.
 */
export async function migrate(client: pg.ClientBase, t: SchemaTables): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
    await client.query(`
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
    // Columns added after the first release go here as ADD COLUMN IF NOT EXISTS.
    await client.query(`ALTER TABLE ${t.resources} ADD COLUMN IF NOT EXISTS source_name text NOT NULL DEFAULT ''`);
    await client.query(`ALTER TABLE ${t.resources} ADD COLUMN IF NOT EXISTS doc jsonb`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS ${t.state} (
        key text PRIMARY KEY,
        value text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
