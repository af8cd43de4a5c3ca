// Signed, revocable proxy tokens (SPEC §5), in the style of Kuma's dataplane tokens.
// Tokens are HS256 JWTs: only the server (its replicas and the CLI, which share the state and so the
// key) ever verifies them, so a MAC loses nothing against a signature, and a verify costs ~25 µs CPU
// instead of ~330 µs through jose's Ed25519 path, in a connect storm's hot path. The MAC key lives in
// the shared StateStore, so every replica and the CLI that use the same state sign and verify with
// one key. Tokens signed by the Ed25519 key of earlier releases still verify while that key is in
// the state. Revoked token ids live there too; a server holds the list in memory and re-reads it
// in the background, so a revocation made by the CLI reaches it within a second or two, and
// authentication never waits on the store (a stalled database delays nothing).
import { createHash, createPrivateKey, createPublicKey, createSecretKey, hash, randomBytes } from 'node:crypto';
import { quoted } from '../api/quote.js';
import { controlCharacterAt, labelNameProblem } from '../api/validate-common.js';
import { claimsContradiction, dataplaneNameProblem } from '../identity/claims.js';
import type { StateStore } from '../store/types.js';
import { JwsError, signHs256, verifyCompactJws, type Ed25519PublicKey, type HmacKey, type VerificationKey } from './jws.js';

export const TOKEN_ISSUER = 'mesh-sds';
/** The HS256 secret every new token is MAC'd with (sealed at rest like a private key). */
export const MAC_KEY_STATE_KEY = 'auth/mac-key';
/** The Ed25519 key of earlier releases: never created any more, only read to verify the tokens it signed. */
export const SIGNING_KEY_STATE_KEY = 'auth/signing-key';
export const REVOKED_STATE_KEY = 'auth/revoked';
const MAC_SECRET_BYTES = 32;
/** Longer than any sane JWT we issue; refusing early keeps a hostile peer from making us parse megabytes. */
const MAX_TOKEN_LENGTH = 8192;
/**
 * The longest lifetime a token may be signed for: 10 years (87600h). A longer one is as good as a
 * token that never expires, and an `exp` beyond 2^53 seconds is not even an exact number.
 */
export const MAX_TOKEN_VALIDITY_MS = 87_600 * 3_600_000;
/**
 * The shortest lifetime `token generate` signs: 1 minute. A shorter token has expired (or nearly)
 * before anyone can copy it into a proxy's configuration. The library takes shorter ones (tests).
 */
export const MIN_GENERATED_TOKEN_VALIDITY_MS = 60_000;
/**
 * The longest token generate() signs, in characters. gRPC's default metadata limit (grpc-js's
 * `grpc.max_metadata_size`, and what most proxies in front of it allow) is 8 KB for all of a
 * call's headers together: `authorization: Bearer <token>` shares it with the path, authority,
 * user-agent and the rest, so a token over half of it may never reach the server.
 */
export const MAX_GENERATED_TOKEN_LENGTH = 4096;

export interface TokenClaims {
  iss: string;
  /** `<mesh>.<name>`, the node id the token is bound to. */
  sub: string;
  mesh: string;
  name: string;
  workload?: string;
  labels?: Record<string, string>;
  /** Seconds since the epoch. */
  iat: number;
  /** Seconds since the epoch. */
  exp: number;
  jti: string;
}

export interface GenerateTokenOptions {
  mesh: string;
  name: string;
  workload?: string;
  labels?: Record<string, string>;
  validForMs: number;
  now?: Date;
}

