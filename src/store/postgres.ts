// PostgreSQL resource store (SPEC §6): resources and shared state in tables, changes fanned out to
// every replica with LISTEN/NOTIFY. The server keeps serving its last snapshot while the database is away.
import pg from 'pg';
import { ReplaySubject, type Observable } from 'rxjs';
import { parseResources } from '../api/parse.js';
import {
  resourceKey,
  type Resource,
  type ResourceError,
  type ResourceKind,
  type ResourceSnapshot,
} from '../api/types.js';
import type { ResourceStore, StateStore } from './types.js';
import { decodeResource, encodeResource, splitDocuments } from './postgres-codec.js';
import { migrate, RESOURCES_CHANNEL, tablesOf, type SchemaTables } from './postgres-schema.js';
import { PostgresStateStore } from './postgres-state.js';

/** Structured logger; pino's Logger satisfies it. */
export interface StoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface PostgresStoreOptions {
  /** Schema holding the tables; created when missing. Default: `schema` query parameter of the URL, else `public`. */
  schema?: string;
  logger?: StoreLogger;
  /** Coalesces bursts of notifications into one reload. Default 50 ms. */
  debounceMs?: number;
  /** First and maximum delay between reconnect attempts of the LISTEN connection. Default 1 s and 30 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

const silentLogger: StoreLogger = { info() {}, warn() {}, error() {} };

interface Entry {
  /** `doc` text as stored (jsonb output is canonical), or the source text for rows without a doc. */
  fingerprint: string;
  /** Last good version; kept when the row later fails to load. */
  resource?: Resource;
  errors: ResourceError[];
}

interface ResourceRow {
  kind: string;
  mesh: string;
  namespace: string;
  name: string;
  source: string;
  source_name: string;
  doc: string | null;
}

export class PostgresStore implements ResourceStore {
  readonly state: StateStore;
  readonly schema: string;
  private readonly subject = new ReplaySubject<ResourceSnapshot>(1);
  readonly snapshots$: Observable<ResourceSnapshot> = this.subject.asObservable();

  private readonly t: SchemaTables;
  private readonly log: StoreLogger;
  private readonly debounceMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;

  private entries = new Map<string, Entry>();
  private current: ResourceSnapshot | undefined;
  private revision = 0;
  private started = false;
  private closed = false;

