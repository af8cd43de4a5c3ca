// SDS streams for the Postgres serving tests: each keeps the trust domains it was last sent and
// whether it ended, so tests can wait for a change to reach it.
import { openSecretStream, type SecretStream } from '../../src/client/sds-client.js';

export interface TrustWatch {
  /** Trust domains of the last `system_trust_bundle` received (empty before the first). */
  domains(): string[];
  /** PEM of every trust domain of the last bundle. */
  pems(): Map<string, string>;
  responses(): number;
  /** Set when the stream ended or had to reconnect (an error reported by the client). */
  broken(): string | undefined;
  /** Resolves when the last bundle satisfies `pred`; rejects after `ms`. */
  until(pred: (domains: string[]) => boolean, ms: number, what?: string): Promise<void>;
  close(): void;
}

export function watchTrust(server: string, node: string): TrustWatch {
  let pems = new Map<string, string>();
  let responses = 0;
  let broken: string | undefined;
  const waiters = new Set<() => void>();
  const stream: SecretStream = openSecretStream(
    { server, node, names: ['system_trust_bundle'], backoff: { initialMs: 100, maxMs: 500 }, onError: (e) => (broken ??= e.message) },
    (_secrets, _v, all) => {
      const s = all.get('system_trust_bundle');
      if (s?.kind === 'spiffe') pems = new Map(s.trustDomains.map((t) => [t.name, t.pem]));
      responses++;
      for (const w of [...waiters]) w();
    },
  );
  stream.done.catch((e: Error) => (broken ??= e.message));
  const domains = () => [...pems.keys()].sort();
  return {
    domains,
    pems: () => pems,
    responses: () => responses,
    broken: () => broken,
    until(pred, ms, what = 'the expected trust domains') {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!pred(domains())) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${node}@${server}: no ${what} within ${ms} ms; has ${JSON.stringify(domains())}${broken ? `; stream: ${broken}` : ''}`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
    close: () => stream.close(),
  };
}
