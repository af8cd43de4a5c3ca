// PostgreSQL resource store (SPEC §6): resources and shared state in tables, changes fanned out to
// every replica as row-level notifications. The server keeps serving its last snapshot while the
// database is away or stalled: nothing on the serving path waits on a query.
import pg from 'pg';
import { ReplaySubject, type Observable } from 'rxjs';
import { LayeredMap } from '../api/layered-map.js';
import { parseResources } from '../api/parse.js';
import { DEFAULT_MAX_FILE_SIZE } from '../api/file-text.js';
import { readFlagFile } from '../api/flag-file.js';
import { quoted } from '../api/quote.js';
import {
  formatResourceError,
  RESOURCE_KINDS,
  resourceKey,
  type Resource,
  type ResourceError,
  type ResourceKind,
  type ResourceSnapshot,
} from '../api/types.js';
import { StoreWriteError, type ResourceStore, type StateStore, type WriteOptions } from './types.js';
import { storeErrorText } from './pg-errors.js';
import { canonicalJson, decodeResource, encodeResource, splitDocuments } from './postgres-codec.js';
import { PostgresStateStore } from './postgres-state.js';
import { BUSY_GATHER_MS, gatherMs } from './gather.js';
import { CHANGES_CHANNEL, changeFeedGaps, checkSchemaReadOnly, migrate, MIGRATION_TIMEOUT_MS, repairChangeFeed, RESOURCES_CHANNEL, tablesOf, type ChangeNotice, type SchemaTables } from './postgres-schema.js';
import { inTransaction } from './postgres-tx.js';
import { conflictError, describeResource, writtenVersion } from './conflict.js';

/** Structured logger; pino's Logger satisfies it. */
export interface StoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface PostgresStoreOptions {
  /** Schema holding the tables; created when missing. Default: `schema` query parameter of the URL, else `public`. */
  schema?: string;
  /**
   * For commands that only read: the schema must exist at this binary's version (else
   * SchemaNotReadyError, naming it); nothing is created, migrated, or repaired (change feed triggers).
   */
  readOnly?: boolean;
  logger?: StoreLogger;
  /**
   * Coalesces bursts of notifications into one read: the first unread change waits this long.
   * Default 20 ms; 100 ms while changes keep coming (a read ran less than a second ago): each read
   * costs a query, a new view and a push, so churn is read a few rows at a time.
   */
  debounceMs?: number;
  busyDebounceMs?: number;
  /** First and maximum delay between reconnect attempts of the LISTEN connection. Default 1 s and 30 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Server-side limit of every statement (statement_timeout); the client gives up 1 s later. Default 5 s. */
  queryTimeoutMs?: number;
  /** Limit for opening a connection. Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * How often the LISTEN connection is probed, so a silently dead feed is noticed, and the change
   * feed's triggers are checked (recreated when dropped or disabled). Default 10 s.
   */
  heartbeatMs?: number;
  /** How long recreating a missing trigger may wait for the table (see repairChangeFeed). Default 2 s. */
  feedRepairLockTimeoutMs?: number;
  /** How long start-up may wait for another replica's migration or for the table (default MIGRATION_TIMEOUT_MS). */
  migrationTimeoutMs?: number;
  /**
   * A row whose doc (or, without one, source text) is larger is refused without being read, as
   * the directory store refuses a larger file (`--max-file-size`). Default 4 MiB.
   */
  maxRowBytes?: number;
}

const silentLogger: StoreLogger = { info() {}, warn() {}, error() {} };

/** More changed rows than this in one batch are read with one full reload instead of by key. */
const MAX_INCREMENTAL_KEYS = 1000;
/**
 * Full reads a notification asks for (TRUNCATE, a repaired feed, an oversized row key, more than
 * MAX_INCREMENTAL_KEYS rows named at once) start at most this often: any role that can connect may NOTIFY any channel, and a loop of them kept every
 * replica reading the whole table back to back (48 reads of 5,000 rows in 3 s, half a core).
 */
export const NOTIFIED_FULL_READ_MIN_INTERVAL_MS = 1000;

interface Entry {
  /** `doc` text as stored (jsonb output is canonical), or the source text for rows without a doc. */
  fingerprint: string;
  /** A bigint column: past 2^53 (a sequence set high) a number is off by one, and every write conflicted. */
  revision: bigint;
  /** Last good version; kept when the row later fails to load. */
  resource?: Resource;
  errors: ResourceError[];
}

interface ResourceRow {
  kind: string;
  mesh: string;
  namespace: string;
  name: string;
  /** Null when absent or over the limit (see `source_bytes`). */
  source: string | null;
  source_name: string;
  /** Null when absent or over the limit (see `doc_bytes`). */
  doc: string | null;
  doc_bytes: number | null;
  source_bytes: number | null;
  revision: string;
}

/**
 * Characters of `source_name` read: a label in messages. Read whole, a value another tool made
 * 513 MiB (a short `repeat()`, compressed on disk) crashed every replica reading it: past V8's
 * longest string, pg's protocol parser throws ERR_STRING_TOO_LONG outside any query's handler.
 */
const SOURCE_NAME_CHARS = 4096;

/** The columns of a row as read for loading; a doc or source over `maxBytes` is measured, not sent. */
function rowColumns(maxBytes: number): string {
  const limit = Math.floor(maxBytes);
  return `kind, mesh, namespace, name, left(source_name, ${SOURCE_NAME_CHARS}) AS source_name, revision,
    octet_length(doc::text) AS doc_bytes, octet_length(source) AS source_bytes,
    CASE WHEN octet_length(doc::text) > ${limit} THEN NULL ELSE doc::text END AS doc,
    CASE WHEN octet_length(source) > ${limit} THEN NULL ELSE source END AS source`;
}