/** A label key as Kubernetes and Kuma write them (`prefix/name`), at most 317 characters. */
const LABEL_KEY = /^(?=.{1,317}$)[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$/;
/** A workload, as a Kubernetes label value: at most 63 characters. */
const LABEL_VALUE = /^(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;

export type TokenErrorReason = 'expired' | 'signature' | 'revoked' | 'malformed';

const REASON_MESSAGES: Record<TokenErrorReason, string> = {
  expired: 'token expired',
  signature: 'token signature invalid',
  revoked: 'token revoked',
  malformed: 'malformed token',
};

/** A verification failure. The message is safe to log and to send to the peer: it never contains the token. */
export class TokenError extends Error {
  readonly reason: TokenErrorReason;
  constructor(reason: TokenErrorReason) {
    super(REASON_MESSAGES[reason]);
    this.name = 'TokenError';
    this.reason = reason;
  }
}

export interface TokenAuthorityOptions {
  /**
   * Re-read the revocation list in the background this often (ms). Unset or 0: never (a CLI
   * command); a server sets it. verify() itself never reads the store.
   */
  revocationRefreshMs?: number;
  /** Called when re-reading revocations fails; the last list read stays in force. */
  onRevocationRefreshError?: (err: unknown) => void;
  /** Called when the list gained revoked ids (by a refresh or a local revoke). */
  onRevoked?: (jtis: string[]) => void;
  /**
   * False: only sign (`token generate`), without reading the revocation list, so that a damaged
   * list does not stop new tokens being issued. Such an authority refuses to verify.
   */
  readRevocations?: boolean;
}

/**
 * How long a revocation is kept after its token's expiry (seconds). The writer (any replica, or
 * the CLI on an operator's machine) prunes by its own clock: pruned at expiry, a server whose clock
 * is behind the writer's took the revoked token back as valid for the difference.
 */
const REVOCATION_KEPT_AFTER_EXPIRY_SEC = 24 * 3600;

/** How many refresh intervals may pass without a successful read before the list counts as stale. */
const STALE_AFTER_MISSED = 3;

interface RevokedEntry {
  jti: string;
  /** Expiry of the revoked token (seconds since the epoch); entries without one are kept for good. */
  exp?: number;
}

interface MacKeyRecord {
  version: 1;
  alg: 'HS256';
  /** base64url of MAC_SECRET_BYTES random bytes. */
  secret: string;
}

/** As earlier releases wrote `auth/signing-key`. */
interface LegacySigningKeyRecord {
  version: 1;
  alg: 'EdDSA';
  privateKeyPem: string;
}

function newMacKeyRecord(): string {
  const rec: MacKeyRecord = { version: 1, alg: 'HS256', secret: randomBytes(MAC_SECRET_BYTES).toString('base64url') };
  return JSON.stringify(rec);
}

function parseRecord<T>(stateKey: string, raw: string): Partial<T> {
  try {
    const rec: unknown = JSON.parse(raw);
    if (typeof rec === 'object' && rec !== null) return rec as Partial<T>;
  } catch {
    // reported below, without the value
  }
  throw new Error(`state key ${stateKey} is not a JSON object`);
}

function parseMacKey(raw: string): HmacKey {
  const rec = parseRecord<MacKeyRecord>(MAC_KEY_STATE_KEY, raw);
  const secret = rec.version === 1 && rec.alg === 'HS256' && typeof rec.secret === 'string' ? Buffer.from(rec.secret, 'base64url') : undefined;
  if (!secret || secret.length !== MAC_SECRET_BYTES) {
    throw new Error(`state key ${MAC_KEY_STATE_KEY} does not hold a version 1 HS256 key of ${MAC_SECRET_BYTES} bytes`);
  }
  // A hash of the secret names it in token headers; the prefix keeps it distinct from any other
  // hash of the same bytes, and 96 bits of a SHA-256 reveal nothing of a 256-bit random secret.
  const kid = createHash('sha256').update('mesh-sds token MAC key id\n').update(secret).digest('base64url').slice(0, 16);
  return { alg: 'HS256', secret: createSecretKey(secret), kid };
}

/** Only the public half is kept: the legacy key verifies old tokens and never signs again. */
function parseLegacySigningKey(raw: string): Ed25519PublicKey {
  const rec = parseRecord<LegacySigningKeyRecord>(SIGNING_KEY_STATE_KEY, raw);
  if (rec.alg !== 'EdDSA' || typeof rec.privateKeyPem !== 'string') {
    throw new Error(`state key ${SIGNING_KEY_STATE_KEY} does not hold an EdDSA signing key`);
  }
  const privateKey = createPrivateKey(rec.privateKeyPem);
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`state key ${SIGNING_KEY_STATE_KEY} does not hold an Ed25519 key`);
  }
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const kid = createHash('sha256').update(spki).digest('base64url').slice(0, 16);
  return { alg: 'EdDSA', publicKey, kid };
}

