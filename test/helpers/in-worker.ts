// Runs one exported function of a TypeScript module in a worker thread, with a deadline: a test of
// a complexity fix must fail, not hang, when the work is quadratic again (a busy main thread never
// lets a node:test timeout fire).
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

/** `module[fn](...args)` (args and result structured-cloneable), or `still running after N s`. */
export async function callInWorker(moduleUrl: URL, fn: string, args: unknown[], deadlineMs = 60_000): Promise<unknown> {
  const code = `const { parentPort, workerData } = require('node:worker_threads');
import('tsx/esm/api').then((tsx) => { tsx.register(); return import(workerData.url); })
  .then((m) => parentPort.postMessage(m[workerData.fn](...workerData.args)));`;
  const worker = new Worker(code, { eval: true, workerData: { url: moduleUrl.href, fn, args } });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      once(worker, 'message').then(([m]) => m as unknown),
      once(worker, 'error').then(([e]) => Promise.reject(e as Error)),
      new Promise((resolve) => (timer = setTimeout(() => resolve(`still running after ${deadlineMs / 1000} s`), deadlineMs))),
    ]);
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
}
