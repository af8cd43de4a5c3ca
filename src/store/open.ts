// Opens the resource store a command names: Postgres for --store URL, else the directory store.
// Its own module (not the server's) so CLI commands that only read resources do not load the
// gRPC server, metrics and logging to do it; the Postgres client is loaded only for a URL.
import { formatResourceError } from '../api/types.js';
import { REDACTED, urlForMessage } from '../api/secret-text.js';
import { DirectoryStore } from './directory.js';
import type { StoreLogger } from './postgres.js';
import type { ResourceStore } from './types.js';

export interface StoreLocation {
  /** A postgres:// URL; never together with `resourcesDir` (which store would be meant?). */
  store?: string;
  resourcesDir?: string;
  stateDir: string;
  maxFileSize?: number;
  /** A command that only reads: a Postgres schema must already exist (nothing is created or migrated). */
  readOnly?: boolean;
  /** Postgres: how often the change feed's connection is checked (default 10 s; lower only for tests). */
  postgresHeartbeatMs?: number;
}

/**
 * A URL whose user or password holds an unencoded '#', '?' or '/' (`postgres://mesh:2024#Winter@db/x`),
 * as the message names it (`postgres://[REDACTED]@db/x`), or undefined. The URL parser ends the host
 * part at that character, so the password was read as a host, port, query or fragment, and printed
 * as one in errors. An '@' after a query's '=' (`?user=me@corp`) is no such thing; one in a database
 * name (`/d@b`) cannot be told from one ending a password, and is refused too.
 */
function misplacedUserinfo(url: string): string | undefined {
  const start = url.indexOf('://') + 3;
  // The last '@': a password may hold one too (`mesh:p@ss#word@db`, read as user "mesh", host "ss").
  const at = url.lastIndexOf('@');
  if (at < start) return undefined;
  const before = url.slice(start, at);
  if (!/[#?/]/.test(before) || before.includes('=')) return undefined;
  return `${url.slice(0, start)}${REDACTED}@${url.slice(at + 1)}`;
}

export async function openStore(cfg: StoreLocation, log?: StoreLogger): Promise<ResourceStore> {
  // The CLI refuses both, naming where each came from; this keeps any other caller from having one ignored.
  if (cfg.store && cfg.resourcesDir !== undefined) throw new Error('--store and --resources are both given: give one');
  if (cfg.store) {
    if (!/^postgres(ql)?:\/\//.test(cfg.store)) throw new Error(`--store ${urlForMessage(cfg.store)}: only postgres:// URLs are supported (omit --store for the directory store)`);
    const misplaced = misplacedUserinfo(cfg.store);
    if (misplaced) throw new Error(`--store ${misplaced}: its user or password holds '#', '?' or '/' as it is, which ends the URL's host part there: percent-encode them (%23, %3F, %2F, and an '@' in it as %40)`);
    const { PostgresStore } = await import('./postgres.js');
    const url = cfg.store;
    return PostgresStore.open(url, { logger: log, maxRowBytes: cfg.maxFileSize, readOnly: cfg.readOnly === true, heartbeatMs: cfg.postgresHeartbeatMs }).catch((e: unknown) => {
      // The driver's own words ("connect ECONNREFUSED 127.0.0.1:5432", "Connection terminated
      // unexpectedly") said neither which flag nor that the database was never reached.
      throw connectFailure(e) ? new Error(`--store ${urlForMessage(url)}: cannot connect to the database: ${(e as Error).message}`, { cause: e }) : e;
    });
  }
  if (!cfg.resourcesDir) throw new Error('--resources DIR or --store URL is required');
  return DirectoryStore.open({
    resourcesDir: cfg.resourcesDir,
    stateDir: cfg.stateDir,
    maxFileSize: cfg.maxFileSize,
    onFailure: (err) => log?.error({ err: err instanceof Error ? err.message : String(err) }, 'directory store: reading changes failed; retrying with a full pass'),
    onWatchFailure: (folder, reason) => log?.warn({ folder }, `directory store: ${reason}`),
    // One line per problem as it appears (not again while it persists), naming file, field and reason.
    onErrors: (errors) => {
      for (const e of errors) {
        log?.warn({ file: e.file, document: e.document + 1, field: e.path, reason: e.message }, `resource rejected: ${formatResourceError(e)}`);
      }
    },
  });
}

/** A failure to reach the database at all (a socket error, or the connection dropped or timed out before it was set up). */
function connectFailure(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as NodeJS.ErrnoException).code;
  return (typeof code === 'string' && /^E[A-Z_]+$/.test(code) && typeof (e as NodeJS.ErrnoException).syscall === 'string') || /^Connection terminated/.test(e.message);
}
