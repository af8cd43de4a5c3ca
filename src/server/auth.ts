// Who is the proxy on this stream (SPEC §5). Labels come from the server's side only: the token's
// claims here, the Dataplane resource later; nothing the proxy says about itself is trusted.
import { isIPv4, isIPv6 } from 'node:net';
import { withoutGrpcScheme } from '../api/host-port.js';
import { Status } from './grpc-h2/status.js';
import { claimMismatch, claimsContradiction, dataplaneNameProblem, shortNameTokenProblem } from '../identity/claims.js';
import { labelNameProblem } from '../api/validate-common.js';
import { quoted } from '../api/quote.js';
import type { ProxyPrincipal } from '../identity/svids.js';
import { TokenError, type TokenAuthority } from './tokens.js';

export type AuthMode = 'token' | 'none';

/** The request's metadata (HTTP/2 headers): every value received for a key, in order. */
export interface RequestHeaders {
  headerValues(name: string): readonly string[];
}

export type { ProxyPrincipal } from '../identity/svids.js';

export interface AuthOptions {
  mode: AuthMode;
  tokens?: TokenAuthority;
  /**
   * The Dataplane resource a node id names, if any (a namespaced one also by its short node id, the
   * alias): a token must then name it in full and its claims equal its labels.
   */
  dataplaneOf?: (mesh: string, name: string) => { name: string; namespace: string; labels: Readonly<Record<string, string>> } | undefined;
}

/**
 * Authentication failure, shaped like a call status (`code`, `details`) so it can end a call as
 * is. The message never contains the token.
 */
export class AuthError extends Error {
  readonly code: Status;
  readonly details: string;
  /** What the auth-failures metric counts it as: set where it is thrown, never read back from the message (which quotes the peer's node id). */
  readonly reason: AuthFailureReason;
  constructor(reason: AuthFailureReason, message: string, code: Status = Status.UNAUTHENTICATED) {
    super(message);
    this.name = 'AuthError';
    this.code = code;
    this.details = message;
    this.reason = reason;
  }
}

/** The fixed set of reasons `mesh_sds_stream_auth_failures_total` is labelled with. */
export type AuthFailureReason = 'no-token' | 'bad-node-id' | 'expired' | 'revoked' | 'signature' | 'malformed' | 'node-mismatch' | 'claims' | 'other';

/**
 * `<mesh>.<dataplane-name>`, split at the first dot (mesh names have no dots, dataplane names may).
 * The mesh must be a name a mesh can have; the dataplane name printable ASCII without `#` (it
 * separates a node id from its claims hash in proxy keys, so a name holding one could pass for
 * another proxy) or `/`. A gateway without a Dataplane may have a name no resource could
 * (`edge_gw`): such names were always accepted and keep working.
 */
export function parseNodeId(id: string): { mesh: string; name: string } | undefined {
  return typeof id === 'string' && nodeIdProblem(id) === undefined ? splitNodeId(id) : undefined;
}

/** Why a node id is not `<mesh>.<dataplane-name>`, or undefined when it is. */
export function nodeIdProblem(id: string): string | undefined {
  const node = splitNodeId(id);
  if (!node) return 'must be "<mesh>.<dataplane-name>"';
  const meshProblem = labelNameProblem(node.mesh);
  if (meshProblem) return `mesh ${quoted(node.mesh, 100)} ${meshProblem}`;
  const nameProblem = dataplaneNameProblem(node.name);
  if (nameProblem) return `dataplane name ${quoted(node.name, 100)} ${nameProblem}`;
  return undefined;
}

function splitNodeId(id: string): { mesh: string; name: string } | undefined {
  const dot = id.indexOf('.');
  if (dot <= 0 || dot === id.length - 1) return undefined;
  return { mesh: id.slice(0, dot), name: id.slice(dot + 1) };
}

function bearerToken(headers: RequestHeaders): string {
  const values = headers.headerValues('authorization');
  // HTTP/2 and gRPC drop a value with whitespace around it or characters outside printable ASCII
  // before it reaches us: say so, since the proxy may well have sent one.
  if (values.length === 0) {
    throw new AuthError('no-token', 'missing authorization metadata (expected "Bearer <token>"; a value with whitespace around it or characters outside printable ASCII is dropped in transport)');
  }
  if (values.length > 1) throw new AuthError('no-token', 'more than one authorization metadata value');
  const raw = values[0];
  if (typeof raw !== 'string') throw new AuthError('no-token', 'authorization metadata must be text');
  // Whitespace around the value (a token file's trailing newline, say) is not part of it.
  const v = raw.trim();
  if (v === '') throw new AuthError('no-token', 'authorization metadata is empty (expected "Bearer <token>")');
  const m = /^Bearer[ ]+(\S+)$/i.exec(v);
  if (!m?.[1]) throw new AuthError('no-token', 'authorization metadata must be "Bearer <token>"');
  return m[1];
}

