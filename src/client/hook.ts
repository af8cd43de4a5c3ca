// Runs the `--on-update` command (`sh -c`) after files change. Runs never overlap: a change that
// arrives while the command runs schedules exactly one more run. Failures are logged, not fatal
// (spiffe-helper behaves the same: a failed reload must not stop certificate renewal); a caller that
// waits for a run (one-shot fetch) learns how it ended. With `retry`, a failed run is run again
// (1 s, doubling to 60 s) until one succeeds: the program it reloads may only have been down for a
// moment, and otherwise it would keep the old certificate until the next rotation, or past expiry.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

export type HookLog = (level: 'info' | 'warn', message: string) => void;

export interface UpdateHookOptions {
  command: string;
  /** Extra environment for the command; the token variable is always removed. */
  env?: Record<string, string>;
  /** Killed after this long (SIGTERM to its process group, SIGKILL 5 s later); default 60 s. */
  timeoutMs?: number;
  log: HookLog;
  /** Run a failed command again, with backoff, until it succeeds or the hook is stopped (--watch). */
  retry?: boolean;
  /** Told how each run ended (undefined: it succeeded) before the next starts or a trigger resolves. */
  onResult?: (failure: string | undefined) => Promise<void>;
  /** Applied to what the command printed before it is logged (the agent removes key material). */
  redact?: (output: string) => string;
}

const OUTPUT_LIMIT = 4096;

/** How long a command killed with SIGTERM (its whole process group) has before SIGKILL. */
const KILL_GRACE_MS = 5000;

/** The first wait before a failed command is run again; it doubles up to RETRY_MAX_MS and resets on success. */
export const RETRY_FIRST_MS = 1000;
export const RETRY_MAX_MS = 60_000;

export class UpdateHook {
  private running: Promise<void> | undefined;
  private pending = false;
  private stopped = false;
  /** Ends the run in progress (its process group), if any. */
  private killCurrent: (() => void) | undefined;
  runs = 0;
  /** How the last run failed ("exit code 3", "signal SIGTERM", "could not start: …"); undefined if it succeeded. */
  private lastFailure: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_FIRST_MS;
  /** Ends the run in progress when a stop's grace has run out. */
  private stopTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: UpdateHookOptions) {}

  /**
   * Requests a run; resolves when that run (or a later one covering it) has finished, with how it
   * failed, or undefined if it succeeded (or was not run: the hook is stopped).
   */
  trigger(): Promise<string | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    clearTimeout(this.retryTimer); // this run covers the retry that was waiting
    if (this.running) {
      this.pending = true;
      return this.running.then(() => this.lastFailure);
    }
    this.running = (async () => {
      do {
        this.pending = false;
        await this.runOnce();
        await this.opts.onResult?.(this.lastFailure);
      } while (this.pending && !this.stopped);
      this.running = undefined;
      clearTimeout(this.stopTimer);
      this.scheduleRetry();
    })();
    return this.running.then(() => this.lastFailure);
  }

  private scheduleRetry(): void {
    if (this.lastFailure === undefined) {
      this.retryMs = RETRY_FIRST_MS;
      return;
    }
    if (!this.opts.retry || this.stopped) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.opts.log('warn', `running the on-update command again in ${wait / 1000} s (it has not succeeded since the files last changed)`);
    this.retryTimer = setTimeout(() => void this.trigger(), wait);
  }

  /**
   * No more runs. The one in progress is given `graceMs` to finish (the files it reloads are
   * written; cutting it short could leave the program half reloaded), then ended.
   */
  stop(graceMs = 0): void {
    this.stopped = true;
    this.pending = false;
    clearTimeout(this.retryTimer);
    if (!this.running) return;
    if (graceMs <= 0) {
      clearTimeout(this.stopTimer);
      this.killCurrent?.();
      return;
    }
    if (this.stopTimer) return;
    this.opts.log('info', `stopping: waiting up to ${graceMs / 1000} s for the on-update command to finish`);
    this.stopTimer = setTimeout(() => this.killCurrent?.(), graceMs);
  }

  /** Resolves once no run is in progress or queued. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private runOnce(): Promise<void> {
    const { command, log } = this.opts;
    this.runs++;
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.opts.env };
    // The command has no business with the SDS token.
    delete env['MESH_SDS_TOKEN'];
    return new Promise<void>((resolve) => {
      // Its own process group, so a timeout or a stop ends what the command started too.
      const child = spawn('sh', ['-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let output = '';
      const collect = (b: Buffer) => {
        if (output.length < OUTPUT_LIMIT) output += b.toString('utf8');
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      let escalation: NodeJS.Timeout | undefined;
      const signalGroup = (signal: NodeJS.Signals) => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, signal);
        } catch {
          // The group is gone already.
        }
      };
      const kill = () => {
        signalGroup('SIGTERM');
        escalation ??= setTimeout(() => signalGroup('SIGKILL'), KILL_GRACE_MS);
        escalation.unref();
      };
      this.killCurrent = kill;
      const timeoutMs = this.opts.timeoutMs ?? 60_000;
      // Said as such: "signal SIGTERM" alone does not tell who ended it, nor that it hung.
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, timeoutMs);
      const finish = (failure?: string) => {
        this.lastFailure = failure;
        clearTimeout(timer);
        // Ended by us: what the command started may ignore SIGTERM and outlive the shell. The
        // SIGKILL to its group still comes when the grace is over, and the agent waits for it.
        escalation?.ref();
        this.killCurrent = undefined;
        // A program the command left running in the background (a daemon restarted by it) may hold
        // the output pipes for ever: they are drained but no longer waited for.
        for (const pipe of [child.stdout, child.stderr]) (pipe as Readable & { unref?: () => void }).unref?.();
        resolve();
      };
      child.on('error', (err) => {
        log('warn', `on-update command could not start: ${err.message}`);
        finish(`could not start: ${err.message}`);
      });
      // 'exit', not 'close': 'close' also waits for every holder of the output pipes to let go.
      child.on('exit', (code, signal) => {
        // Output written just before the exit may still be in the pipe: read what is there now.
        setImmediate(() => {
          const out = (this.opts.redact ?? ((o: string) => o))(output).trim().slice(0, OUTPUT_LIMIT);
          const suffix = out ? `; output: ${out}` : '';
          const ended = signal ? `signal ${signal}` : `exit code ${code}`;
          const failure = timedOut ? `timed out after ${timeoutMs / 1000} s (${ended})` : code === 0 ? undefined : ended;
          if (failure) log('warn', `on-update command failed (${failure})${suffix}`);
          else log('info', `on-update command succeeded${suffix}`);
          finish(failure);
        });
      });
    });
  }
}
