// `mesh-sds fetch`: prints a summary of the secrets a proxy would get, or (with --out-dir) writes
// them as PEM files like spiffe-helper, keeping them current with --watch. Never prints a private
// key or the token.
import { readFlagFileSync } from '../api/flag-file.js';
import { scrubSecretText } from '../api/secret-text.js';
import { printable, quoted } from '../api/quote.js';
import { startAgent, type AgentWrite } from '../client/agent.js';
import { removeStagedFiles } from '../client/files.js';
import { fetchOnce, SdsError, type SdsTlsOptions } from '../client/sds-client.js';
import { formatSummary, summarizeSecret } from '../client/summary.js';
import { isLoopbackOrUnix, nodeIdProblem } from '../server/auth.js';

export interface FetchCliOptions {
  server: string;
  node: string;
  name: string[];
  token?: string;
  tokenFile?: string;
  outDir?: string;
  watch?: boolean;
  onUpdate?: string;
  /** validation_context secret written to bundle.pem (default `ALL`). */
  trustName?: string;
  /** Without --watch: give up after this long (default 15 s). Ignored with --watch, which retries forever. */
  timeoutMs?: number;
  /** CA that signs the server's certificate; implies TLS. */
  caFile?: string;
  json?: boolean;
  /** TLS with the system roots (implied by caFile). */
  tls?: boolean;
  /** TLS without verifying the server (testing only). */
  insecureSkipVerify?: boolean;
}

export interface FetchIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Stops `--watch` (exit code 0). Without one, SIGINT/SIGTERM do. */
  signal?: AbortSignal;
  /** Where MESH_SDS_TOKEN is read; default process.env. */
  env?: Record<string, string | undefined>;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

class UsageError extends Error {}

/** Precedence: --token, then --token-file, then MESH_SDS_TOKEN (read here, so callers need not). */
function resolveToken(opts: FetchCliOptions, env: Record<string, string | undefined>): string | undefined {
  const token = readToken(opts, env);
  // Refused here, once and without quoting it (gRPC's own error would print the whole value).
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new UsageError(`the token${opts.tokenFile !== undefined && opts.token === undefined ? ` in --token-file ${opts.tokenFile}` : ''} contains whitespace or characters outside printable ASCII (a mesh-sds token is base64url text)`);
  }
  return token;
}

function readToken(opts: FetchCliOptions, env: Record<string, string | undefined>): string | undefined {
  if (opts.token !== undefined) return opts.token.trim() || undefined;
  if (opts.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFlagFileSync('--token-file', opts.tokenFile).toString('utf8');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const token = text.trim();
    if (!token) throw new UsageError(`--token-file ${opts.tokenFile} is empty`);
    return token;
  }
  return env['MESH_SDS_TOKEN']?.trim() || undefined;
}

function tlsOptions(opts: FetchCliOptions): SdsTlsOptions | undefined {
  if (!opts.caFile && !opts.tls && !opts.insecureSkipVerify) return undefined;
  const tls: SdsTlsOptions = {};
  if (opts.caFile) {
    try {
      tls.ca = readFlagFileSync('--ca-file', opts.caFile).toString('utf8');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    // The client takes text without a PEM block for a file name and would read it, quoting it in
    // its error: a file of something else (a token, DER) is refused here.
    if (!tls.ca.includes('-----BEGIN')) throw new UsageError(`--ca-file ${opts.caFile} holds no PEM certificate`);
  }
  if (opts.insecureSkipVerify) tls.insecureSkipVerify = true;
  return tls;
}

function validate(opts: FetchCliOptions): void {
  if (!opts.server) throw new UsageError('--server ADDR is required (host:port or unix:///path)');
  const nodeProblem = opts.node ? nodeIdProblem(opts.node) : 'must be "<mesh>.<dataplane-name>"';
  if (nodeProblem) throw new UsageError(`--node ${quoted(opts.node ?? '')}: ${nodeProblem}`);
  if (!opts.outDir) {
    if (opts.watch) throw new UsageError('--watch needs --out-dir');
    if (opts.onUpdate) throw new UsageError('--on-update needs --out-dir');
  } else if (opts.name.length > 1) {
    throw new UsageError('--out-dir writes one identity: give at most one --name (and --trust-name for the bundle)');
  }
  if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) throw new UsageError('--timeout must be positive');
  // Node turns an argument that is not UTF-8 into U+FFFD: the files would land in another folder
  // than the one named (and than the consumer reads).
  if (opts.outDir?.includes('\uFFFD')) {
    throw new UsageError(`--out-dir ${quoted(opts.outDir)} is not valid UTF-8 (or holds U+FFFD): name a folder whose path is UTF-8`);
  }
}

const writeLine = (w: AgentWrite): string =>
  `${w.changed.length > 0 ? `wrote ${w.changed.join(', ')}` : 'files already current'} in ${w.outDir}: ${w.spiffeId ?? '(no SPIFFE ID)'} serial ${w.serial} not after ${w.notAfter}; trust domains ${w.trustDomains.join(', ') || '(none)'}`;

/**
 * Watching, a --token-file (or MESH_SDS_TOKEN_FILE) is read again on every reconnect, so a token
 * refreshed before the old one expires is used. A file that cannot be read (or holds no token)
 * then keeps the last good token, and says so once per different problem.
 */
function tokenOnEachConnect(opts: FetchCliOptions, io: FetchIo, first: string | undefined, tokens: Set<string>, err: (s: string) => void): string | (() => string | undefined) | undefined {
  if (opts.token !== undefined || opts.tokenFile === undefined) return first;
  let current = first;
  let lastProblem = '';
  return () => {
    try {
      current = resolveToken(opts, io.env ?? process.env);
      if (current) rememberToken(tokens, current);
      lastProblem = '';
    } catch (e) {
      const problem = (e as Error).message;
      if (problem !== lastProblem) err(`${problem}; using the token read before`);
      lastProblem = problem;
    }
    return current;
  };
}

