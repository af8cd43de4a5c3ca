import { chmod, chown, unlink } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { withoutGrpcScheme } from '../api/host-port.js';
import { isLoopbackOrUnix } from './auth.js';
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

/** How the listener is protected: a TLS key pair, or none (plaintext, where allowed). */
export interface ListenSecurity {
  tls?: TlsKeyPair;
}

/** Checks the combination of address, TLS and flags before anything binds. */
export function listenCredentials(opts: ListenOptions): ListenSecurity {
  const socket = unixPath(opts.listen);
  if (socket !== undefined && !socket.startsWith('/')) throw new ListenError(`--listen ${opts.listen}: a unix socket path must be absolute (unix:///path)`);
  if (!!opts.tlsCert !== !!opts.tlsKey) throw new ListenError('--tls-cert and --tls-key go together');
  if (opts.tlsCert && opts.tlsKey) {
    if (socket !== undefined) throw new ListenError('TLS is for TCP listeners; a unix socket is protected by its file mode');
    const tls = { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) };
    const checked = checkKeyPair(tls, new Date());
    // An expired certificate may be about to be replaced on disk (it is reloaded): only a pair
    // that can never be served refuses start-up.
    if ('problem' in checked && !/expired|not valid before/.test(checked.problem)) throw new ListenError(`--tls-cert ${opts.tlsCert} / --tls-key ${opts.tlsKey}: ${checked.problem}`);
    return { tls };
  }
  if (!isLoopbackOrUnix(opts.listen) && !opts.insecure) {
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

/** Binds the server; for unix sockets replaces a stale socket file and sets its mode/group. */
export async function bindServer(server: GrpcServer, opts: ListenOptions): Promise<{ address: string; port?: number; tls?: TlsKeyPair }> {
  const { tls } = listenCredentials(opts);
  const socket = unixPath(opts.listen);
  if (socket !== undefined) await unlink(socket).catch(() => undefined);
  const target: ListenTarget = socket !== undefined ? { path: socket } : tcpTarget(opts.listen);
  const port = await server.listen(target, tls).catch((err: Error) => {
    throw new ListenError(`cannot listen on ${opts.listen}: ${err.message}`);
  });
  if (socket !== undefined) {
    if (opts.socketGroup) {
      const gid = /^\d+$/.test(opts.socketGroup) ? Number(opts.socketGroup) : Number(execFileSync('getent', ['group', opts.socketGroup], { encoding: 'utf8' }).split(':')[2]);
      await chown(socket, process.getuid?.() ?? 0, gid);
      await chmod(socket, 0o660);
    } else await chmod(socket, 0o600);
    return { address: opts.listen };
  }
  const host = opts.listen.slice(0, opts.listen.lastIndexOf(':'));
  return { address: `${host}:${port}`, port, ...(tls ? { tls } : {}) };
}