function parseRevoked(raw: string | undefined): RevokedEntry[] {
  if (raw === undefined) return [];
  // Nothing writes an empty value (the first revocation writes a list): an empty one is a truncated
  // write, and reading it as "no revocations" would let every revoked token in again.
  if (raw.trim() === '') throw new Error(`state key ${REVOKED_STATE_KEY} is empty (a truncated write?); the revocation list cannot be read`);
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new Error(`state key ${REVOKED_STATE_KEY} is not valid JSON (${(e as Error).message}); the revocation list cannot be read`, { cause: e });
  }
  if (!Array.isArray(v)) throw new Error(`state key ${REVOKED_STATE_KEY} is not a JSON list`);
  const out: RevokedEntry[] = [];
  for (const [i, e] of v.entries()) {
    // An entry we cannot read is a damaged list too: skipped, its token was let in again, and the
    // next revocation rewrote the list without it.
    if (typeof e !== 'object' || e === null || typeof (e as RevokedEntry).jti !== 'string' || (e as RevokedEntry).jti === '') {
      throw new Error(`state key ${REVOKED_STATE_KEY}: entry ${i} is not {"jti": "<token id>", "exp": <seconds>}; the revocation list cannot be read`);
    }
    const exp = (e as RevokedEntry).exp;
    out.push(typeof exp === 'number' ? { jti: (e as RevokedEntry).jti, exp } : { jti: (e as RevokedEntry).jti });
  }
  return out;
}

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** Checks the claims we rely on beyond issuer and times; anything off is "malformed". */
function toClaims(p: Record<string, unknown>): TokenClaims {
  const { iss, sub, mesh, name, workload, labels, iat, exp, jti } = p;
  if (
    typeof iss !== 'string' ||
    typeof sub !== 'string' ||
    typeof mesh !== 'string' ||
    typeof name !== 'string' ||
    typeof iat !== 'number' ||
    // A time beyond 2^53 s, fractional, or Infinity (`1e400` parses so) is no time we signed:
    // such an exp would make a token that never expires.
    typeof exp !== 'number' ||
    !Number.isSafeInteger(iat) ||
    !Number.isSafeInteger(exp) ||
    typeof jti !== 'string' ||
    sub !== `${mesh}.${name}` ||
    (workload !== undefined && typeof workload !== 'string') ||
    (labels !== undefined && !isStringMap(labels))
  ) {
    throw new TokenError('malformed');
  }
  const claims: TokenClaims = { iss, sub, mesh, name, iat, exp, jti };
  if (workload !== undefined) claims.workload = workload;
  if (labels !== undefined) claims.labels = { ...labels };
  return claims;
}

const REQUIRED_CLAIMS = ['sub', 'iat', 'exp', 'jti'] as const;

/**
 * The claims of a payload whose signature was verified, checked as jose's jwtVerify did for us
 * (issuer, required claims, then nbf and exp against `nowSec`; without `nowSec` times are ignored).
 */
function checkClaims(payload: Record<string, unknown>, nowSec: number | undefined): TokenClaims {
  if (payload.iss !== TOKEN_ISSUER || REQUIRED_CLAIMS.some((c) => !Object.hasOwn(payload, c))) throw new TokenError('malformed');
  if (nowSec !== undefined) {
    const { nbf, exp } = payload;
    if (nbf !== undefined && (typeof nbf !== 'number' || nbf > nowSec)) throw new TokenError('malformed');
    if (typeof exp !== 'number' || !Number.isSafeInteger(exp)) throw new TokenError('malformed');
    if (exp <= nowSec) throw new TokenError('expired');
  }
  return toClaims(payload);
}

function toTokenError(err: unknown): TokenError {
  if (err instanceof TokenError) return err;
  if (err instanceof JwsError) return new TokenError(err.reason);
  // Anything unforeseen is "malformed", never the details (they could quote the token).
  return new TokenError('malformed');
}

