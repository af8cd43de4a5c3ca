// Postgres reports a stalled statement as "canceling statement due to statement timeout", which
// names neither the database nor the usual cause: a session holding a lock on the store's tables.

const STALL_HINT =
  'another session may hold a lock on the store\'s tables (find it in pg_locks and pg_stat_activity), or the database is overloaded';

/** The text of a store error, with what to look for when it is a statement the database gave up on (or never answered). */
export function storeErrorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (code === '57014' && /statement timeout/.test(message)) return `the database gave up on a statement at the time limit (${message}): ${STALL_HINT}`;
  if (message === 'Query read timeout') return `the database did not answer a query in time (${message}): ${STALL_HINT}`;
  return message;
}

/**
 * Whether an error says the store could not be reached or did not answer in time (a stall, a lost
 * connection), not that one key's value is bad: SQLSTATE classes 08 (connection), 53 (resources)
 * and 57 (statement timeout, shutdown), a lock not available, a socket error, or pg's own timeouts.
 */
export function storeUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { code, syscall } = err as NodeJS.ErrnoException;
  if (typeof code === 'string' && (/^(08|53|57)[0-9A-Z]{3}$/.test(code) || code === '55P03' || typeof syscall === 'string')) return true;
  return /^(Query read timeout|Connection terminated|timeout expired|timeout exceeded when trying to connect|Client was closed|Client has encountered a connection error|Cannot use a pool after calling end)/.test(err.message);
}
