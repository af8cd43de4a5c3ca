// Runs the `--on-update` command (`sh -c`) after files change. Runs never overlap: a change that
// arrives while the command runs schedules exactly one more run. Failures are logged, not fatal
// (spiffe-helper behaves the same: a failed reload must not stop certificate renewal).
import { spawn } from 'node:child_process';

export type HookLog = (level: 'info' | 'warn', message: string) => void;

export interface UpdateHookOptions {
  command: string;
  /** Extra environment for the command; the token variable is always removed. */
  env?: Record<string, string>;
  /** Killed (SIGTERM) after this long; default 60 s. */
  timeoutMs?: number;
  log: HookLog;
}

const OUTPUT_LIMIT = 4096;

export class UpdateHook {
  private running: Promise<void> | undefined;
  private pending = false;
  runs = 0;

  constructor(private readonly opts: UpdateHookOptions) {}

  /** Requests a run; returns when that run (or a later one covering it) has finished. */
  trigger(): Promise<void> {
    if (this.running) {
      this.pending = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.pending = false;
        await this.runOnce();
      } while (this.pending);
      this.running = undefined;
    })();
    return this.running;
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
      const child = spawn('sh', ['-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const collect = (b: Buffer) => {
        if (output.length < OUTPUT_LIMIT) output += b.toString('utf8');
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      const timer = setTimeout(() => child.kill('SIGTERM'), this.opts.timeoutMs ?? 60_000);
      child.on('error', (err) => {
        clearTimeout(timer);
        log('warn', `on-update command could not start: ${err.message}`);
        resolve();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const out = output.trim().slice(0, OUTPUT_LIMIT);
        const suffix = out ? `; output: ${out}` : '';
        if (code === 0) log('info', `on-update command succeeded${suffix}`);
        else log('warn', `on-update command failed (${signal ? `signal ${signal}` : `exit code ${code}`})${suffix}`);
        resolve();
      });
    });
  }
}