/** Shorter text is no token (a mesh-sds token is ~200 characters) but a torn read of one: redacting it would garble every message. */
const MIN_REDACTED_TOKEN = 16;
/** The current token and the ones before it that may still appear in a message. */
const REDACTED_TOKENS = 4;

function rememberToken(tokens: Set<string>, token: string): void {
  if (token.length < MIN_REDACTED_TOKEN) return;
  tokens.delete(token);
  tokens.add(token);
  for (const old of tokens) {
    if (tokens.size <= REDACTED_TOKENS) break;
    tokens.delete(old);
  }
}

export async function runFetch(opts: FetchCliOptions, io: FetchIo): Promise<number> {
  let token: string | undefined;
  /** The last tokens read (a watched --token-file may be refreshed), redacted from every message. */
  const tokens = new Set<string>();
  // Belt and braces: whatever ends up in a message, no token is ever printed (nor, on stderr, any other credential).
  const scrub = (s: string) => [...tokens].reduce((text, t) => text.split(t).join('<redacted>'), s);
  // Secrets are scrubbed first, then control characters escaped: server text (status details,
  // secret names) and the hook's output reach the terminal.
  const out = (s: string) => io.stdout(printable(scrub(s.endsWith('\n') ? s : `${s}\n`)));
  const err = (s: string) => io.stderr(printable(scrubSecretText(scrub(`mesh-sds fetch: ${s}\n`))));
  let tls: SdsTlsOptions | undefined;
  try {
    validate(opts);
    token = resolveToken(opts, io.env ?? process.env);
    if (token) rememberToken(tokens, token);
    tls = tlsOptions(opts);
  } catch (e) {
    if (e instanceof UsageError) {
      err(e.message);
      return EXIT_USAGE;
    }
    throw e;
  }
  if (!tls && !isLoopbackOrUnix(opts.server)) {
    err(`warning: plaintext connection to ${opts.server}: the private key (and token) cross the network unencrypted; use --ca-file for TLS`);
  }
  const client = { server: opts.server, node: opts.node, token: opts.watch ? tokenOnEachConnect(opts, io, token, tokens, err) : token, tls };
  const timeoutMs = opts.timeoutMs ?? 15_000;

  if (!opts.outDir) {
    const names = opts.name.length > 0 ? opts.name : ['default'];
    try {
      const result = await fetchOnce({ ...client, names, timeoutMs });
      const summaries = result.secrets.map(summarizeSecret);
      if (opts.json) out(JSON.stringify({ version: result.versionInfo, secrets: summaries }, null, 2));
      else out(summaries.map(formatSummary).join('\n\n'));
      return EXIT_OK;
    } catch (e) {
      err(e instanceof SdsError ? e.message : String((e as Error).message ?? e));
      return EXIT_FAILURE;
    }
  }

  let lastWarning = '';
  let wroteFiles = false;
  /** The files said last (as an unchanged write would say them). */
  let lastWritten = '';
  const agent = startAgent({
    ...client,
    outDir: opts.outDir,
    // Left undefined when not given, so that a message does not blame a flag the user never gave.
    identityName: opts.name[0],
    // The CLI fills in ALL when --trust-name is not given: the default, named as such.
    trustName: opts.trustName === 'ALL' ? undefined : opts.trustName,
    watch: opts.watch,
    onUpdate: opts.onUpdate,
    log: (level, message) => {
      if (level !== 'info') lastWarning = message;
      err(message);
    },
    onWrite: (w) => {
      wroteFiles = true;
      // A push that changed nothing in the files said last is not said: a server may answer every
      // ACK by sending the same secrets again, at full speed.
      const files = writeLine({ ...w, changed: [] });
      if (w.changed.length === 0 && files === lastWritten) return;
      lastWritten = files;
      out(opts.json ? JSON.stringify(w) : writeLine(w));
    },
  });

  let timedOut = false;
  const timer = opts.watch
    ? undefined
    : setTimeout(() => {
        timedOut = true;
        agent.close();
      }, timeoutMs);
  const stop = () => agent.close();
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  // The first signal stops after a write under way (and its hook); a second one does not wait: the
  // staged files (one may hold a key) are removed and the signal ends the process as it would have.
  // Not process.exit: it waits for file reads under way (a stalled NFS mount), which may never end.
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!signalled) {
      signalled = true;
      return stop();
    }
    err(`${signal} again: exiting without waiting for the write under way`);
    removeStagedFiles();
    for (const s of signals) process.removeListener(s, onSignal);
    process.kill(process.pid, signal);
  };
  if (opts.watch) {
    if (io.signal) io.signal.addEventListener('abort', stop, { once: true });
    else for (const s of signals) process.on(s, onSignal);
  }
  try {
    await agent.done;
    // A write under way when the time ran out was let finish: the files are written, so this is no failure.
    if (timedOut && !wroteFiles) {
      const missing = agent.unanswered();
      const noAnswer = missing.length > 0 ? `: no answer for ${missing.join(', ')}` : '';
      err(`no complete write within ${timeoutMs} ms${noAnswer}${lastWarning ? ` (last error: ${lastWarning})` : ''}`);
      return EXIT_FAILURE;
    }
    return EXIT_OK;
  } catch (e) {
    err(e instanceof SdsError ? e.message : String((e as Error).message ?? e));
    return EXIT_FAILURE;
  } finally {
    clearTimeout(timer);
    io.signal?.removeEventListener('abort', stop);
    for (const s of signals) process.removeListener(s, onSignal);
  }
}