/**
 * Tokens whose signature was verified, by the SHA-256 of their exact text: the most recent few
 * thousand. Envoy opens its streams (one per secret) together, so the second finds the first's
 * entry even in a connect storm of 10,000 proxies; keeping every proxy's claims for as long as its
 * token is valid would cost memory for nothing.
 */
const MAX_VERIFIED_CACHE = 4096;

export class TokenAuthority {
  private readonly verified = new Map<string, TokenClaims>();
  private revoked = new Map<string, number | undefined>();
  private revokedReadAt = 0;
  /** The list text last parsed into `revoked`; undefined after this process wrote it. */
  private lastRevokedRaw: string | undefined;
  private lastRefreshError: string | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  /** Bumped by each local write, so a slower concurrent read cannot put back an older list. */
  private revokedGeneration = 0;
  private refreshing: Promise<void> | undefined;
  /** Serialises this process's read-modify-write of the revocation list. */
  private writeChain: Promise<void> = Promise.resolve();

  /** The keys a token may verify under: the MAC key, and the legacy Ed25519 key when the state has one. */
  private readonly verificationKeys: readonly VerificationKey[];

  private constructor(
    private readonly state: StateStore,
    private readonly macKey: HmacKey,
    private readonly legacyKey: Ed25519PublicKey | undefined,
    private readonly opts: TokenAuthorityOptions,
  ) {
    this.verificationKeys = legacyKey ? [macKey, legacyKey] : [macKey];
  }

  /** Key id in the header of new tokens, derived from the MAC key. */
  get keyId(): string {
    return this.macKey.kid;
  }

  /** Key id of the Ed25519 key of earlier releases, when the state holds one (its tokens still verify). */
  get legacyKeyId(): string | undefined {
    return this.legacyKey?.kid;
  }

  /**
   * Loads (or creates, first writer wins) the shared MAC key, loads the legacy Ed25519 key if the
   * state has one (never creates it), and reads the revocation list.
   */
  static async open(state: StateStore, opts: TokenAuthorityOptions = {}): Promise<TokenAuthority> {
    const macKey = parseMacKey(await state.getOrCreate(MAC_KEY_STATE_KEY, newMacKeyRecord));
    const legacyRaw = await state.get(SIGNING_KEY_STATE_KEY);
    const legacyKey = legacyRaw === undefined ? undefined : parseLegacySigningKey(legacyRaw);
    const ta = new TokenAuthority(state, macKey, legacyKey, opts);
    if (opts.readRevocations === false) return ta;
    await ta.refreshRevocations();
    const every = opts.revocationRefreshMs ?? 0;
    if (every > 0) {
      // One read at a time: a stalled read is left to finish, later ticks just skip (and the
      // list turns stale, see revocationsHealth).
      ta.refreshTimer = setInterval(() => {
        if (!ta.refreshing) ta.refreshRevocations().catch((err: unknown) => opts.onRevocationRefreshError?.(err));
      }, every);
      ta.refreshTimer.unref();
    }
    return ta;
  }

  /** Stops the background refresh. */
  close(): void {
    clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
  }

  /**
   * Whether the in-memory revocation list is current: stale once `STALE_AFTER_MISSED` background
   * refreshes in a row have failed or not finished (store unreachable or stalled). For /readyz.
   */
  revocationsHealth(now = Date.now()): { ok: boolean; detail: string } {
    const every = this.opts.revocationRefreshMs ?? 0;
    const age = now - this.revokedReadAt;
    const ageText = `${(age / 1000).toFixed(1)} s ago`;
    if (every <= 0) return { ok: true, detail: `revocation list read ${ageText} (no background refresh)` };
    if (age <= every * STALE_AFTER_MISSED + every) return { ok: true, detail: `revocation list read ${ageText}` };
    const why = this.lastRefreshError ?? (this.refreshing ? 'a read of the state store has not finished' : 'not refreshed');
    return { ok: false, detail: `revocation list stale: last read ${ageText} (${why}); the last list read stays in force` };
  }