export class PostgresStore implements ResourceStore {
  readonly state: StateStore;
  readonly schema: string;
  private readonly subject = new ReplaySubject<ResourceSnapshot>(1);
  readonly snapshots$: Observable<ResourceSnapshot> = this.subject.asObservable();

  private readonly t: SchemaTables;
  private readonly log: StoreLogger;
  private readonly debounceMs: number;
  private readonly busyDebounceMs: number;
  /** When the last read of changes started (performance.now()). */
  private lastReloadAt = -Infinity;
  private readonly maxRowBytes: number;
  /** SELECT list of every read that loads rows (rowColumns). */
  private readonly rowColumns: string;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly heartbeatMs: number;
  private readonly feedRepairLockTimeoutMs: number;
  /** Opened by a command that only reads: change feed triggers are not recreated. */
  private readonly readOnly: boolean;

  /** How the change feed has read the table so far (diagnostics; tests prove a change reads only its row). */
  readonly feedStats = { fullReloads: 0, keyedReads: 0, rowsRead: 0 };

  private entries = new Map<string, Entry>();
  /** Versions this store wrote itself, until the feed has loaded them (see knownVersion). */
  private ownWrites = new Map<string, { revision: bigint; exists: boolean }>();
  /** Keys of entries with errors, so publishing does not walk every entry. */
  private erroneous = new Set<string>();
  private current: ResourceSnapshot | undefined;
  /** The maps of `current`: the next snapshot is made from them. */
  private published = { resources: LayeredMap.from<Resource>([]), versions: LayeredMap.from<string>([]) };
  private revision = 0;
  private started = false;
  private closed = false;

