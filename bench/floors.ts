// Spawns a transport floor (bench/floor-server.ts) as its own process: same load, nothing but the
// transport's own work, for the same-run ratios of SPEC §8.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { benchServerNodeArgs, procCpuMs, procKernel, procMainThreadCpuMs, procRssKb } from './server.js';

export type FloorKind = 'grpc-js' | 'http2' | 'grpc-h2';

export interface FloorProc {
  kind: FloorKind;
  child: ChildProcess;
  target: string;
  rssKb(): number;
  cpuMs(): number;
  mainThreadCpuMs(): number;
  kernel(): { systemCpuMs: number; minorFaults: number };
  /** Pushes the new trust bundle to every trust stream; resolves with how many were written to. */
  push(): Promise<number>;
  stop(): Promise<void>;
}

export async function spawnFloor(root: string, children: Set<ChildProcess>, kind: FloorKind, trustPemsFile: string): Promise<FloorProc> {
  const child = fork(join(root, 'bench/floor-server.ts'), [kind, trustPemsFile], { cwd: root, execArgv: [...benchServerNodeArgs(), '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`floor ${kind} did not listen within 30 s`)), 30_000);
    child.on('message', (m: { type: string; port?: number }) => {
      if (m.type === 'listening') {
        clearTimeout(t);
        resolve(m.port!);
      }
    });
    child.once('exit', (c) => reject(new Error(`floor ${kind} exited (${c})`)));
  });
  return {
    kind,
    child,
    target: `127.0.0.1:${port}`,
    rssKb: () => procRssKb(child.pid!),
    cpuMs: () => procCpuMs(child.pid!),
    mainThreadCpuMs: () => procMainThreadCpuMs(child.pid!),
    kernel: () => procKernel(child.pid!),
    push: () =>
      new Promise((resolve) => {
        const on = (m: { type: string; streams?: number }) => {
          if (m.type !== 'pushed') return;
          child.off('message', on);
          resolve(m.streams!);
        };
        child.on('message', on);
        child.send({ type: 'push' });
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
