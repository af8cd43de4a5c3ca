// The setup most agent tests share: a temp folder, an SVID "A", and a scripted server whose every
// stream gets what `onStream` pushes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import type { TestCa } from '../helpers/openssl.js';
import { ScriptedSds, waitFor, type SdsCall } from './fake-sds.js';
import { identitySecret, makeSvid, trustSecret } from './svids.js';

export interface ScriptedSetup {
  root: string;
  a: TestCa;
  sds: ScriptedSds;
}

export async function openScripted(prefix: string, onStream: (s: ScriptedSetup, call: SdsCall) => void): Promise<ScriptedSetup> {
  const s: ScriptedSetup = { root: mkdtempSync(join(tmpdir(), prefix)), a: makeSvid('A'), sds: await new ScriptedSds().start() };
  s.sds.onStream = (call) => onStream(s, call);
  return s;
}

export function closeScripted(s: ScriptedSetup | undefined): void {
  s?.sds.close();
  if (s) rmSync(s.root, { recursive: true, force: true });
}

/** One run of the agent (no --watch) against `sds` into `dir`; the server is closed after it. */
export async function fetchOnceInto(sds: ScriptedSds, dir: string): Promise<void> {
  try {
    await startAgent({ server: sds.address, node: 'default.web', outDir: dir }).done;
  } finally {
    sds.close();
  }
}

/** SVID `a` as `default`, and its certificate as the trust bundle `ALL` of a.example. */
export function identityAndTrust(a: TestCa) {
  return [tlsCertificateSecret('default', a.certPem, a.keyPem, 's'), spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: a.certPem }])];
}

export interface WatchingAgent {
  sds: ScriptedSds;
  /** The agent's --out-dir. */
  dir: string;
  /** The agent's log messages. */
  logs: string[];
  /** SVID "A" (pushed first, as `default` and as the trust bundle) and "B". */
  a: TestCa;
  b: TestCa;
}

/**
 * An agent with --watch on a scripted server that has pushed version "1" (A's identity and trust)
 * and had it written; `body` runs, then the agent, the server and the folder go.
 */
export async function withWatchingAgent(prefix: string, body: (w: WatchingAgent) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const [a, b] = [makeSvid('A'), makeSvid('B')];
  const sds = await new ScriptedSds().start();
  const dir = join(root, 'watch');
  const logs: string[] = [];
  const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, log: (_l, m) => logs.push(m) });
  try {
    await waitFor(() => sds.streams.length === 1, 'a stream');
    sds.push('1', [identitySecret(a), trustSecret(a)]);
    await agent.firstWrite;
    await body({ sds, dir, logs, a, b });
  } finally {
    agent.close();
    await agent.done.catch(() => undefined);
    sds.close();
    rmSync(root, { recursive: true, force: true });
  }
}