/**
 * The check a stream passes when it opens, before any message: with tokens, its bearer token must
 * verify (signature, expiry, revocation). A peer without a valid token can then hold no stream
 * (nor its headers) while it waits to send a first request that never comes. Which node the token
 * is for is checked on the first request, which carries the node id (authenticateStream).
 * Returns the verified token's id (undefined without tokens), which bounds the calls it may hold.
 */
export function admitStream(headers: RequestHeaders, opts: AuthOptions): string | undefined {
  if (opts.mode === 'none') return undefined;
  if (!opts.tokens) throw new Error('auth mode "token" needs a TokenAuthority');
  return verifyToken(bearerToken(headers), opts.tokens).jti;
}

function verifyToken(token: string, tokens: TokenAuthority): ReturnType<TokenAuthority['verifySync']> {
  try {
    return tokens.verifySync(token);
  } catch (err) {
    if (err instanceof TokenError) throw new AuthError(err.reason, err.message);
    // Anything else is our fault (e.g. a bug); do not echo it to the peer.
    throw new AuthError('other', 'token verification failed');
  }
}

/**
 * Who the stream's proxy is, or an AuthError. Synchronous: everything it reads is in memory (the
 * token key, the revocation list, the Dataplanes), so a stream opens in the tick of its request.
 */
export function authenticateStream(headers: RequestHeaders, nodeId: string | undefined, opts: AuthOptions): ProxyPrincipal {
  if (nodeId === undefined || nodeId === '') throw new AuthError('bad-node-id', 'node id missing');
  const problem = nodeIdProblem(nodeId);
  if (problem) throw new AuthError('bad-node-id', `node id ${problem}`);
  const node = splitNodeId(nodeId)!;
  if (opts.mode === 'none') return { mesh: node.mesh, name: node.name, source: 'none' };

  if (!opts.tokens) throw new Error('auth mode "token" needs a TokenAuthority');
  const claims = verifyToken(bearerToken(headers), opts.tokens);
  if (claims.mesh !== node.mesh || claims.name !== node.name) {
    throw new AuthError('node-mismatch', `token is not valid for node id ${nodeId}`);
  }
  // With a Dataplane resource, claims are constraints (SPEC §5): the identity comes from it alone.
  const contradiction = claimsContradiction(claims);
  if (contradiction) throw new AuthError('claims', contradiction);
  const dataplane = opts.dataplaneOf?.(claims.mesh, claims.name);
  // A token's short node id is not followed into a namespace: it must name that Dataplane in full.
  const shortName = dataplane && shortNameTokenProblem(claims, dataplane);
  if (shortName) throw new AuthError('node-mismatch', shortName);
  const mismatch = dataplane && claimMismatch(claims, dataplane);
  if (mismatch) throw new AuthError('claims', mismatch);
  const principal: ProxyPrincipal = {
    mesh: claims.mesh,
    name: claims.name,
    source: 'token',
    credential: { jti: claims.jti, expiresAtMs: claims.exp * 1000 },
  };
  if (claims.workload !== undefined) principal.workload = claims.workload;
  if (claims.labels !== undefined) principal.labels = { ...claims.labels };
  return principal;
}

/**
 * True when a listen address is reachable only from this host: a unix socket, `localhost`,
 * 127.0.0.0/8 or ::1 (also IPv4-mapped). `0.0.0.0`, `::` and anything else are false.
 */
export function isLoopbackOrUnix(listen: string): boolean {
  let s = listen.trim();
  // grpc-js and the listener take `unix:` as written: `UNIX:443` or `unix-abstract:x` is a TCP host.
  if (s.startsWith('unix:')) return true;
  s = withoutGrpcScheme(s);
  let host: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return false;
    host = s.slice(1, end);
  } else if ((s.match(/:/g) ?? []).length > 1) {
    host = s; // bare IPv6 without a port
  } else {
    host = s.split(':')[0] ?? '';
  }
  return isLoopbackHost(host);
}

/** True when a host (a name or an IP address, without brackets or port) is `localhost` or a loopback address. */
export function isLoopbackHost(name: string): boolean {
  const host = name.toLowerCase().replace(/%.*$/, ''); // drop an IPv6 zone id
  // `localhost` alone: a name below it (`a.localhost`) is not in /etc/hosts and goes to DNS, which
  // may answer any address (RFC 6761 asks resolvers to keep it local; glibc does not).
  if (host === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  if (isIPv6(host)) {
    const normal = new URL(`http://[${host}]/`).hostname; // canonical form, brackets included
    if (normal === '[::1]') return true;
    const mapped = /^\[::ffff:([0-9a-f]{1,4}):[0-9a-f]{1,4}\]$/.exec(normal);
    return mapped?.[1] !== undefined && parseInt(mapped[1], 16) >> 8 === 127;
  }
  return false;
}