  private listener: pg.Client | undefined;
  private listenerBackendPid: number | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private reconnectAttempts = 0;

  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading = false;
  private reloadAgain = false;
  private reloadFailures = 0;
  /** Why the last read of the resources failed; cleared by the next that succeeds (for /readyz). */
  private reloadError: string | undefined;
  /** Rows named by notifications and not read yet. */
  private pendingKeys = new Map<string, RowKeyOnly>();
  /** The next read must be a full reload (start, reconnect, an old-style or oversized notification). */
  private fullReloadPending = true;
  /** When the last full read started (performance.now()), and a notification's full read waiting for its turn. */
  private lastFullReloadAt = -Infinity;
  private notifiedFullReadTimer: NodeJS.Timeout | undefined;
  private checkingFeed = false;
  /** Failed repairs in a row, and when the next may be tried: each waits for the table, so they back off. */
  private feedRepairFailures = 0;
  private nextFeedRepairAt = 0;
  /** Why the change feed's missing triggers could not be recreated; every row is read each heartbeat meanwhile. */
  private feedUnrepaired: string | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly clientConfig: pg.ClientConfig,
    schema: string,
    opts: PostgresStoreOptions,
  ) {
    this.schema = schema;
    this.t = tablesOf(schema);
    this.log = opts.logger ?? silentLogger;
    this.debounceMs = opts.debounceMs ?? 20;
    this.busyDebounceMs = opts.busyDebounceMs ?? Math.max(BUSY_GATHER_MS, this.debounceMs);
    this.maxRowBytes = opts.maxRowBytes ?? DEFAULT_MAX_FILE_SIZE;
    this.rowColumns = rowColumns(this.maxRowBytes);
    this.reconnectMinMs = opts.reconnectMinMs ?? 1000;
    this.reconnectMaxMs = opts.reconnectMaxMs ?? 30_000;
    this.heartbeatMs = opts.heartbeatMs ?? 10_000;
    this.feedRepairLockTimeoutMs = opts.feedRepairLockTimeoutMs ?? 2000;
    this.readOnly = opts.readOnly === true;
    this.state = new PostgresStateStore(pool, this.t.state);
  }

  /** Connects and migrates the schema to this binary's version. Call `start()` to load the first snapshot. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const { connectionString, schema: urlSchema, applicationName } = splitSchemaParam(url);
    await checkSslFiles(connectionString);
    const schema = opts.schema ?? urlSchema ?? 'public';
    checkSchemaName(schema);
    const queryTimeoutMs = opts.queryTimeoutMs ?? 5000;
    // `application_name` in the URL names this replica's connections (pg_stat_activity); -listen and -migrate are appended.
    const appName = applicationName ?? 'mesh-sds';
    const clientConfig: pg.ClientConfig = {
      connectionString,
      application_name: appName,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    };
    const log = opts.logger ?? silentLogger;
    // The migration may wait for another replica's; it gets its own connection and limits. A
    // read-only command's check is a few reads, limited like any query: with no limit, a lock on
    // the schema's tables (or a database that stops answering) held get/inspect for ever.
    const limits = opts.readOnly
      ? { statement_timeout: queryTimeoutMs, query_timeout: queryTimeoutMs + 1000 }
      : { query_timeout: (opts.migrationTimeoutMs ?? MIGRATION_TIMEOUT_MS) + (opts.feedRepairLockTimeoutMs ?? 2000) + 5000 }; // migrate limits its statements itself
    const migrator = new pg.Client({ ...clientConfig, ...limits, application_name: `${appName}-migrate` });
    migrator.on('error', () => undefined);
    await migrator.connect();
    try {
      if (opts.readOnly) {
        await checkSchemaReadOnly(migrator, tablesOf(schema)).catch((err: unknown) => {
          const text = storeErrorText(err);
          throw text === (err as Error).message ? err : new Error(`postgres schema ${quoted(schema)}: ${text}`, { cause: err });
        });
      } else {
        const { from, to, repaired } = await migrate(migrator, tablesOf(schema), { lockTimeoutMs: opts.feedRepairLockTimeoutMs, timeoutMs: opts.migrationTimeoutMs });
        if (from !== to) log.info({ schema, from, to }, 'postgres store: schema migrated');
        if (repaired.length > 0) {
          log.warn({ schema, missing: repaired }, `postgres store: ${repaired.join(', ')} missing (dropped or disabled by hand), recreated: without them replicas see no change`);
        }
      }
    } finally {
      await migrator.end().catch(() => undefined);
    }
    // Every query of the pool has a limit: a stalled database fails queries instead of holding them.
    const pool = new pg.Pool({
      ...clientConfig,
      max: 4,
      statement_timeout: queryTimeoutMs,
      query_timeout: queryTimeoutMs + 1000,
      idle_in_transaction_session_timeout: queryTimeoutMs * 2,
    });
    // An idle pooled connection that the server drops must not crash the process.
    pool.on('error', (err) => log.warn({ err: err.message, schema }, 'postgres store: pooled connection lost'));
    return new PostgresStore(pool, { ...clientConfig, statement_timeout: queryTimeoutMs, query_timeout: queryTimeoutMs + 1000 }, schema, opts);
  }

  /** Starts listening, then loads and publishes the first snapshot (listening first so no change is missed). */
  async start(): Promise<void> {
    if (this.started) return;
    if (this.closed) throw new Error('postgres store is closed');
    await this.connectListener();
    // Serialised with notification-driven reads, which may already be arriving.
    this.reloading = true;
    try {
      this.fullReloadPending = false;
      this.pendingKeys.clear();
      await this.fullReload(true);
    } catch (err) {
      this.fullReloadPending = true;
      throw err;
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

  /** For /readyz: the first snapshot is loaded and the change feed is connected. */
  health(): { ok: boolean; detail: string } {
    if (this.closed) return { ok: false, detail: 'closed' };
    if (!this.current) return { ok: false, detail: 'postgres: first snapshot not loaded yet' };
    if (!this.listener || this.listenerBackendPid === undefined) {
      return { ok: false, detail: 'postgres: change feed disconnected, serving the last snapshot' };
    }
    // The feed may be connected while every read fails (the schema dropped): changes do not arrive.
    if (this.reloadError !== undefined) {
      return { ok: false, detail: `postgres: reading the resources failed ${this.reloadFailures} time(s) in a row (${this.reloadError}), serving the last snapshot` };
    }
    if (this.feedUnrepaired !== undefined) {
      return { ok: true, detail: `postgres: ${this.entries.size} resources loaded, change feed triggers missing: every row read each ${this.heartbeatMs / 1000} s` };
    }
    return { ok: true, detail: `postgres: ${this.entries.size} resources loaded, change feed live` };
  }

  /**
   * The version of a resource this store last knew (loaded, or written by itself: revisions only
   * grow, so the higher one is the newer), or ABSENT.
   */
  private knownVersion(key: string): string {
    const loaded = this.entries.get(key);
    const own = this.ownWrites.get(key);
    if (own && (!loaded || own.revision >= loaded.revision)) return own.exists ? String(own.revision) : ABSENT;
    return loaded ? String(loaded.revision) : ABSENT;
  }

  /**
   * Validates and writes every document in one transaction, each only if it is still at the version
   * its writer based it on (WriteOptions): a concurrent change is a conflict naming the resource and
   * nothing is written. `force` overwrites. A resource stored exactly as written is left alone.
   */
  async apply(text: string, sourceName: string, opts: WriteOptions = {}): Promise<ResourceError[]> {
    const { resources, errors } = parseResources(text, sourceName, this.maxRowBytes);
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
    const rows = [...byKey.entries()].map(([key, r]) => {
      // Where it was read from and the write precondition are not content: the stored form has neither.
      const { source, ...stored } = r;
      // The version known when apply was called (not once the transaction runs: the change feed may
      // have delivered a concurrent writer's row by then).
      const basedOn = source?.resourceVersion ?? (this.started ? this.knownVersion(key) : undefined);
      return { key, r, basedOn, source: docs[source?.document ?? 0] ?? text, doc: encodeResource(stored as Resource) };
    });
    const oversized = await this.oversizedDocs(rows, sourceName);
    if (oversized.length > 0) return oversized;
    const conflicts: ResourceError[] = [];
    const cols = <X, T>(xs: X[], f: (x: X) => T) => xs.map(f);
    const keyCols = (xs: { r: Resource }[]) => [cols(xs, (x) => x.r.kind), cols(xs, (x) => x.r.mesh), cols(xs, (x) => x.r.namespace), cols(xs, (x) => x.r.name)];
    const written = await this.transaction(async (c) => {
      // Read without locking: a writer that commits between this read and the conditional write
      // below makes that write match nothing, which is the conflict.
      // A stored text over the limit (a row another tool wrote) is not sent: it differs from any written here.
      const seen = await c.query<RowKeyOnly & { revision: string; doc: string | null; source: string | null }>(
        `SELECT r.kind, r.mesh, r.namespace, r.name, r.revision,
           CASE WHEN octet_length(r.doc::text) > ${Math.floor(this.maxRowBytes)} THEN NULL ELSE r.doc::text END AS doc,
           CASE WHEN octet_length(r.source) > ${Math.floor(this.maxRowBytes)} THEN NULL ELSE r.source END AS source
         FROM ${this.t.resources} r
         JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(kind, mesh, namespace, name)
           USING (kind, mesh, namespace, name)`,
        keyCols(rows),
      );
      const stored = new Map(seen.rows.map((row) => [keyOfRow(row), row]));
      const inserts: typeof rows = [];
      const updates: (typeof rows[number] & { expected: string })[] = [];
      for (const x of rows) {
        const now = stored.get(x.key);
        if (now && sameDoc(now.doc, x.doc) && now.source === x.source) continue;
        // What the writer saw: the document's resourceVersion, else what this store had loaded when
        // apply was called (a CLI: at its start), else (not started) what was just read.
        const basedOn = x.basedOn ?? now?.revision ?? ABSENT;
        if (!opts.force && basedOn !== (now?.revision ?? ABSENT)) {
          conflicts.push(conflictAt(sourceName, x.r, now?.revision, x.r.source?.resourceVersion === basedOn ? writtenVersion(x.source, basedOn) : basedOn));
          continue;
        }
        if (!now) inserts.push(x);
        else updates.push({ ...x, expected: now.revision });
      }
      if (conflicts.length > 0) return [];
      const done = new Map<string, string>();
      if (inserts.length > 0) {
        const res = await c.query<RowKeyOnly & { revision: string }>(
          `INSERT INTO ${this.t.resources} AS r (kind, mesh, namespace, name, source, source_name, doc)
           SELECT u.kind, u.mesh, u.namespace, u.name, u.source, u.source_name, u.doc::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
             AS u(kind, mesh, namespace, name, source, source_name, doc)
           ON CONFLICT (kind, mesh, namespace, name) DO ${opts.force ? 'UPDATE SET source = EXCLUDED.source, source_name = EXCLUDED.source_name, doc = EXCLUDED.doc' : 'NOTHING'}
           RETURNING r.kind, r.mesh, r.namespace, r.name, r.revision`,
          [...keyCols(inserts), cols(inserts, (x) => x.source), cols(inserts, () => sourceName), cols(inserts, (x) => x.doc)],
        );
        for (const row of res.rows) done.set(keyOfRow(row), row.revision);
        for (const x of inserts) if (!done.has(x.key)) conflicts.push(conflictAt(sourceName, x.r, 'created concurrently', ABSENT));
      }
      if (updates.length > 0) {
        const res = await c.query<RowKeyOnly & { revision: string }>(
          `UPDATE ${this.t.resources} AS r SET source = u.source, source_name = u.source_name, doc = u.doc::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
             AS u(kind, mesh, namespace, name, source, source_name, doc, expected)
           WHERE (r.kind, r.mesh, r.namespace, r.name) = (u.kind, u.mesh, u.namespace, u.name) AND ($9 OR r.revision = u.expected)
           RETURNING r.kind, r.mesh, r.namespace, r.name, r.revision`,
          [...keyCols(updates), cols(updates, (x) => x.source), cols(updates, () => sourceName), cols(updates, (x) => x.doc), cols(updates, (x) => x.expected), opts.force === true],
        );
        for (const row of res.rows) done.set(keyOfRow(row), row.revision);
        for (const x of updates) if (!done.has(x.key)) conflicts.push(conflictAt(sourceName, x.r, 'changed or deleted concurrently', x.expected));
      }
      if (conflicts.length > 0) throw new RollbackForConflict();
      return [...done.entries()];
    }).catch((err: unknown) => {
      if (err instanceof RollbackForConflict) return [];
      throw err;
    });
    if (conflicts.length > 0) return conflicts;
    // A next write through this store is based on these versions, even before the feed has read them.
    for (const [key, revision] of written) this.ownWrites.set(key, { revision: BigInt(revision), exists: true });
    // Also read them directly, so this replica catches up even while its LISTEN connection is down.
    this.noteChanged(written.map(([key]) => byKey.get(key)!));
    return [];
  }

  /**
   * Documents every replica would refuse to read (loadRow): a doc whose stored text is over
   * maxRowBytes, measured as readers measure it (jsonb's output, `octet_length(doc::text)`), which
   * YAML aliases can make far larger than the file. Readers never look at the source text of a row
   * that has a doc, so it is not measured.
   */
  private async oversizedDocs(rows: { r: Resource; doc: string }[], file: string): Promise<ResourceError[]> {
    const res = await this.pool.query<{ bytes: number }>(
      'SELECT octet_length(d::jsonb::text) AS bytes FROM unnest($1::text[]) WITH ORDINALITY AS u(d, i) ORDER BY i',
      [rows.map((x) => x.doc)],
    );
    return rows.flatMap((x, i) => {
      const bytes = res.rows[i]!.bytes;
      if (bytes <= this.maxRowBytes) return [];
      return [{
        file,
        document: x.r.source?.document ?? 0,
        path: '',
        message: `${describeResource(x.r)} is stored as ${bytes} bytes of JSON (YAML aliases expanded), over the limit of ${this.maxRowBytes} bytes (--max-file-size) every replica enforces when reading a row: nothing written`,
      }];
    });
  }

  /**
   * Deletes one resource; resolves to whether it existed. It must still be at `opts.resourceVersion`,
   * else at the version this store last loaded: otherwise a StoreWriteError (conflict) names it.
   */
  async delete(kind: ResourceKind, mesh: string, namespace: string, name: string, opts: WriteOptions = {}): Promise<boolean> {
    const key = resourceKey({ kind, mesh, namespace, name });
    const known = this.knownVersion(key);
    const basedOn = opts.force ? undefined : (opts.resourceVersion ?? (known === ABSENT ? undefined : known));
    // Past a bigint, the database refused the comparison itself ("out of range"), naming nothing.
    if (basedOn !== undefined && (!/^\d+$/.test(basedOn) || basedOn.length > 19 || BigInt(basedOn) > MAX_BIGINT)) {
      throw new StoreWriteError(`conflict: ${describeResource({ kind, mesh, namespace, name })}: resourceVersion ${JSON.stringify(basedOn)} was never stored here; nothing deleted`, true);
    }
    const res = await this.pool.query<{ what: string; revision: string }>(
      `WITH d AS (
         DELETE FROM ${this.t.resources} WHERE kind = $1 AND mesh = $2 AND namespace = $3 AND name = $4
           AND ($5::bigint IS NULL OR revision = $5) RETURNING revision
       )
       SELECT 'deleted' AS what, revision FROM d
       UNION ALL
       SELECT 'kept', revision FROM ${this.t.resources}
         WHERE kind = $1 AND mesh = $2 AND namespace = $3 AND name = $4 AND NOT EXISTS (SELECT 1 FROM d)`,
      [kind, mesh, namespace, name, basedOn ?? null],
    );
    const row = res.rows[0];
    if (row?.what === 'kept') {
      throw new StoreWriteError(
        `conflict: ${describeResource({ kind, mesh, namespace, name })} was changed since it was read (version ${basedOn}, now ${row.revision}); read it again, or use --force`,
        true,
      );
    }
    if (row?.what === 'deleted') {
      this.ownWrites.set(key, { revision: BigInt(row.revision), exists: false });
      this.noteChanged([{ kind, mesh, namespace, name }]);
    }
    if (!row) return this.deleteMisspelledKind(kind, mesh, namespace, name, basedOn);
    return row.what === 'deleted';
  }

  /**
   * A row another tool wrote with the kind in other letters (`dataplane`) or plural is refused at load as a
   * problem naming it; `delete dataplane …` spells the kind canonically, so without this no
   * command could remove it.
   */
  private async deleteMisspelledKind(kind: ResourceKind, mesh: string, namespace: string, name: string, basedOn: string | undefined): Promise<boolean> {
    const res = await this.pool.query<{ kind: string }>(
      `DELETE FROM ${this.t.resources} WHERE lower(btrim(kind, E' \t\r\n')) = ANY($6::text[]) AND kind <> $1 AND mesh = $2 AND namespace = $3 AND name = $4
         AND ($5::bigint IS NULL OR revision = $5) RETURNING kind`,
      [kind, mesh, namespace, name, basedOn ?? null, misspellings(kind)],
    );
    if (res.rows.length === 0) return false;
    this.noteChanged(res.rows.map((r) => ({ kind: r.kind, mesh, namespace, name })));
    return true;
  }

  /** Reads the stored resources straight from the database (not the snapshot), sorted by key. Rows that fail to load are skipped. */
  async list(kind?: ResourceKind): Promise<Resource[]> {
    const res = await this.pool.query<ResourceRow>(
      `SELECT ${this.rowColumns} FROM ${this.t.resources}
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
    clearTimeout(this.notifiedFullReadTimer);
    clearInterval(this.heartbeatTimer);
    this.subject.complete();
    const listener = this.listener;
    this.listener = undefined;
    this.listenerBackendPid = undefined;
    if (listener) await listener.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  // ---- loading ---------------------------------------------------------------------------------

  /** Reads every row; publishes when anything differs from the current snapshot (or `force`). */
  private async fullReload(force = false): Promise<void> {
    this.lastFullReloadAt = performance.now();
    const res = await this.pool.query<ResourceRow>(`SELECT ${this.rowColumns} FROM ${this.t.resources}`);
    if (this.closed) return;
    this.feedStats.fullReloads++;
    this.feedStats.rowsRead += res.rows.length;
    const next = new Map<string, Entry>();
    const changed = new Set<string>();
    for (const row of res.rows) {
      const key = keyOfRow(row);
      const entry = this.entryFor(key, row);
      if (entry !== this.entries.get(key)) changed.add(key);
      next.set(key, entry);
    }
    for (const key of this.entries.keys()) if (!next.has(key)) changed.add(key);
    this.ownWrites.clear(); // read after they were committed: the entries know them now
    if (!force && changed.size === 0) return;
    const resources = new Map<string, Resource>();
    const versions = new Map<string, string>();
    this.erroneous = new Set();
    for (const [key, e] of next) {
      versions.set(key, String(e.revision));
      if (e.resource) resources.set(key, e.resource);
      if (e.errors.length > 0) this.erroneous.add(key);
    }
    this.entries = next;
    this.publish(LayeredMap.from(resources), LayeredMap.from(versions));
  }

  /** Reads only the named rows (a key with no row was deleted) and publishes a copy of the snapshot with them applied. */
  private async readKeys(parts: RowKeyOnly[]): Promise<void> {
    const res = await this.pool.query<ResourceRow>(
      `SELECT ${this.rowColumns} FROM ${this.t.resources} r
       JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(kind, mesh, namespace, name)
         USING (kind, mesh, namespace, name)`,
      [parts.map((p) => p.kind), parts.map((p) => p.mesh), parts.map((p) => p.namespace), parts.map((p) => p.name)],
    );
    if (this.closed) return;
    this.feedStats.keyedReads++;
    this.feedStats.rowsRead += res.rows.length;
    const rows = new Map(res.rows.map((row) => [keyOfRow(row), row]));
    const resources = new Map<string, Resource | undefined>();
    const versions = new Map<string, string | undefined>();
    for (const key of parts.map(keyOfRow)) {
      this.ownWrites.delete(key);
      const row = rows.get(key);
      const prev = this.entries.get(key);
      if (!row) {
        if (!prev) continue;
        this.entries.delete(key);
        this.erroneous.delete(key);
        resources.set(key, undefined);
        versions.set(key, undefined);
        continue;
      }
      const entry = this.entryFor(key, row);
      if (entry === prev) continue;
      this.entries.set(key, entry);
      versions.set(key, String(entry.revision));
      resources.set(key, entry.resource);
      if (entry.errors.length > 0) this.erroneous.add(key);
      else this.erroneous.delete(key);
    }
    // The new snapshot shares the current one's maps except for these keys.
    if (versions.size > 0) this.publish(this.published.resources.with(resources), this.published.versions.with(versions));
  }

  /** The entry of a row: the current one when unchanged, else the row validated (its last good version kept on error). */
  private entryFor(key: string, row: ResourceRow): Entry {
    // A row over the limit is known by its sizes alone (its text was not read).
    const fingerprint = row.doc ?? (row.source !== null ? `source:${row.source}` : `too large:${row.doc_bytes}:${row.source_bytes}`);
    const revision = BigInt(row.revision);
    const prev = this.entries.get(key);
    if (prev && prev.fingerprint === fingerprint) {
      return prev.revision === revision ? prev : { ...prev, revision };
    }
    const loaded = this.loadRow(row);
    if ('resource' in loaded) return { fingerprint, revision, resource: loaded.resource, errors: [] };
    for (const e of loaded.errors) {
      this.log.warn(
        { row: key, schema: this.schema, field: e.path, reason: e.message, servingLastGood: prev?.resource !== undefined },
        `resource rejected: ${formatResourceError(e)}`,
      );
    }
    return { fingerprint, revision, resource: prev?.resource, errors: loaded.errors };
  }

  private publish(resources: LayeredMap<Resource>, versions: LayeredMap<string>): void {
    const errors: ResourceError[] = [];
    for (const key of this.erroneous) for (const e of this.entries.get(key)?.errors ?? []) errors.push(e);
    this.published = { resources, versions };
    this.current = { revision: ++this.revision, resources, errors, versions };
    this.subject.next(this.current);
  }

  private loadRow(row: ResourceRow): { resource: Resource } | { errors: ResourceError[] } {
    const key = keyOfRow(row);
    const file = `postgres:${this.schema}.resources row ${key}${row.source_name ? ` (applied from ${row.source_name})` : ''}`;
    const tooLarge = (what: string, bytes: number) => ({
      errors: [{ file, document: 0, path: '', message: `row ${key}: ${what} is ${bytes} bytes, larger than the limit of ${this.maxRowBytes} bytes (--max-file-size): not read` }],
    });
    const kindProblem = unknownKindProblem(row.kind);
    if (kindProblem !== undefined) return { errors: [{ file, document: 0, path: '', message: `row ${key}: ${kindProblem}` }] };
    if (row.doc === null && row.doc_bytes !== null) return tooLarge('doc', row.doc_bytes);
    if (row.doc === null && row.source === null && row.source_bytes !== null) return tooLarge('source', row.source_bytes);
    if (row.doc !== null) {
      let doc: unknown;
      try {
        doc = JSON.parse(row.doc);
      } catch {
        return { errors: [{ file, document: 0, path: '', message: `row ${key}: doc is not valid JSON` }] };
      }
      return decodeResource(doc, row, file);
    }
    // A row written without a doc (e.g. inserted by hand with SQL): validate its source text.
    const parsed = parseResources(row.source ?? '', file, this.maxRowBytes);
    if (parsed.errors.length > 0) return { errors: parsed.errors.map((e) => ({ ...e, message: `row ${key}: ${e.message}` })) };
    const [only, ...more] = parsed.resources;
    if (!only || more.length > 0) {
      return { errors: [{ file, document: 0, path: '', message: `row ${key}: source must hold exactly that one resource, and holds ${parsed.resources.length}` }] };
    }
    // As a doc naming another resource: its labels (namespace, mesh) or name differ from the row's key.
    if (resourceKey(only) !== key) return { errors: [{ file, document: 0, path: '', message: `row ${key}: holds ${resourceKey(only)} but is stored as ${key}` }] };
    return { resource: only };
  }

  /** Rows changed by this replica or named by a notification: read them soon. */
  private noteChanged(keys: Iterable<RowKeyOnly>): void {
    for (const k of keys) this.pendingKeys.set(keyOfRow(k), { kind: k.kind, mesh: k.mesh, namespace: k.namespace, name: k.name });
    // More than are read by key are one full read owed, not kept: while reads fail (a locked
    // table) forged notices (any role may send them) naming new rows grew this without bound.
    if (this.pendingKeys.size > MAX_INCREMENTAL_KEYS) {
      this.pendingKeys.clear();
      this.notifiedFullRead();
      return;
    }
    if (this.pendingKeys.size > 0) this.scheduleReload();
  }

  private scheduleReload(delayMs = gatherMs(this.lastReloadAt, this.debounceMs, this.busyDebounceMs)): void {
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
    this.lastReloadAt = performance.now();
    try {
      do {
        this.reloadAgain = false;
        // Many rows are read in one full read, unless one ran less than a second ago: forged
        // notices (any role may send them) naming thousands of rows must not make it back to back.
        const many = this.pendingKeys.size > MAX_INCREMENTAL_KEYS && performance.now() - this.lastFullReloadAt >= NOTIFIED_FULL_READ_MIN_INTERVAL_MS;
        const full = this.fullReloadPending || many;
        const keys = [...this.pendingKeys.values()];
        this.pendingKeys.clear();
        this.fullReloadPending = false;
        try {
          if (full) await this.fullReload();
          else if (keys.length > 0) await this.readKeys(keys);
        } catch (err) {
          // Not read: read them next time.
          if (full) this.fullReloadPending = true;
          for (const k of keys) if (!this.pendingKeys.has(keyOfRow(k))) this.pendingKeys.set(keyOfRow(k), k);
          throw err;
        }
      } while ((this.reloadAgain || this.pendingKeys.size > 0 || this.fullReloadPending) && !this.closed);
      this.reloadFailures = 0;
      this.reloadError = undefined;
    } catch (err) {
      if (this.closed) return;
      this.reloadFailures++;
      this.reloadError = errMessage(err);
      this.log.warn({ err: errMessage(err), schema: this.schema }, 'postgres store: reading changes failed, keeping the last snapshot');
      // With the listener down, its reconnect reloads; otherwise retry here.
      if (this.listener) this.scheduleReload(this.backoff(this.reloadFailures - 1));
    } finally {
      this.reloading = false;
    }
  }

  // ---- LISTEN connection -----------------------------------------------------------------------

  private onNotification(msg: pg.Notification): void {
    if (msg.channel === RESOURCES_CHANNEL) {
      // Something in the schema changed unannounced (the feed was repaired; or an older mesh-sds wrote).
      if (msg.payload === this.schema) this.notifiedFullRead();
      return;
    }
    if (msg.channel !== CHANGES_CHANNEL || !msg.payload) return;
    // Any session of the database may NOTIFY on this channel, with any payload: only an object
    // naming this schema counts (JSON.parse gives null, numbers, strings and lists too).
    let parsed: unknown;
    try {
      parsed = JSON.parse(msg.payload);
    } catch {
      return;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return;
    const n = parsed as Partial<ChangeNotice>;
    if (n.schema !== this.schema) return;
    if (n.full || typeof n.kind !== 'string' || typeof n.mesh !== 'string' || typeof n.namespace !== 'string' || typeof n.name !== 'string') {
      this.notifiedFullRead();
      return;
    }
    // No row's key holds a NUL (text columns cannot), and reading one by key fails the whole batch:
    // retried with every later change, one forged notice stopped every replica's feed.
    if ((n.kind + n.mesh + n.namespace + n.name).includes('\u0000')) return;
    this.noteChanged([{ kind: n.kind, mesh: n.mesh, namespace: n.namespace, name: n.name }]);
  }

  /** A full read a notification asked for: now, or once NOTIFIED_FULL_READ_MIN_INTERVAL_MS has passed since the last. */
  private notifiedFullRead(): void {
    if (this.notifiedFullReadTimer) return;
    const wait = this.lastFullReloadAt + NOTIFIED_FULL_READ_MIN_INTERVAL_MS - performance.now();
    const read = () => {
      this.notifiedFullReadTimer = undefined;
      this.fullReloadPending = true;
      this.scheduleReload();
    };
    if (wait <= 0) read();
    else this.notifiedFullReadTimer = setTimeout(read, wait);
  }

  private async connectListener(): Promise<void> {
    const client = new pg.Client({ ...this.clientConfig, application_name: `${this.clientConfig.application_name ?? 'mesh-sds'}-listen` });
    this.listener = client;
    client.on('notification', (msg) => this.onNotification(msg));
    client.on('error', (err) => this.listenerLost(client, err));
    client.on('end', () => this.listenerLost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
      await client.query(`LISTEN ${RESOURCES_CHANNEL}`);
      const pid = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      if (this.listener === client) this.listenerBackendPid = pid.rows[0]?.pid;
    } catch (err) {
      this.listenerLost(client, err);
      throw err;
    }
    if (this.listener !== client) throw new Error('postgres store: LISTEN connection lost while connecting');
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      // A connection that died without a TCP reset would otherwise look live for ever.
      if (this.listener !== client) return;
      client.query('SELECT 1').catch((err: unknown) => this.listenerLost(client, err));
      void this.checkChangeFeed();
    }, this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  /**
   * A trigger dropped or disabled while replicas run leaves them connected and deaf: no write is
   * announced again. Checked every heartbeat; what is missing is recreated, and everything is read
   * once for the writes that were not announced. Until it can be recreated, every row is read at
   * each heartbeat, so changes still arrive (late) instead of never.
   */
  private async checkChangeFeed(): Promise<void> {
    if (this.checkingFeed || this.closed || !this.started) return;
    this.checkingFeed = true;
    try {
      const missing = await changeFeedGaps(this.pool, this.t);
      if (this.closed) return;
      if (missing.length === 0) {
        if (this.feedUnrepaired !== undefined) this.log.info({ schema: this.schema }, 'postgres store: change feed triggers back');
        this.feedUnrepaired = undefined;
        this.feedRepairFailures = 0;
        this.nextFeedRepairAt = 0;
        return;
      }
      // Until the next repair is due, every row is read instead (below).
      if (performance.now() >= this.nextFeedRepairAt && !this.readOnly) await this.repairFeed(missing);
      if (this.closed) return;
      this.fullReloadPending = true;
      this.scheduleReload(0);
    } catch {
      // The catalog could not be read: the database's trouble shows in the heartbeat and reloads.
    } finally {
      this.checkingFeed = false;
    }
  }

  private async repairFeed(missing: string[]): Promise<void> {
    try {
      const repaired = await repairChangeFeed(this.pool, this.t, this.feedRepairLockTimeoutMs);
      if (this.closed) return;
      this.feedUnrepaired = undefined;
      this.feedRepairFailures = 0;
      this.nextFeedRepairAt = 0;
      this.log.warn(
        { schema: this.schema, missing, recreatedHere: repaired.length > 0 },
        `postgres store: ${missing.join(', ')} missing while running (dropped or disabled by hand), recreated: reading every row once for the writes it did not announce`,
      );
    } catch (err) {
      if (this.closed) return;
      const reason = errMessage(err);
      this.nextFeedRepairAt = performance.now() + Math.min(this.heartbeatMs * 2 ** this.feedRepairFailures++, 300_000);
      if (this.feedUnrepaired !== reason) {
        this.log.error(
          { schema: this.schema, missing, err: reason },
          `postgres store: ${missing.join(', ')} missing and could not be recreated: reading every row each ${this.heartbeatMs / 1000} s until it can`,
        );
      }
      this.feedUnrepaired = reason;
    }
  }

  private listenerLost(client: pg.Client, err?: unknown): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    this.listenerBackendPid = undefined;
    clearInterval(this.heartbeatTimer);
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
          // Notifications sent while disconnected are lost: read everything once.
          this.fullReloadPending = true;
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

  private transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, fn);
  }

}

interface RowKeyOnly {
  kind: string;
  mesh: string;
  namespace: string;
  name: string;
}

class RollbackForConflict extends Error {}

/**
 * The spellings of a kind another tool may have written, lowercase: other letters, a plural
 * (MeshIdentities); compared with the column trimmed (`Dataplane ` from a padded export was
 * named with no hint, and no command could delete it).
 */
function misspellings(kind: string): string[] {
  return [kind, `${kind}s`, kind.replace(/y$/, 'ies')].map((form) => form.toLowerCase());
}

/** Why a row's kind column is none of the kinds mesh-sds serves, with the one it likely meant; undefined when it is one. */
function unknownKindProblem(kind: string): string | undefined {
  if ((RESOURCE_KINDS as readonly string[]).includes(kind)) return undefined;
  const meant = RESOURCE_KINDS.find((k) => misspellings(k).includes(trimBlanks(kind).toLowerCase()));
  // Trimmed as deleteMisspelledKind's btrim does. delete removes a misspelt row only when no row of the kind as spelt has its name: said so, since
  // told just "delete removes this row", an operator with both deleted the one being served.
  const hint = meant ? `; it is ${meant}, spelt exactly so (delete ${meant} removes this row when no ${meant} row has its name; else it removes that one)` : '';
  return `kind column ${JSON.stringify(kind)} is not a kind mesh-sds serves (${RESOURCE_KINDS.join(', ')})${hint}: not read`;
}

/** `s` without leading and trailing spaces, tabs and line ends (SQL's btrim(s, E' \t\r\n')); no regex: a column may be megabytes of them. */
function trimBlanks(s: string): string {
  const blank = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
  let i = 0;
  let j = s.length;
  while (i < j && blank(s.charCodeAt(i))) i++;
  while (j > i && blank(s.charCodeAt(j - 1))) j--;
  return s.slice(i, j);
}

function keyOfRow(row: RowKeyOnly): string {
  return `${row.kind}/${row.mesh}/${row.namespace}/${row.name}`;
}


/**
 * Whether a stored doc is `doc` (canonical JSON). One another tool nested thousands of levels deep
 * (jsonb takes ~5,000) is not, and is replaced: canonicalising it threw "Maximum call stack size
 * exceeded" out of apply, naming nothing, and no apply could replace the row.
 */
function sameDoc(stored: string | null, doc: string): boolean {
  if (stored === null) return false;
  try {
    return canonicalJson(stored) === doc;
  } catch {
    return false;
  }
}

const MAX_BIGINT = 2n ** 63n - 1n;

/** Stands for "no such row" where a version is compared. */
const ABSENT = 'absent';

/** `found`: the version now stored (undefined: absent), or what happened to it during the write. */
function conflictAt(file: string, r: Resource, found: string | undefined, expected: string): ResourceError {
  const was = expected === ABSENT ? 'absent when read' : `version ${expected} when read`;
  const now = found === undefined ? 'now absent' : /^\d+$/.test(found) ? `now version ${found}` : `then ${found}`;
  return conflictError(file, r, was, now);
}

/**
 * Query parameters of a --store URL: mesh-sds's own (`schema`, `application_name`), then those pg
 * reads and honours. pg passes any other one on unread, so a typo (`?schem=mesh`) would silently
 * pick the `public` schema and create tables there. Left out on purpose: the timeouts
 * (`statement_timeout`, `query_timeout`, …), which would override the limits mesh-sds sets on
 * every query, and `connect_timeout`, which pg does not read from a URL.
 */
export const KNOWN_STORE_URL_PARAMS: readonly string[] = [
  'schema', 'application_name',
  'host', 'port', 'user', 'password', 'options', 'client_encoding',
  'ssl', 'sslmode', 'sslcert', 'sslkey', 'sslrootcert', 'sslnegotiation', 'uselibpqcompat',
];

/**
 * Takes a non-standard `schema` query parameter off the URL (so `--store` can carry it; pg would not
 * understand it), and `application_name` (pg would let it override the per-connection names).
 * Refuses a parameter neither mesh-sds nor pg knows (names only: a value may be a password).
 */
function splitSchemaParam(url: string): { connectionString: string; schema?: string; applicationName?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { connectionString: url };
  }
  const unknown = [...new Set(u.searchParams.keys())].filter((k) => !KNOWN_STORE_URL_PARAMS.includes(k));
  if (unknown.length > 0) {
    throw new Error(
      `--store: unknown query parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => quoted(k)).join(', ')} (known: ${KNOWN_STORE_URL_PARAMS.join(', ')})`,
    );
  }
  const schema = u.searchParams.get('schema') ?? undefined;
  const applicationName = u.searchParams.get('application_name') ?? undefined;
  if (schema === undefined && applicationName === undefined) return { connectionString: url };
  u.searchParams.delete('schema');
  u.searchParams.delete('application_name');
  return { connectionString: u.toString(), schema, applicationName };
}

/**
 * Postgres cuts a longer name to 63 bytes without an error (a NOTICE): two deployments whose
 * `?schema=` names shared their first 63 bytes shared one schema, its resources and CAs. An empty
 * name or a NUL failed with the database's syntax error, naming nothing.
 */
function checkSchemaName(schema: string): void {
  const bytes = Buffer.byteLength(schema);
  const problem = schema === '' ? 'is empty' : schema.includes('\u0000') ? 'holds a NUL character' : bytes > 63 ? `is ${bytes} bytes long: Postgres cuts names to 63 bytes (two longer names sharing those would be one schema)` : undefined;
  if (problem !== undefined) throw new Error(`postgres schema ${quoted(schema)} ${problem}: give a name of 1 to 63 bytes (schema= of --store)`);
}

/**
 * pg reads `sslcert`, `sslkey` and `sslrootcert` of the URL with a plain readFileSync: a FIFO would
 * block the whole process for ever, /dev/zero fill its memory. Each is read once by our rule first,
 * so such a file is refused naming the parameter and the path (pg's own read, just after, remains).
 */
async function checkSslFiles(connectionString: string): Promise<void> {
  let params: URLSearchParams;
  try {
    params = new URL(connectionString).searchParams;
  } catch {
    return;
  }
  for (const name of ['sslcert', 'sslkey', 'sslrootcert']) {
    const file = params.get(name);
    if (file) await readFlagFile(`--store ${name}`, file);
  }
}

function errMessage(err: unknown): string {
  return storeErrorText(err);
}
