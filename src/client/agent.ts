// spiffe-helper-style agent: keeps cert.pem, key.pem (0600), bundle.pem and svid.json in a
// directory current from an SDS stream, for programs that cannot speak SDS (nginx, curl, OpenSSL),
// and runs an optional command after each change.
//
// Each change set is written as a whole new version and switched in with one rename (atomic-dir.ts:
// the `..data` symlink, as Kubernetes Secret volumes do), so a reader never sees a key beside a
// certificate of another pair. A switch that fails part way puts back what it had replaced.
import { access, mkdir, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { DecodedSecret } from './decode.js';
import { DATA_LINK, writeAtomically } from './atomic-dir.js';
import { checkSvid, RefusedSvid } from './check-svid.js';
import { MAX_OWN_FILE_BYTES, readRegularFile, removeStaleStagedFiles } from './files.js';
import { ExpiryWatch } from './expiry-watch.js';
import { openMode, refuseForeignPath, type OpenFolder } from './ownership.js';
import { OutDirLocked, takeLock, type Lock } from './lock.js';
import { UpdateHook } from './hook.js';
import { canonicalCertificates, canonicalKey } from './reencode.js';
import { keyBodyRedactor } from './redact-key.js';
import { HOOK_STATE_FILE, readHookState, writeHookState } from './hook-state.js';
import { openSecretStream, SdsError, type SdsClientOptions } from './sds-client.js';
import { parseCertificates, summarizeCertificate } from './summary.js';

export type AgentLog = (level: 'info' | 'warn' | 'error', message: string) => void;

export interface AgentOptions extends Omit<SdsClientOptions, 'names' | 'onError'> {
  outDir: string;
  /** tls_certificate secret to write (default `default`). */
  identityName?: string;
  /** validation_context secret to write (default `ALL`). */
  trustName?: string;
  /** Keep running and rewrite on every push; otherwise stop after the first complete write. */
  watch?: boolean;
  /** Shell command (`sh -c`) run once per change set. */
  onUpdate?: string;
  onUpdateTimeoutMs?: number;
  /** First wait before a failed write is tried again (default 5 s, doubling to 5 min; lower only for tests). */
  writeRetryMs?: number;
  log?: AgentLog;
  /**
   * Awaited once a changed set is written, before it is switched in: lets a test hold a write in
   * progress (a FIFO at an output path no longer does).
   */
  onStaged?: () => Promise<void>;
  /** Called after each complete write (and before its on-update command runs); `changed` may be empty. */
  onWrite?: (w: AgentWrite) => void;
}

export interface AgentWrite {
  outDir: string;
  /** File names (not paths) rewritten by this change set, in write order; empty if all were current. */
  changed: string[];
  spiffeId?: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  trustDomains: string[];
  version: string;
}

export interface Agent {
  /** Resolves after the first complete write; rejects if the agent fails before that. */
  firstWrite: Promise<AgentWrite>;
  /** Resolves when the agent stops (close(), or after the first write without `watch`); rejects on a fatal error. */
  done: Promise<void>;
  close(): void;
  /** Number of on-update command runs so far. */
  readonly hookRuns: number;
  /** The names asked for that the server has not sent yet, quoted, with the flag that asked for each. */
  unanswered(): string[];
}

/** How long the agent waits for every name before it says which one the server has not answered. */
const UNANSWERED_NOTE_MS = 5000;

/**
 * One stream error (or one NACK: a server may answer each by sending the same thing again) said
 * again within this long is counted, not logged, until another comes or it passes.
 */
const REPEAT_QUIET_MS = 60_000;

/**
 * Lets a message through unless its `key` (default: the message) repeats the last one within
 * REPEAT_QUIET_MS; says how often it was held back.
 */
function repeatFilter(now: () => number = Date.now): (message: string, key?: string) => string | undefined {
  let last = '';
  let loggedAt = 0;
  let held = 0;
  return (message, key = message) => {
    if (key === last && now() - loggedAt < REPEAT_QUIET_MS) {
      held++;
      return undefined;
    }
    const note = key === last && held > 0 ? ` (${held} more time${held === 1 ? '' : 's'} since last logged)` : '';
    last = key;
    loggedAt = now();
    held = 0;
    return `${message}${note}`;
  };
}

/**
 * A stop that lands while files are being written lets that write finish and its on-update command
 * run, at most this long: otherwise the files change and the program reading them is never told
 * (a restarted agent finds them current and runs nothing).
 */
const STOP_GRACE_MS = 10_000;

/** How long a failed write waits before it is tried again (while watching). */
const WRITE_RETRY_MS = 5000;
/**
 * A write that keeps failing is tried again less and less often: each try of one that fails part
 * way (a bind-mounted cert.pem) swaps key.pem in and back, and logs an error.
 */
const WRITE_RETRY_MAX_MS = 5 * 60_000;

export const AGENT_FILES = { cert: 'cert.pem', key: 'key.pem', bundle: 'bundle.pem', meta: 'svid.json' } as const;

interface Planned {
  file: string;
  data: string;
  mode: number;
}

/** One-shot: the files were written but the on-update command failed, so whatever it reloads may not have the new files. */
export class HookFailed extends Error {}

/** A name asked for came as a secret of the wrong kind: one-shot fails; --watch NACKs it and waits for the next push. */
export class WrongSecretKind extends Error {}

/** How a secret's kind reads in a message. */
function kindOf(s: DecodedSecret): string {
  return s.kind === 'tls_certificate' ? 'an identity (tls_certificate)' : s.kind === 'spiffe' ? 'a trust bundle (SPIFFE validation context)' : 'a trust bundle (trusted_ca validation context)';
}

/** Which flag asked for a name: only one the user gave is named, else the default it came from. */
export interface AskedBy {
  identity: string;
  trust: string;
}

function plan(identity: DecodedSecret, trust: DecodedSecret, version: string, outDir: string, asked: AskedBy): { files: Planned[]; write: AgentWrite } {
  if (identity.kind !== 'tls_certificate') {
    throw new WrongSecretKind(`secret ${JSON.stringify(identity.name)}, asked for as the identity (${asked.identity}), came as ${kindOf(identity)}, not a tls_certificate; the identity must name one (default, a SPIFFE ID, a KRI)`);
  }
  let bundle: string;
  let trustDomains: string[];
  if (trust.kind === 'spiffe') {
    bundle = trust.trustDomains.map((t) => canonicalCertificates(t.pem, `trust bundle ${JSON.stringify(trust.name)} (${t.name})`)).join('');
    trustDomains = trust.trustDomains.map((t) => t.name);
  } else if (trust.kind === 'trusted_ca') {
    bundle = canonicalCertificates(trust.pem, `trust bundle ${JSON.stringify(trust.name)}`);
    trustDomains = (trust.sanPrefixes ?? []).map((p) => p.replace(/^spiffe:\/\//, '').replace(/\/$/, ''));
  } else {
    throw new WrongSecretKind(`secret ${JSON.stringify(trust.name)}, asked for as the trust bundle (${asked.trust}), came as ${kindOf(trust)}, not a validation context; the trust bundle must name one (ALL, system_trust_bundle, ROOTCA, spiffe://<trust domain>)`);
  }
  const leaf = summarizeCertificate(parseCertificates(identity.certChainPem)[0]!);
  const write: AgentWrite = { outDir, changed: [], serial: leaf.serial, notBefore: leaf.notBefore, notAfter: leaf.notAfter, trustDomains, version };
  if (leaf.spiffeId) write.spiffeId = leaf.spiffeId;
  const meta = { spiffeId: leaf.spiffeId ?? null, serial: leaf.serial, notBefore: leaf.notBefore, notAfter: leaf.notAfter, issuer: leaf.issuer, trustDomains };
  return {
    write,
    files: [
      { file: AGENT_FILES.bundle, data: bundle, mode: 0o644 },
      { file: AGENT_FILES.key, data: canonicalKey(identity.keyPem), mode: 0o600 },
      { file: AGENT_FILES.cert, data: canonicalCertificates(identity.certChainPem, `certificate chain of ${JSON.stringify(identity.name)}`), mode: 0o644 },
      { file: AGENT_FILES.meta, data: `${JSON.stringify(meta, null, 2)}\n`, mode: 0o644 },
    ],
  };
}

interface FolderNotes {
  open(mode: number): void;
  openAbove(above: OpenFolder): void;
  staleRemoved(names: string[]): void;
}

/** `beforeCommit` runs once the new version is written, before readers can see it (only if any file changed). */
async function writeChanged(outDir: string, files: Planned[], notes: FolderNotes, beforeCommit?: () => Promise<void>, folderReady?: () => void): Promise<string[]> {
  await refuseForeignPath(outDir);
  // Made (again) before every write: a directory removed while the agent runs comes back.
  await mkdir(outDir, { recursive: true, mode: 0o755 }).catch((e: NodeJS.ErrnoException) => whyNotMade(outDir, e));
  // Again now that it exists: one who can create entries beside it (a sticky /tmp) may have put a
  // symlink of theirs there meanwhile, which mkdir -p accepts and every path below would follow.
  const openAbove = await refuseForeignPath(outDir);
  if (openAbove) notes.openAbove(openAbove);
  const ownMode = await refuseForeignFolder(outDir);
  if (ownMode !== undefined) notes.open(ownMode);
  folderReady?.();
  const stale = await removeStaleStagedFiles(outDir, [...files.map((f) => f.file), HOOK_STATE_FILE, DATA_LINK]);
  if (stale.length > 0) notes.staleRemoved(stale);
  return writeAtomically(outDir, files, beforeCommit);
}

/**
 * A folder that another (non-root) user owns, such as a `/tmp/backend` made by someone else first,
 * lets that user swap the key and certificate between our writes and the reload that reads them.
 */
async function refuseForeignFolder(outDir: string): Promise<number | undefined> {
  const st = await stat(outDir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
    throw new Error(`refusing to write into ${outDir}: it belongs to uid ${st.uid}, not to this user (uid ${uid}), who could replace the key and certificate written there; use a folder of your own`);
  }
  // Writable by others without the sticky bit: they can rename over our files. Not refused, since a
  // Kubernetes emptyDir (shared only by the pod's own containers) is made 0777; returned for a warning.
  return openMode(st.mode);
}

/**
 * mkdir -p reports ENOENT for a folder it cannot create on a read-only file system: name the
 * nearest folder that exists and why it cannot be written to instead.
 */
async function whyNotMade(outDir: string, e: NodeJS.ErrnoException): Promise<never> {
  if (e.code === 'ENOENT') {
    let at = dirname(resolve(outDir));
    while (at !== dirname(at) && !(await access(at).then(() => true, () => false))) at = dirname(at);
    await access(at, constants.W_OK).catch((denied: Error) => {
      throw new Error(`cannot create ${outDir}: ${denied.message}`, { cause: e });
    });
  }
  throw e;
}

export function startAgent(opts: AgentOptions): Agent {
  const identityName = opts.identityName ?? 'default';
  const trustName = opts.trustName ?? 'ALL';
  const asked: AskedBy = {
    identity: opts.identityName === undefined ? 'the default identity name' : `--name ${JSON.stringify(identityName)}`,
    trust: opts.trustName === undefined ? 'the default trust bundle name' : `--trust-name ${JSON.stringify(trustName)}`,
  };
  const log: AgentLog = opts.log ?? (() => undefined);
  /** Removes the body of the key last written from what the on-update command prints. */
  let redactKey: (text: string) => string = (t) => t;
  /** Records how the command ended, so that one that never succeeded is run again by the next agent. */
  const recordHookResult = async (failure: string | undefined): Promise<void> => {
    await writeHookState(opts.outDir, failure === undefined ? 'succeeded' : 'failed', failure).catch((e: Error) =>
      log('warn', `cannot record the on-update command's result in ${opts.outDir}: ${e.message}`),
    );
  };
  const hook = opts.onUpdate
    ? new UpdateHook({
        command: opts.onUpdate,
        env: { MESH_SDS_OUT_DIR: opts.outDir },
        timeoutMs: opts.onUpdateTimeoutMs,
        log,
        retry: !!opts.watch,
        onResult: recordHookResult,
        redact: (output) => redactKey(output),
      })
    : undefined;

  let resolveFirst!: (w: AgentWrite) => void;
  let rejectFirst!: (e: unknown) => void;
  const firstWrite = new Promise<AgentWrite>((res, rej) => {
    resolveFirst = res;
    rejectFirst = rej;
  });
  firstWrite.catch(() => undefined); // callers may only await `done`
  let wrote = false;
  let failure: unknown;
  let closed = false;
  let warnedOpenFolder = false;
  const warnOpenFolder = (mode: number): void => {
    if (warnedOpenFolder) return;
    warnedOpenFolder = true;
    const who = (mode & 0o002) !== 0 ? 'every user' : 'its group';
    log('warn', `${opts.outDir} is writable by ${who} (mode ${mode.toString(8).padStart(4, '0')}): they could replace key.pem and cert.pem between writes; unless only this pod's containers share it, use a folder only this user can write (chmod go-w)`);
  };
  let warnedOpenAbove = false;
  const folderNotes: FolderNotes = {
    open: warnOpenFolder,
    openAbove: ({ folder, mode }) => {
      if (warnedOpenAbove) return;
      warnedOpenAbove = true;
      const who = (mode & 0o002) !== 0 ? 'every user' : 'its group';
      log('warn', `${folder}, a folder on the way to ${opts.outDir}, is writable by ${who} (mode ${mode.toString(8).padStart(4, '0')}) without the sticky bit: they could rename the out-dir away and put their own (a symlink to another folder) in its place between writes; use a folder whose parents only this user or root can write (chmod go-w, or +t)`);
    },
    staleRemoved: (names) =>
      log('warn', `removed ${names.length === 1 ? 'a temp file' : `${names.length} temp files`} that an earlier run staged in ${opts.outDir} and never renamed (${names.join(', ')}): it was stopped mid-write`),
  };
  /** A write that failed while watching is tried again, until it lands or a newer push replaces it. */
  let retryTimer: NodeJS.Timeout | undefined;
  /** The failed write that retryTimer is to try again, until a write lands: a refused push must not drop it. */
  let retryOwed: { version: string; failed: unknown } | undefined;
  /**
   * The newest value pushed for each name, NACKed or not: what later pushes merge with. The stream's
   * accepted state lacks a push whose write failed (NACKed) and then landed on retry, and merging a
   * trust-only push with it would write the older identity back.
   */
  const latest = new Map<string, DecodedSecret>();

  /** The write in progress, if any: a stop waits for it (and its hook), up to STOP_GRACE_MS. */
  let writing: Promise<void> | undefined;
  const write = (identity: DecodedSecret, trust: DecodedSecret, version: string): Promise<void> => {
    // After the one under way: a push that lands while the retry of an older one is writing must
    // not be switched in first and then undone by it.
    const w = (writing ?? Promise.resolve()).catch(() => undefined).then(() => writeAndRunHook(identity, trust, version));
    writing = w;
    const clear = () => {
      if (writing === w) writing = undefined;
    };
    w.then(clear, clear);
    return w;
  };
  /** Taken before the first write into the out-dir, released when the agent stops. */
  let lock: Lock | undefined;
  /** The SPIFFE ID last written (read from svid.json before the first write): a change is warned about. */
  let lastSpiffeId: string | null | undefined;
  const expiry = opts.watch ? new ExpiryWatch(log) : undefined;
  // The certificate an earlier run wrote is watched until a write replaces it: a restarted agent
  // whose server does not answer would otherwise let it expire unsaid.
  if (expiry) {
    void readRegularFile(join(opts.outDir, DATA_LINK, AGENT_FILES.cert), MAX_OWN_FILE_BYTES).then((r) => {
      if (!r || wrote || closed) return;
      try {
        const leaf = summarizeCertificate(parseCertificates(r.data.toString('utf8'))[0]!);
        const [from, until] = [Date.parse(leaf.notBefore), Date.parse(leaf.notAfter)];
        if (!Number.isNaN(from) && !Number.isNaN(until)) expiry.watch(from, until, leaf.serial);
      } catch {
        // Not a certificate we can read: nothing to watch.
      }
    });
  }
  const writeAndRunHook = async (identity: DecodedSecret, trust: DecodedSecret, version: string): Promise<void> => {
    const { files, write: w } = plan(identity, trust, version, opts.outDir, asked);
    if (lastSpiffeId === undefined) {
      // Through ..data: svid.json is a symlink, which readRegularFile does not follow (an older
      // version wrote a plain file).
      const meta =
        (await readRegularFile(join(opts.outDir, DATA_LINK, AGENT_FILES.meta), 64 * 1024)) ??
        (await readRegularFile(join(opts.outDir, AGENT_FILES.meta), 64 * 1024));
      try {
        lastSpiffeId = meta ? ((JSON.parse(meta.data.toString('utf8')) as { spiffeId?: string | null }).spiffeId ?? null) : null;
      } catch {
        lastSpiffeId = null;
      }
    }
    // Throws RefusedSvid for what must not be written; the rest is said once the files changed.
    const check = checkSvid(identity.kind === 'tls_certificate' ? identity.certChainPem : '', files[0]!.data, lastSpiffeId ?? undefined);
    // The command is owed from the moment the first file is renamed: recorded before it.
    w.changed = await writeChanged(opts.outDir, files, folderNotes, async () => {
      await opts.onStaged?.();
      if (hook) await writeHookState(opts.outDir, 'pending');
    }, () => {
      lock = takeLock(opts.outDir);
    });
    retryOwed = undefined;
    unlessNackRepeated = repeatFilter(); // a failure after this write is news again
    if (w.changed.length > 0) for (const warning of check.warnings) log('warn', warning);
    lastSpiffeId = check.spiffeId ?? null;
    // The key as written (the command reads that file), and as the server sent it.
    const keyFile = files.find((f) => f.file === AGENT_FILES.key)!.data;
    if (identity.kind === 'tls_certificate') redactKey = keyBodyRedactor(`${keyFile}\n${identity.keyPem}`);
    expiry?.watch(Date.parse(w.notBefore), Date.parse(w.notAfter), w.serial);
    opts.onWrite?.(w);
    if (!wrote) {
      wrote = true;
      resolveFirst(w);
    }
    let owed = w.changed.length > 0;
    if (hook && !owed) {
      // Files already current, but the command may never have succeeded on them (it failed, or an
      // agent was stopped or killed before it ended): run it now.
      const state = await readHookState(opts.outDir);
      if (state && state.onUpdate !== 'succeeded') {
        owed = true;
        log('info', `files already current, but the on-update command has not succeeded on them (${state.onUpdate === 'failed' ? `last run: ${state.failure ?? 'failed'}` : 'it did not finish'}): running it`);
      }
    }
    if (hook && owed) {
      const run = hook.trigger();
      if (!opts.watch) {
        const hookFailure = await run;
        if (hookFailure) failure ??= new HookFailed(`${w.changed.length > 0 ? `wrote ${w.changed.join(', ')}` : 'the files were current'}, but the on-update command failed (${hookFailure})`);
      }
    }
  };
  /** Reports a failed write and tries it again later. */
  const firstRetryMs = opts.writeRetryMs ?? WRITE_RETRY_MS;
  let retryMs = firstRetryMs;
  /** Counts the pushes written: a retry of an older one (failing again while a newer one waited) is dropped. */
  let pushes = 0;
  const retryLater = (failed: unknown, identity: DecodedSecret, trust: DecodedSecret, version: string, push: number, byPush = false): void => {
    if (push !== pushes) return;
    retryOwed = { version, failed };
    const wait = retryMs;
    retryMs = Math.min(retryMs * 2, WRITE_RETRY_MAX_MS);
    const message = `cannot write ${opts.outDir} (version ${version}, NACKed by this agent): ${(failed as Error).message}; trying again in ${wait / 1000} s`;
    // A push failing as the last one did is said once a minute (a server may resend on every NACK).
    if (byPush) logNack(message, `write: ${(failed as Error).message}`);
    else log('error', message);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      if (closed || push !== pushes) return;
      write(identity, trust, version).then(
        () => {
          retryMs = firstRetryMs;
          log('info', `wrote ${opts.outDir} (version ${version}) on retry`);
        },
        (e: unknown) => {
          if (!(e instanceof OutDirLocked)) return retryLater(e, identity, trust, version, push);
          failure = e;
          stream.close();
        },
      );
    }, wait);
  };

  const unanswered = (): string[] =>
    [
      { name: identityName, flag: opts.identityName === undefined ? 'the default identity' : '--name' },
      { name: trustName, flag: opts.trustName === undefined ? 'the default trust bundle' : '--trust-name' },
    ]
      .filter((n) => !latest.has(n.name))
      .map((n) => `${JSON.stringify(n.name)} (${n.flag})`);
  // A name the server holds but never sends (or does not hold for this node) would otherwise leave
  // the agent waiting in silence: said once.
  const unansweredTimer = setTimeout(() => {
    const missing = unanswered();
    if (missing.length > 0 && !closed) log('warn', `no answer for ${missing.join(', ')} after ${UNANSWERED_NOTE_MS / 1000} s; still waiting (check the name, and that the server gives it to this node)`);
  }, UNANSWERED_NOTE_MS);
  unansweredTimer.unref();

  /** The message of the push failure the handler has reported (or left to `done`): not said again as a NACK. */
  let reported: string | undefined;
  const unlessRepeated = repeatFilter();
  /** NACKs for one reason, whatever the version (a server bumping it on each resend), are said once a minute. */
  let unlessNackRepeated = repeatFilter();
  const logNack = (message: string, reason: string): void => {
    const line = unlessNackRepeated(message, reason);
    if (line !== undefined) log('error', line);
  };
  const stream = openSecretStream(
    {
      ...opts,
      names: [identityName, trustName],
      // Watching, a token that expired or was revoked is no reason to stop: its file may be refreshed.
      retryEveryStatus: !!opts.watch,
      // The handler below reports the failures it meets, once, saying it is this agent's NACK;
      // what fails before it (a secret that does not decode) is said here.
      onNack: (version, message) => {
        if (message === reported) {
          reported = undefined;
          return;
        }
        logNack(`version ${version || '(empty)'} not written (NACKed by this agent): ${message}`, message);
      },
      onError: (err: SdsError, retryInMs?: number) => {
        const message = unlessRepeated(err.message);
        if (message === undefined) return;
        const retry = retryInMs === undefined ? '' : `; reconnecting in ${(retryInMs / 1000).toFixed(1)} s`;
        log('warn', `${message}${retry}`);
      },
    },
    async (secrets, version) => {
      const lastGood = new Map(latest);
      for (const s of secrets) latest.set(s.name, s);
      const identity = latest.get(identityName);
      const trust = latest.get(trustName);
      if (!identity || !trust) return; // keep waiting for the other half
      clearTimeout(retryTimer); // this push replaces whatever was waiting to be written
      const push = ++pushes;
      try {
        await write(identity, trust, version);
        retryMs = firstRetryMs;
      } catch (e) {
        if (e instanceof OutDirLocked) {
          failure = e; // reported once, by whoever awaits `done`
          setImmediate(() => stream.close());
        } else if (e instanceof WrongSecretKind || e instanceof RefusedSvid) {
          if (opts.watch) {
            // One bad push (a server misconfigured for a moment) must not end the agent: NACKed,
            // the files written last stay, and later pushes merge with the last good values.
            latest.clear();
            for (const [k, v] of lastGood) latest.set(k, v);
            logNack(`version ${version} not written (NACKed by this agent; ${wrote ? 'the files written before stay' : 'nothing written yet'}): ${e.message}`, e.message);
            // A write that failed before and waited for its retry (cleared above) is still owed.
            const [id, tr] = [lastGood.get(identityName), lastGood.get(trustName)];
            if (retryOwed && id && tr) retryLater(retryOwed.failed, id, tr, retryOwed.version, push);
          } else {
            failure = new Error(`version ${version} not written (NACKed by this agent): ${e.message}`, { cause: e });
            setImmediate(() => stream.close());
          }
        } else if (!opts.watch) {
          // Said once, by whoever awaits `done`: the agent's own failure, not a status from the server.
          failure = new Error(`cannot write ${opts.outDir}: ${(e as Error).message} (version ${version} NACKed by this agent)`, { cause: e });
          setImmediate(() => stream.close());
        } else retryLater(e, identity, trust, version, push, true);
        reported = (e as Error).message;
        throw e; // NACK: this version was not applied
      }
      if (!opts.watch) setImmediate(() => stream.close());
    },
  );

  const stopRetrying = () => {
    closed = true;
    clearTimeout(unansweredTimer);
    expiry?.stop();
    clearTimeout(retryTimer);
  };
  /** Waits for the write in progress and its hook, then ends any hook still running. */
  let graceTimer: NodeJS.Timeout | undefined;
  const finishWriting = async (): Promise<void> => {
    const pending = writing;
    if (!pending) return;
    const grace = new Promise<void>((resolve) => {
      graceTimer = setTimeout(resolve, STOP_GRACE_MS);
    });
    await Promise.race([pending.catch(() => undefined).then(() => hook?.idle()), grace]);
    clearTimeout(graceTimer);
    hook?.stop(); // the grace is spent
  };
  const done = stream.done.then(
    async () => {
      stopRetrying();
      await finishWriting();
      hook?.stop(STOP_GRACE_MS); // no more retries; a run under way may finish
      await hook?.idle();
      lock?.release();
      if (failure) {
        rejectFirst(failure);
        throw failure;
      }
      if (!wrote) rejectFirst(new Error('agent stopped before the first write'));
    },
    async (err: unknown) => {
      stopRetrying();
      hook?.stop(STOP_GRACE_MS);
      await hook?.idle();
      lock?.release();
      rejectFirst(err);
      throw err;
    },
  );
  return {
    firstWrite,
    done,
    close: () => {
      stopRetrying();
      // A write in progress finishes and runs its hook (done waits for it); otherwise a hook running
      // now is given the same grace to finish, then ended (the state file records it did not succeed).
      if (!writing) hook?.stop(STOP_GRACE_MS);
      stream.close();
    },
    get hookRuns() {
      return hook?.runs ?? 0;
    },
    unanswered,
  };
}
