// Plain-JS entry for the issuance worker when running from TypeScript sources: Node 20 does not
// apply an inherited `--import tsx` to a worker's entry file, so register tsx here, then load it.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
