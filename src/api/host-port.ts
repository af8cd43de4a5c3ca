// A TCP listen address as the CLI takes it: `host:port`, `[v6]:port`, or a bare `port` (loopback).
import type { AddressInfo, Server } from 'node:net';

/** A gRPC target without its `dns:`, `ipv4:` or `ipv6:` scheme (and `dns://authority/`), as grpc-js accepted them. */
export function withoutGrpcScheme(target: string): string {
  return target.replace(/^(dns|ipv4|ipv6):(\/\/[^/]*\/)?/i, '');
}

/** Parses `listen`; `what` names the flag in the error (e.g. `--admin`). */
export function parseHostPort(listen: string, what: string): { host: string; port: number } {
  const s = listen.trim();
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6) {
    host = v6[1] ?? '';
    portText = v6[2] ?? '';
  } else if (/^:?\d+$/.test(s)) {
    host = '127.0.0.1';
    portText = s.replace(/^:/, '');
  } else {
    const i = s.lastIndexOf(':');
    if (i <= 0 || s.indexOf(':') !== i) throw new Error(`${what}: listen address must be host:port, got "${listen}"`);
    host = s.slice(0, i);
    portText = s.slice(i + 1);
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`${what}: invalid port in "${listen}"`);
  return { host, port };
}

/** Starts `server` listening; resolves with where it listens (`urlHost` bracketed for IPv6), rejects on a bind error. */
export async function listenOn(server: Server, host: string, port: number): Promise<{ address: AddressInfo; urlHost: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return { address, urlHost: address.family === 'IPv6' ? `[${address.address}]` : address.address };
}

/**
 * Options of an HTTP(S) server whose requests are small and quick (a bundle GET, a probe, a scrape):
 * a client gets `ms` for its TLS handshake and its whole request, checked often enough to hold to
 * it, instead of node's defaults (120 s handshake, 60 s headers, checked every 30 s).
 */
export function stalledClientLimits(ms: number): { handshakeTimeout: number; headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  return {
    handshakeTimeout: ms,
    headersTimeout: ms,
    requestTimeout: ms,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(ms / 2))),
  };
}