  async generate(opts: GenerateTokenOptions): Promise<string> {
    // Only what a node id and a Dataplane can carry: a token for any other name authenticates nobody,
    // and a name with characters the server gives a meaning to could pass for another proxy.
    const meshProblem = labelNameProblem(opts.mesh ?? '');
    if (meshProblem) throw new Error(`mesh ${quoted(opts.mesh ?? '')} ${meshProblem}`);
    const nameProblem = dataplaneNameProblem(opts.name ?? '');
    if (nameProblem) throw new Error(`name ${quoted(opts.name ?? '')} ${nameProblem}`);
    if (!(opts.validForMs > 0) || !Number.isFinite(opts.validForMs)) throw new Error('validForMs must be a positive number');
    if (opts.validForMs > MAX_TOKEN_VALIDITY_MS) throw new Error(`validForMs must be at most ${MAX_TOKEN_VALIDITY_MS} (10 years)`);
    if (opts.labels !== undefined && !isStringMap(opts.labels)) throw new Error('labels must map strings to strings');
    for (const [k, v] of Object.entries(opts.labels ?? {})) {
      // As Dataplane labels are refused (readLabelMap): a control character in a claim would reach
      // the terminals and logs that print it (ANSI escapes, forged lines).
      const inKey = controlCharacterAt(k);
      if (inKey) throw new Error(`label key ${quoted(k, 64)} must not hold control characters (${inKey})`);
      const inValue = controlCharacterAt(v);
      if (inValue) throw new Error(`label ${quoted(k, 64)}: the value must not hold control characters (${inValue})`);
      if (!LABEL_KEY.test(k)) throw new Error(`label key ${quoted(k, 64)} must be letters, digits, '-', '_', '.' and '/', starting and ending with a letter or digit`);
    }
    if (opts.workload !== undefined && !LABEL_VALUE.test(opts.workload)) throw new Error(`workload ${quoted(opts.workload, 64)} must be non-empty letters, digits, '-', '_' and '.'`);
    const contradiction = claimsContradiction(opts);
    if (contradiction) throw new Error(contradiction);
    const nowMs = (opts.now ?? new Date()).getTime();
    const payload: Record<string, unknown> = { mesh: opts.mesh, name: opts.name };
    if (opts.workload !== undefined) payload.workload = opts.workload;
    if (opts.labels !== undefined) payload.labels = { ...opts.labels };
    payload.iss = TOKEN_ISSUER;
    payload.sub = `${opts.mesh}.${opts.name}`;
    payload.iat = Math.floor(nowMs / 1000);
    payload.exp = Math.floor((nowMs + opts.validForMs) / 1000);
    payload.jti = randomBytes(16).toString('base64url');
    const token = signHs256(this.macKey, payload);
    if (token.length > MAX_GENERATED_TOKEN_LENGTH) {
      const claimed = Object.entries(opts.labels ?? {}).reduce((n, [k, v]) => n + k.length + v.length, 0) + (opts.workload?.length ?? 0);
      throw new Error(
        `the token would be ${token.length} characters, more than the ${MAX_GENERATED_TOKEN_LENGTH} allowed: gRPC's default metadata limit is 8 KB for all of a call's headers, so a proxy could not send it ` +
          `(its labels and workload claim ${claimed} characters: claim fewer or shorter labels)`,
      );
    }
    return token;
  }

  /**
   * Verifies signature (synchronously, node:crypto only), issuer, expiry and revocation. Throws
   * TokenError only.
   */
  async verify(token: string, now?: Date): Promise<TokenClaims> {
    return this.verifySync(token, now);
  }