  private listener: pg.Client | undefined;
  private listenerBackendPid: number | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectAttempts = 0;

  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading = false;
  private reloadAgain = false;
  private reloadFailures = 0;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly clientConfig: pg.ClientConfig,
    schema: string,
    opts: PostgresStoreOptions,
  ) {
    this.schema = schema;
    this.t = tablesOf(schema);
    this.log = opts.logger ?? silentLogger;
    this.debounceMs = opts.debounceMs ?? 50;
    this.reconnectMinMs = opts.reconnectMinMs ?? 1000;
    this.reconnectMaxMs = opts.reconnectMaxMs ?? 30_000;
    this.state = new PostgresStateStore(pool, this.t.state);
  }

  /** Connects and creates the schema and tables when missing. Call `start()` to load the first snapshot. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const { connectionString, schema: urlSchema } = splitSchemaParam(url);
    const schema = opts.schema ?? urlSchema ?? 'public';
    const clientConfig: pg.ClientConfig = { connectionString, application_name: 'mesh-sds' };
    const pool = new pg.Pool({ ...clientConfig, max: 4 });
    const log = opts.logger ?? silentLogger;
    // An idle pooled connection that the server drops must not crash the process.
    pool.on('error', (err) => log.warn({ err: err.message, schema }, 'postgres store: pooled connection lost'));
    try {
      const client = await pool.connect();
      try {
        await migrate(client, tablesOf(schema));
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PostgresStore(pool, clientConfig, schema, opts);
  }

  /** Starts listening, then loads and publishes the first snapshot (listening first so no change is missed). */
  async start(): Promise<void> {
    if (this.started) return;
    if (this.closed) throw new Error('postgres store is closed');
    await this.connectListener();
    // Serialised with notification-driven reloads, which may already be arriving.
    this.reloading = true;
    try {
      await this.loadAndPublish(true);
    } finally {
      this.reloading = false;
    }
    this.started = true;
    if (!this.listener) this.scheduleReconnect('connection lost during start');
    if (this.reloadAgain) void this.runReload();
  }

  /** The latest published snapshot, if any. */
  get snapshot(): ResourceSnapshot | undefined {
    return this.current;
  }

  /** Backend pid of the LISTEN connection (diagnostics and tests); undefined while disconnected. */
  get listenerPid(): number | undefined {
    return this.listenerBackendPid;
  }

  async apply(text: string, sourceName: string): Promise<ResourceError[]> {
    const { resources, errors } = parseResources(text, sourceName);
    if (errors.length > 0) return errors;
    const byKey = new Map<string, Resource>();
    const dupErrors: ResourceError[] = [];
    for (const r of resources) {
      const key = resourceKey(r);
      const earlier = byKey.get(key);
      if (earlier) {
        dupErrors.push({
          file: sourceName,
          document: r.source?.document ?? 0,
          path: '',
          message: `duplicate ${r.kind} "${r.name}" in mesh "${r.mesh}" (also document ${(earlier.source?.document ?? 0) + 1})`,
        });
      }
      byKey.set(key, r);
    }
    if (dupErrors.length > 0) return dupErrors;
    if (byKey.size === 0) return [];

    const docs = splitDocuments(text);
    const cols: string[][] = [[], [], [], [], [], [], []];
    for (const r of byKey.values()) {
      const docText = docs[r.source?.document ?? 0] ?? text;
      [r.kind, r.mesh, r.namespace, r.name, docText, sourceName, encodeResource(r)].forEach((v, i) => cols[i]!.push(v));
    }
    const changed = await this.transaction(async (c) => {
      const res = await c.query(
        `INSERT INTO ${this.t.resources} AS r (kind, mesh, namespace, name, source, source_name, doc, updated_at)
         SELECT u.kind, u.mesh, u.namespace, u.name, u.source, u.source_name, u.doc::jsonb, now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
           AS u(kind, mesh, namespace, name, source, source_name, doc)
         ON CONFLICT (kind, mesh, namespace, name) DO UPDATE
           SET source = EXCLUDED.source, source_name = EXCLUDED.source_name, doc = EXCLUDED.doc, updated_at = now()
           WHERE r.doc IS DISTINCT FROM EXCLUDED.doc OR r.source IS DISTINCT FROM EXCLUDED.source`,
        cols,
      );
      const n = res.rowCount ?? 0;
      // Delivered on commit only, to every replica listening (including this one).
      if (n > 0) await c.query('SELECT pg_notify($1, $2)', [RESOURCES_CHANNEL, this.schema]);
      return n > 0;
    });
    // Also reload directly, so this replica catches up even while its LISTEN connection is down.
    if (changed) this.scheduleReload();
    return [];
  }

  /** Deletes one resource; resolves to whether it existed. */
  async delete(kind: ResourceKind, mesh: string, namespace: string, name: string): Promise<boolean> {
    const deleted = await this.transaction(async (c) => {
      const res = await c.query(
        `DELETE FROM ${this.t.resources} WHERE kind = $1 AND mesh = $2 AND namespace = $3 AND name = $4`,
        [kind, mesh, namespace, name],
      );
      const n = res.rowCount ?? 0;
      if (n > 0) await c.query('SELECT pg_notify($1, $2)', [RESOURCES_CHANNEL, this.schema]);
      return n > 0;
    });
    if (deleted) this.scheduleReload();
    return deleted;
  }

  /** Reads the stored resources straight from the database (not the snapshot), sorted by key. Rows that fail to load are skipped. */
  async list(kind?: ResourceKind): Promise<Resource[]> {
    const res = await this.pool.query<ResourceRow>(
      `SELECT kind, mesh, namespace, name, source, source_name, doc::text AS doc FROM ${this.t.resources}
       WHERE $1::text IS NULL OR kind = $1 ORDER BY kind, mesh, namespace, name`,
      [kind ?? null],
    );
    const out: Resource[] = [];
    for (const row of res.rows) {
      const r = this.loadRow(row);
      if ('resource' in r) out.push(r.resource);
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reloadTimer);
    clearTimeout(this.reconnectTimer);
    this.subject.complete();
    const listener = this.listener;
    this.listener = undefined;
    this.listenerBackendPid = undefined;
    if (listener) await listener.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  // ---- loading ---------------------------------------------------------------------------------

  private async loadAndPublish(force = false): Promise<void> {
    const res = await this.pool.query<ResourceRow>(
      `SELECT kind, mesh, namespace, name, source, source_name, doc::text AS doc FROM ${this.t.resources}
       ORDER BY kind, mesh, namespace, name`,
    );
    if (this.closed) return;
    const next = new Map<string, Entry>();
    let changed = force || res.rows.length !== this.entries.size;
    for (const row of res.rows) {
      const key = resourceKey(row as { kind: ResourceKind; mesh: string; namespace: string; name: string });
      const fingerprint = row.doc ?? `source:${row.source}`;
      const prev = this.entries.get(key);
      if (prev && prev.fingerprint === fingerprint) {
        next.set(key, prev);
        continue;
      }
      changed = true;
      const loaded = this.loadRow(row);
      next.set(
        key,
        'resource' in loaded
          ? { fingerprint, resource: loaded.resource, errors: [] }
          : { fingerprint, resource: prev?.resource, errors: loaded.errors },
      );
    }
    if (!changed) {
      for (const key of this.entries.keys()) if (!next.has(key)) changed = true;
    }
    if (!changed) return;
    this.entries = next;
    const resources = new Map<string, Resource>();
    const errors: ResourceError[] = [];
    for (const [key, e] of next) {
      if (e.resource) resources.set(key, e.resource);
      errors.push(...e.errors);
    }
    this.current = { revision: ++this.revision, resources, errors };
    this.subject.next(this.current);
  }

  private loadRow(row: ResourceRow): { resource: Resource } | { errors: ResourceError[] } {
    const key = `${row.kind}/${row.mesh}/${row.namespace}/${row.name}`;
    const file = row.source_name || `postgres:${this.schema}.resources`;
    if (row.doc !== null) {
      let doc: unknown;
      try {
        doc = JSON.parse(row.doc);
      } catch {
        return { errors: [{ file, document: 0, path: '', message: `stored resource ${key} is not valid JSON` }] };
      }
      const document = (doc as { source?: { document?: unknown } } | null)?.source?.document;
      const r = decodeResource(doc, row);
      if (typeof r !== 'string') return { resource: r };
      const sep = r.indexOf(': ');
      return {
        errors: [{
          file,
          document: typeof document === 'number' ? document : 0,
          path: sep >= 0 ? r.slice(0, sep) : '',
          message: `stored resource ${key}: ${sep >= 0 ? r.slice(sep + 2) : r}`,
        }],
      };
    }
    // A row written without a doc (e.g. inserted by hand with SQL): validate its source text.
    const parsed = parseResources(row.source, file);
    if (parsed.errors.length > 0) return { errors: parsed.errors };
    const match = parsed.resources.find((r) => resourceKey(r) === key);
    if (parsed.resources.length !== 1 || !match) {
      return { errors: [{ file, document: 0, path: '', message: `stored source of ${key} must hold exactly that one resource` }] };
    }
    return { resource: match };
  }

  private scheduleReload(delayMs = this.debounceMs): void {
    if (this.closed || this.reloadTimer) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = undefined;
      void this.runReload();
    }, delayMs);
  }

  private async runReload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    try {
      do {
        this.reloadAgain = false;
        await this.loadAndPublish();
      } while (this.reloadAgain && !this.closed);
      this.reloadFailures = 0;
    } catch (err) {
      if (this.closed) return;
      this.reloadFailures++;
      this.log.warn({ err: errMessage(err), schema: this.schema }, 'postgres store: reload failed, keeping the last snapshot');
      // With the listener down, its reconnect reloads; otherwise retry here.
      if (this.listener) this.scheduleReload(this.backoff(this.reloadFailures - 1));
    } finally {
      this.reloading = false;
    }
  }

  // ---- LISTEN connection -----------------------------------------------------------------------

  private async connectListener(): Promise<void> {
    const client = new pg.Client({ ...this.clientConfig, application_name: 'mesh-sds-listen' });
    this.listener = client;
    client.on('notification', (msg) => {
      if (msg.channel === RESOURCES_CHANNEL && msg.payload === this.schema) this.scheduleReload();
    });
    client.on('error', (err) => this.listenerLost(client, err));
    client.on('end', () => this.listenerLost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${RESOURCES_CHANNEL}`);
      const pid = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      if (this.listener === client) this.listenerBackendPid = pid.rows[0]?.pid;
    } catch (err) {
      this.listenerLost(client, err);
      throw err;
    }
    if (this.listener !== client) throw new Error('postgres store: LISTEN connection lost while connecting');
  }

  private listenerLost(client: pg.Client, err?: unknown): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    this.listenerBackendPid = undefined;
    client.removeAllListeners('notification');
    client.on('error', () => undefined); // the dead client may still report errors while ending
    client.end().catch(() => undefined);
    if (this.closed || !this.started) return;
    this.scheduleReconnect(err === undefined ? 'connection ended' : errMessage(err));
  }

  private scheduleReconnect(reason: string): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoff(this.reconnectAttempts++);
    this.log.warn(
      { err: reason, schema: this.schema, retryInMs: delay },
      'postgres store: LISTEN connection lost, serving the last snapshot',
    );
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.connectListener().then(
        () => {
          this.log.info({ schema: this.schema, attempts: this.reconnectAttempts }, 'postgres store: LISTEN connection restored');
          this.reconnectAttempts = 0;
          clearTimeout(this.reloadTimer);
          this.reloadTimer = undefined;
          this.scheduleReload(0);
        },
        () => undefined, // listenerLost already scheduled the next attempt
      );
    }, delay);
  }

  private backoff(attempt: number): number {
    return Math.min(this.reconnectMinMs * 2 ** Math.min(attempt, 20), this.reconnectMaxMs);
  }

  private async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch((e: Error) => {
        broken = e; // the connection itself is gone: do not return it to the pool
      });
      throw err;
    } finally {
      c.release(broken);
    }
  }
}

/** Takes a non-standard `schema` query parameter off the URL (so `--store` can carry it); pg would not understand it. */
function splitSchemaParam(url: string): { connectionString: string; schema?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { connectionString: url };
  }
  const schema = u.searchParams.get('schema') ?? undefined;
  if (schema === undefined) return { connectionString: url };
  u.searchParams.delete('schema');
  return { connectionString: u.toString(), schema };
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
