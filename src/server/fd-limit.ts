// The default cap on gRPC connections, from the process's open-file limit: every connection holds
// a descriptor, and the store, the state files, the admin port and the bundle endpoint need some
// too. Without a cap, 20,000 idle connections (RLIMIT_NOFILE 20000) made all of them fail with EMFILE.
import { readFileSync } from 'node:fs';

/** The soft RLIMIT_NOFILE from /proc/self/limits text; undefined when unlimited or not found. */
export function softOpenFilesLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined; // not Linux (or no /proc): no default cap
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m || !/^\d+$/.test(m[1]!)) return undefined;
  return Number(m[1]);
}

/** Descriptors kept for everything but gRPC connections: 1,024, or a quarter of a smaller limit. */
const RESERVED_FDS = 1024;
const MIN_CONNECTIONS = 64;

/** The default cap on gRPC connections for this process (undefined: no cap). */
export function defaultMaxConnections(): number | undefined {
  return connectionCapFor(softOpenFilesLimit());
}

/** The connection cap for an open-file limit (undefined: no cap). */
export function connectionCapFor(limit: number | undefined): number | undefined {
  if (limit === undefined) return undefined;
  return Math.max(MIN_CONNECTIONS, limit - Math.min(RESERVED_FDS, Math.floor(limit / 4)));
}
