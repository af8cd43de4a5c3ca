// A response whose type_url is not the Secret type (a Cluster, a Listener response from a server
// mixing up its streams) is not read as secrets: NACKed naming the type, the files written before stay.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { identitySecret as identity, trustSecret as trust } from './svids.js';
import { waitFor } from './fake-sds.js';
import { withWatchingAgent } from './scripted-setup.js';

const CLUSTER_TYPE_URL = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

describe('a response of another type than Secret', () => {
  it('is NACKed naming its type; the files written before stay; the next Secret response is written', { timeout: 30_000 }, async () => {
    await withWatchingAgent('mesh-sds-response-type-', async ({ sds, dir, a, b }) => {
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
    });
  });
});
