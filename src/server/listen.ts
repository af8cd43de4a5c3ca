import { statSync } from 'node:fs';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { connect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { readFlagFileSync } from '../api/flag-file.js';
import { withoutGrpcScheme } from '../api/host-port.js';
import { isLoopbackHost } from './auth.js';
import type { GrpcServer, ListenTarget, TlsKeyPair } from './grpc-h2/server.js';
import { checkKeyPair } from './tls-reload.js';

export interface ListenOptions {
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Allow plaintext on a non-loopback TCP address. */
  insecure?: boolean;
  /** Unix socket group; the socket is 0600 without one and 0660 with one. */
  socketGroup?: string;
}

export class ListenError extends Error {}

/** `unix:///path` → `/path`; undefined for TCP addresses. */
export function unixPath(listen: string): string | undefined {
  if (listen.startsWith('unix://')) return listen.slice('unix://'.length);
  if (listen.startsWith('unix:')) return listen.slice('unix:'.length);
  return undefined;
}

/**
 * Whether the listener for `listen` is reachable from this host only, judged on what bindServer
 * binds: a unix socket (unixPath) or a loopback TCP host. Judged on the text by isLoopbackOrUnix,
 * `UNIX:15443` or `unix-abstract:15443` passed as sockets (a client's target may be one) while the
 * listener bound them as TCP on the host `UNIX` or `unix-abstract`, wherever DNS puts it, with
 * plaintext and --auth none allowed.
 */
export function listensLocally(listen: string): boolean {
  // An address that is neither throws tcpTarget's ListenError ("expected host:port").
  return unixPath(listen) !== undefined || isLoopbackHost(tcpTarget(listen).host);
}

/** How the listener is protected: a TLS key pair, or none (plaintext, where allowed). */
export interface ListenSecurity {
  tls?: TlsKeyPair;
}

/** Its message never quotes a path that is the PEM key itself (MESH_SDS_TLS_KEY set to the key, not its file). */
function readTlsFile(flag: string, file: string): Buffer {
  try {
    return readFlagFileSync(flag, file);
  } catch (e) {
    throw new ListenError((e as Error).message);
  }
}

/** Checks the combination of address, TLS and flags before anything binds. */
export function listenCredentials(opts: ListenOptions): ListenSecurity {
  const socket = unixPath(opts.listen);
  if (socket !== undefined && !socket.startsWith('/')) throw new ListenError(`--listen ${opts.listen}: a unix socket path must be absolute (unix:///path)`);
  if (!!opts.tlsCert !== !!opts.tlsKey) throw new ListenError('--tls-cert and --tls-key go together');
  if (opts.tlsCert && opts.tlsKey) {
    if (socket !== undefined) throw new ListenError('TLS is for TCP listeners; a unix socket is protected by its file mode');
    const tls = { cert: readTlsFile('--tls-cert', opts.tlsCert), key: readTlsFile('--tls-key', opts.tlsKey) };
    const checked = checkKeyPair(tls, new Date());
    // An expired certificate may be about to be replaced on disk (it is reloaded): only a pair
    // that can never be served refuses start-up.
    if ('problem' in checked && checked.unusable) throw new ListenError(`--tls-cert ${opts.tlsCert} / --tls-key ${opts.tlsKey}: ${checked.problem}`);
    return { tls };
  }
  if (!listensLocally(opts.listen) && !opts.insecure) {
    throw new ListenError(
      `refusing plaintext gRPC on non-loopback address ${opts.listen}: proxies would receive private keys in the clear. Use --tls-cert/--tls-key, or --insecure if a trusted network layer encrypts it`,
    );
  }
  return {};
}

/** `host:port`, `[v6]:port` or a `dns:`/`ipv4:`/`ipv6:` prefixed form (as grpc-js accepted) → host and port. */
export function tcpTarget(listen: string): { host: string; port: number } {
  const plain = withoutGrpcScheme(listen);
  const colon = plain.lastIndexOf(':');
  const portText = colon < 0 ? '' : plain.slice(colon + 1);
  if (!/^\d+$/.test(portText) || Number(portText) > 65535) throw new ListenError(`--listen ${listen}: expected host:port or unix:///path`);
  const host = plain.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(portText) };
}

/**
 * --socket-group as a gid. startServer resolves it before it opens the store (an unknown group
 * must leave nothing behind: no CA keys in a new --state-dir), bindServer again as it binds.
 */
export function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  let line: string;
  try {
    line = execFileSync('getent', ['group', group], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    throw new ListenError(`--socket-group ${group}: no such group`);
  }
  const gid = Number(line.split(':')[2]);
  if (!Number.isInteger(gid)) throw new ListenError(`--socket-group ${group}: no such group`);
  return gid;
}

/**
 * The folder of a unix socket must exist before start-up: binding in a missing one fails with
 * EACCES ("permission denied", from libuv), which sends an operator after permissions instead of
 * the missing folder; checked before the store or the state is opened.
 */
export function checkSocketFolder(path: string): void {
  const dir = dirname(path);
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ListenError(`--listen unix://${path}: the folder ${dir} does not exist; create it first (mkdir -p ${dir})`);
    if (code === 'ENOTDIR') throw new ListenError(`--listen unix://${path}: a part of ${dir} is not a folder`);
    throw new ListenError(`--listen unix://${path}: cannot look at the folder ${dir}: ${(e as Error).message}`);
  }
  if (!isDir) throw new ListenError(`--listen unix://${path}: ${dir} is not a folder`);
}

/**
 * Removes a socket file left by a server that is gone, and nothing else: a path that is not a
 * socket (someone's file) or a socket another server still listens on (a second `serve` with the
 * same --listen would take it over, and the first would serve nobody) refuses start-up.
 */
async function clearStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
  if (!st) return;
  if (!st.isSocket()) throw new ListenError(`--listen unix://${path}: the path exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new ListenError(`--listen unix://${path}: another server is listening on this socket (address in use)`);
  await unlink(path).catch(() => undefined);
}

/** Binds the server; for unix sockets replaces a stale socket file and sets its mode/group. */
export async function bindServer(server: GrpcServer, opts: ListenOptions): Promise<{ address: string; port?: number; tls?: TlsKeyPair }> {
  const { tls } = listenCredentials(opts);
  const socket = unixPath(opts.listen);
  const gid = socket !== undefined && opts.socketGroup ? groupId(opts.socketGroup) : undefined;
  if (socket !== undefined) await clearStaleSocket(socket);
  const target: ListenTarget = socket !== undefined ? { path: socket } : tcpTarget(opts.listen);
  const port = await server.listen(target, tls).catch((err: Error) => {
    // Name the flag, as --admin's error does: "listen EADDRINUSE" alone does not say which listener.
    throw new ListenError(`--listen: cannot listen on ${opts.listen}: ${err.message}`);
  });
  if (socket !== undefined) {
    // Bound owner-only already; the group may connect only once the socket is its own.
    if (gid !== undefined) {
      await chown(socket, process.getuid?.() ?? 0, gid);
      await chmod(socket, 0o660);
    } else await chmod(socket, 0o600);
    return { address: opts.listen };
  }
  const host = opts.listen.slice(0, opts.listen.lastIndexOf(':'));
  return { address: `${host}:${port}`, port, ...(tls ? { tls } : {}) };
}
