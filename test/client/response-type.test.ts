// A response whose type_url is not the Secret type (a Cluster, a Listener response from a server
// mixing up its streams) is not read as secrets: NACKed naming the type, the files written before stay.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import type { TestCa } from '../helpers/openssl.js';
import { identitySecret, makeSvid, trustSecret } from './svids.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

const CLUSTER_TYPE_URL = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

describe('a response of another type than Secret', () => {
  let root: string;
  let a: TestCa;
  let b: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-response-type-'));
    [a, b] = ['A', 'B'].map((n) => makeSvid(n)) as [TestCa, TestCa];
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const identity = identitySecret;
  const trust = trustSecret;

  it('is NACKed naming its type; the files written before stay; the next Secret response is written', { timeout: 30_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'watch');
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, log: (_l, m) => logs.push(m) });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(a)]);
      await agent.firstWrite;
      // The resources inside are Secrets, but the response says it answers a Cluster watch.
      sds.streams.at(-1)!.call.write({ version_info: '2', nonce: 'n-2', type_url: CLUSTER_TYPE_URL, resources: [identity(b).any, trust(b).any] });
      await waitFor(() => sds.answerTo('2') !== undefined, 'the answer to version 2');
      const answer = sds.answerTo('2')!;
      assert.match(answer.error_detail?.message ?? '', /envoy\.config\.cluster\.v3\.Cluster/);
      assert.equal(answer.version_info, '1');
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
      assert.equal(readFileSync(join(dir, 'bundle.pem'), 'utf8'), a.certPem);
      sds.push('3', [identity(b), trust(b)]);
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3');
      assert.equal(sds.answerTo('3')!.error_detail ?? undefined, undefined);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), b.certPem);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });
});
