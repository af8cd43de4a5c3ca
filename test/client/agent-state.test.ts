// The agent (startAgent) against a scripted server: what it writes after failed writes, stops and
// server-ended streams.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/client/agent.js';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import { makeCa, type TestCa } from '../helpers/openssl.js';
import { ScriptedSds, waitFor } from './fake-sds.js';

describe('agent state against a scripted server', () => {
  let root: string;
  let a: TestCa;
  let b: TestCa;
  let t1: TestCa;
  let t2: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-agent-state-'));
    [a, b, t1, t2] = ['A', 'B', 'T1', 'T2'].map((n) => makeCa(n, { trustDomain: `${n.toLowerCase()}.example` })) as [TestCa, TestCa, TestCa, TestCa];
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const identity = (ca: TestCa) => tlsCertificateSecret('default', ca.certPem, ca.keyPem, `serial-${ca.certPem.length}`);
  const trust = (ca: TestCa) => spiffeValidatorSecret('ALL', [{ trustDomain: 'x.example', pem: ca.certPem }]);

  it('an identity written by the retry of a NACKed write is kept when a later push carries only the trust bundle', { timeout: 40_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const dir = join(root, 'rollback');
    const logs: string[] = [];
    const agent = startAgent({ server: sds.address, node: 'default.web', outDir: dir, watch: true, log: (_l, m) => logs.push(m) });
    try {
      await waitFor(() => sds.streams.length === 1, 'a stream');
      sds.push('1', [identity(a), trust(t1)]);
      await agent.firstWrite;
      // The folder is briefly a file: identity B cannot be written and is NACKed, then the retry writes it.
      rmSync(dir, { recursive: true });
      writeFileSync(dir, '');
      sds.push('2', [identity(b)]);
      await waitFor(() => sds.answerTo('2')?.error_detail != null, 'the NACK of version 2');
      rmSync(dir);
      await waitFor(() => existsSync(join(dir, 'cert.pem')) && readFileSync(join(dir, 'cert.pem'), 'utf8') === b.certPem, 'identity B written by the retry', 15_000);
      sds.push('3', [trust(t2)]);
      await waitFor(() => sds.answerTo('3') !== undefined, 'the answer to version 3');
      assert.equal(readFileSync(join(dir, 'bundle.pem'), 'utf8'), t2.certPem);
      assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), b.certPem, 'cert.pem went back to identity A');
      assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), b.keyPem);
    } finally {
      agent.close();
      await agent.done.catch(() => undefined);
      sds.close();
    }
  });
});
