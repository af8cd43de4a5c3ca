// Worker thread body for SvidIssuer: holds the CAs it was sent (by workerCaKey) and issues batches.
import { parentPort } from 'node:worker_threads';
import { issueLeafSync } from './leaf.js';
import type { CertificateAuthority } from './types.js';
import { WorkerCaSet, workerCaKey, type IssueResult, type ToMain, type ToWorker } from './issue-protocol.js';

const cas = new WorkerCaSet<CertificateAuthority>();

const port = parentPort;
if (!port) throw new Error('issue-worker must run in a worker thread');

port.on('message', (msg: ToWorker) => {
  // Buffers arrive as plain Uint8Arrays after structured cloning.
  for (const c of msg.cas) cas.add(workerCaKey(c), { ...c, certDer: Buffer.from(c.certDer), subjectKeyId: Buffer.from(c.subjectKeyId) });
  const results: IssueResult[] = msg.batch.map((r) => {
    try {
      const ca = cas.use(r.fp);
      if (!ca) throw new Error(`CA ${r.fp} was not sent to this worker`);
      return issueLeafSync(ca, r.spiffeId, r.expiryMs, r.nowMs);
    } catch (e) {
      const err = e as Error;
      return { error: { name: err.name, message: err.message } };
    }
  });
  cas.trim();
  port.postMessage({ type: 'issued', results } satisfies ToMain);
});

port.postMessage({ type: 'ready' } satisfies ToMain);
