// --watch and a push whose secret is of the wrong kind: NACKed, the files written before stay, the
// agent keeps running, and the message names the secret, its kind, and no flag the user never gave.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import type { TestCa } from '../helpers/openssl.js';
import { identitySecret, makeSvid, trustSecret } from './svids.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

describe('a push of the wrong kind while watching', () => {
  let root: string;
  let a: TestCa;
  let b: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-wrong-kind-'));
    [a, b] = ['A', 'B'].map((n) => makeSvid(n)) as [TestCa, TestCa];
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const identity = identitySecret;
  const trust = trustSecret;

  it('is NACKed; the last good files stay; the next good push is written', { timeout: 30_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'watch');
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, log: (_l, m) => logs.push(m) });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(a)]);
      await agent.firstWrite;
      sds.push('2', [trust(b, 'default')]); // "default" now comes as a trust bundle
      await waitFor(() => sds.answerTo('2') !== undefined, 'the answer to version 2');
      assert.match(sds.answerTo('2')!.error_detail?.message ?? '', /came as a trust bundle/);
      const line = logs.find((m) => /version 2 not written/.test(m)) ?? '';
      assert.match(line, /NACKed by this agent; the files written before stay/);
      assert.match(line, /secret "default", asked for as the identity \(the default identity name\), came as a trust bundle \(SPIFFE validation context\)/);
      assert.doesNotMatch(line, /--name must/);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
      // Still running: a good push is written, merged with the last good trust bundle.
      sds.push('3', [identity(b)]);
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3');
      assert.equal(sds.answerTo('3')!.error_detail ?? undefined, undefined);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), b.certPem);
      assert.equal(readFileSync(join(dir, 'bundle.pem'), 'utf8'), a.certPem);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });
});