  /** verify() without the promise: what a stream's authentication runs, in the request's own tick. */
  verifySync(token: string, now?: Date): TokenClaims {
    // Not a TokenError: a caller's mistake, not the token's (every revoked token would pass).
    if (this.opts.readRevocations === false) throw new Error('this token authority was opened to sign only (no revocation list read): it cannot verify');
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new TokenError('malformed');
    }
    const nowSec = Math.floor((now ?? new Date()).getTime() / 1000);
    // An Envoy opens a stream per secret with the same token, and reconnects with it: a signature
    // already checked is not checked again (expiry and revocation still are, on every call).
    // Keyed by the token's digest, not its text: 10,000 proxies' tokens (and the header strings
    // they are slices of) would otherwise be kept for as long as they are valid.
    const cacheKey = hash('sha256', token, 'base64');
    let claims = this.verified.get(cacheKey);
    if (claims && claims.exp <= nowSec) {
      this.verified.delete(cacheKey);
      claims = undefined;
    }
    if (claims) {
      if (this.isRevoked(claims.jti)) throw new TokenError('revoked');
      return claims;
    }
    try {
      // Signature first: a forged token is "signature" whatever its claims say.
      claims = checkClaims(verifyCompactJws(token, this.verificationKeys), nowSec);
    } catch (err) {
      throw toTokenError(err);
    }
    // Oldest first out (a Map iterates in insertion order).
    if (this.verified.size >= MAX_VERIFIED_CACHE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(cacheKey, claims);
    // Only a genuine token gets to learn that it was revoked. In-memory only: never waits on the store.
    if (this.isRevoked(claims.jti)) throw new TokenError('revoked');
    return claims;
  }

  /**
   * Revokes a token id. `expiresAt` (the token's exp) lets the entry be pruned once the token
   * would have expired anyway; without it the entry is kept for good.
   */
  revoke(jti: string, expiresAt?: Date): Promise<void> {
    if (!jti) return Promise.reject(new Error('jti must not be empty'));
    const exp = expiresAt ? Math.ceil(expiresAt.getTime() / 1000) : undefined;
    const run = this.writeChain.then(() => this.writeRevocation(jti, exp));
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Revokes the token itself (signature checked, expiry ignored), recording its exp for pruning.
   * Returns its jti.
   */
  async revokeToken(token: string): Promise<string> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new TokenError('malformed');
    }
    let claims: TokenClaims;
    try {
      claims = checkClaims(verifyCompactJws(token, this.verificationKeys), undefined);
    } catch (err) {
      throw toTokenError(err);
    }
    await this.revoke(claims.jti, new Date(claims.exp * 1000));
    return claims.jti;
  }

  /** Re-reads the revocation list from the state store now (the background refresh calls this). */
  refreshRevocations(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        try {
          const generation = this.revokedGeneration;
          const raw = await this.state.get(REVOKED_STATE_KEY);
          this.lastRefreshError = undefined;
          if (generation !== this.revokedGeneration) return;
          // Read every second: an unchanged list (tens of thousands of entries) is not parsed again.
          if (raw === this.lastRevokedRaw && raw !== undefined) {
            this.revokedReadAt = Date.now();
            return;
          }
          this.replaceRevoked(parseRevoked(raw));
          this.lastRevokedRaw = raw;
        } catch (err) {
          this.lastRefreshError = err instanceof Error ? err.message : String(err);
          throw err;
        } finally {
          this.refreshing = undefined;
        }
      })();
    }
    return this.refreshing;
  }

  /** Whether a token id is revoked, by the list in memory (never waits on the store). */
  isRevoked(jti: string): boolean {
    return this.revoked.has(jti);
  }

  private replaceRevoked(entries: RevokedEntry[]): void {
    const added = entries.filter((e) => !this.revoked.has(e.jti)).map((e) => e.jti);
    this.revoked = new Map(entries.map((e) => [e.jti, e.exp]));
    this.revokedReadAt = Date.now();
    if (added.length > 0) this.opts.onRevoked?.(added);
  }

  private async writeRevocation(jti: string, exp: number | undefined): Promise<void> {
    // Atomic read-modify-write in the store: concurrent revocations from other processes all survive.
    let entries: RevokedEntry[] = [];
    await this.state.update(REVOKED_STATE_KEY, (old) => {
      const pruneBefore = Math.floor(Date.now() / 1000) - REVOCATION_KEPT_AFTER_EXPIRY_SEC;
      entries = parseRevoked(old).filter((e) => e.jti !== jti && (e.exp === undefined || e.exp > pruneBefore));
      entries.push(exp === undefined ? { jti } : { jti, exp });
      return JSON.stringify(entries);
    });
    this.revokedGeneration++;
    this.lastRevokedRaw = undefined;
    this.replaceRevoked(entries);
  }
}
