// The raw node:crypto rate (SPEC §8's issuance reference): on every core at once, a fresh P-256
// key (ECDH generateKeys, the fastest fresh-key primitive) plus one ECDSA-SHA256 signature over a
// certificate-sized body — the cryptography a leaf needs, with no ASN.1, PEM or messaging around
// it. Issuance is judged as a fraction of this.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const WORKER = `
const { createECDH, generateKeyPairSync, sign } = require('node:crypto');
const { parentPort, workerData } = require('node:worker_threads');
const ca = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const tbs = Buffer.alloc(420, 7);
// The fastest fresh-key primitive node:crypto has (a new random key on every call).
const ecdh = createECDH('prime256v1');
const end = Date.now() + workerData.ms;
let n = 0;
while (Date.now() < end) {
  for (let i = 0; i < 20; i++) {
    ecdh.generateKeys();
    ecdh.getPrivateKey();
    sign('sha256', tbs, { key: ca, dsaEncoding: 'der' });
  }
  n += 20;
}
parentPort.postMessage(n);
`;

/** Key pairs + signatures per second over all cores, for `seconds`. */
export async function rawCryptoRate(seconds: number): Promise<{ perSec: number; threads: number }> {
  const threads = availableParallelism();
  const ms = seconds * 1000;
  const counts = await Promise.all(
    Array.from({ length: threads }, () => new Promise<number>((resolve, reject) => {
      const w = new Worker(WORKER, { eval: true, workerData: { ms } });
      w.once('message', (n: number) => resolve(n));
      w.once('error', reject);
    })),
  );
  return { perSec: counts.reduce((a, b) => a + b, 0) / seconds, threads };
}
