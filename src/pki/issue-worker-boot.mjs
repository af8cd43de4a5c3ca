// Plain-JS entry for the issuance worker when running from TypeScript sources: Node 20 does not
// apply an inherited `--import tsx` to a worker's entry file, so register tsx here, load the
// worker, then unregister (its loader port would otherwise keep the process alive).
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

const unregister = register();
await import(workerData.entry);
await unregister();
