// Child processes for the end-to-end suite: captured output, waiting for a line, and a stop that
// always ends the whole process group it started (nginx and Envoy fork workers).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createServer } from 'node:net';

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** Everything written so far (bounded). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first line (past or future) of stdout/stderr that matches; rejects on exit or timeout. */
  waitForLine(re: RegExp, timeoutMs: number, from?: 'stdout' | 'stderr', after?: number): Promise<string>;
  /** Number of stdout lines so far: pass it as `after` to wait only for lines written later. */
  lineCount(from?: 'stdout' | 'stderr'): number;
  readonly exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const KEEP = 256 * 1024;

export function startProc(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
  // Own process group, so stop() can end forked workers too, by this group's id only.
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const text = { stdout: '', stderr: '' };
  const lines: Record<'stdout' | 'stderr', string[]> = { stdout: [], stderr: [] };
  const partial = { stdout: '', stderr: '' };
  const waiters = new Set<() => void>();
  for (const which of ['stdout', 'stderr'] as const) {
    child[which]!.setEncoding('utf8');
    child[which]!.on('data', (chunk: string) => {
      text[which] = (text[which] + chunk).slice(-KEEP);
      const parts = (partial[which] + chunk).split('\n');
      partial[which] = parts.pop() ?? '';
      lines[which].push(...parts);
      for (const w of [...waiters]) w();
    });
  }
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => {
      exitCode = null;
      resolve(null);
      for (const w of [...waiters]) w();
    });
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
      for (const w of [...waiters]) w();
    });
  });

  const proc: Proc = {
    name,
    child,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    lineCount: (from = 'stdout') => lines[from].length,
    exited,
    waitForLine(re, timeoutMs, from = 'stdout', after = 0) {
      return new Promise<string>((resolve, reject) => {
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        const check = () => {
          const hit = lines[from].slice(after).find((l) => re.test(l));
          if (hit !== undefined) return finish(() => resolve(hit));
          if (exitCode !== undefined) {
            finish(() => reject(new Error(`${name} exited (${exitCode}) before printing ${re}; stderr:\n${text.stderr.slice(-2000)}`)));
          }
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`${name}: no ${from} line matching ${re} within ${timeoutMs} ms; stderr:\n${text.stderr.slice(-2000)}`))),
          timeoutMs,
        );
        waiters.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (exitCode !== undefined || child.pid === undefined) return;
      const group = -child.pid;
      try {
        process.kill(group, signal);
      } catch {
        return;
      }
      const killer = setTimeout(() => {
        try {
          process.kill(group, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 3000);
      await exited;
      clearTimeout(killer);
      // nginx/Envoy workers share the group; make sure none outlives its master.
      try {
        process.kill(group, 'SIGKILL');
      } catch {
        // none left
      }
    },
  };
  return proc;
}

/** A free loopback TCP port (bound and released: a tiny window for a race, acceptable on loopback). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` every `everyMs` until it returns a value other than undefined; bounded by `timeoutMs`. */
export async function poll<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}
