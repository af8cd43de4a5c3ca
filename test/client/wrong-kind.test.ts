// --watch and a push whose secret is of the wrong kind: NACKed, the files written before stay, the
// agent keeps running, and the message names the secret, its kind, and no flag the user never gave.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { identitySecret as identity, trustSecret as trust } from './svids.js';
import { waitFor } from './fake-sds.js';
import { withWatchingAgent } from './scripted-setup.js';

describe('a push of the wrong kind while watching', () => {
  it('is NACKed; the last good files stay; the next good push is written', { timeout: 30_000 }, async () => {
    await withWatchingAgent('mesh-sds-wrong-kind-', async ({ sds, dir, logs, a, b }) => {
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
    });
  });
});
