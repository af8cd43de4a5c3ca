// A name the server never answers is named: once while watching, and in a one-shot timeout error.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { runFetch } from '../../src/cli/fetch.js';
import { tlsCertificateSecret } from '../../src/xds/secrets.js';
import { closeScripted, openScripted, type ScriptedSetup } from './scripted-setup.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

describe('a name the server does not answer', () => {
  let root: string;
  let sds: ScriptedSds;
  let setup: ScriptedSetup | undefined;
  before(async () => {
    // Only the identity is ever sent; the trust bundle asked for never comes.
    setup = await openScripted('mesh-sds-unanswered-', ({ a, sds }) => setImmediate(() => sds.push('1', [tlsCertificateSecret('default', a.certPem, a.keyPem, 's')])));
    ({ root, sds } = setup);
  });
  after(() => closeScripted(setup));

  it('--watch says once, after a few seconds, which name is still unanswered and which flag asked for it', { timeout: 30_000 }, async () => {
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: join(root, 'watch'), watch: true, trustName: 'spiffe://b.example', log: (_l, m) => logs.push(m) });
    try {
      await waitFor(() => logs.some((m) => /^no answer for/.test(m)), 'the note', 15_000);
      const notes = logs.filter((m) => /^no answer for/.test(m));
      assert.equal(notes.length, 1);
      assert.match(notes[0]!, /^no answer for "spiffe:\/\/b\.example" \(--trust-name\) after 5 s; still waiting/);
      assert.doesNotMatch(notes[0]!, /"default"/);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
    }
  });

  it('one-shot names it in the timeout error', { timeout: 30_000 }, async () => {
    let stderr = '';
    const code = await runFetch({ server: sds.address, node: 'default.web', name: [], outDir: join(root, 'once'), timeoutMs: 1000 }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /no complete write within 1000 ms: no answer for "ALL" \(the default trust bundle\)/);
  });
});
