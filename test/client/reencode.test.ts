// The files hold PEM re-encoded from the parsed certificates and key: text the server put around
// or between the blocks is not written.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spiffeValidatorSecret, tlsCertificateSecret } from '../../src/xds/secrets.js';
import type { TestCa } from '../helpers/openssl.js';
import { fetchOnceInto } from './scripted-setup.js';
import { ScriptedSds } from './fake-sds.js';
import { makeSvid } from './svids.js';

describe('PEM written from what was parsed', () => {
  let root: string;
  let a: TestCa;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'mesh-sds-reencode-'));
    a = makeSvid('A');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('text outside the PEM blocks of the chain, key and bundle is dropped', { timeout: 30_000 }, async () => {
    const sds = await new ScriptedSds().start();
    const junk = 'ssl_certificate /etc/passwd; # not PEM\n';
    sds.onStream = () =>
      setImmediate(() =>
        sds.push('1', [
          tlsCertificateSecret('default', `${junk}${a.certPem}${junk}`, `${junk}${a.keyPem}${junk}`, 's'),
          spiffeValidatorSecret('ALL', [{ trustDomain: 'a.example', pem: `${junk}${a.certPem}trailing words\n` }]),
        ]),
      );
    const dir = join(root, 'out');
    await fetchOnceInto(sds, dir);
    assert.equal(readFileSync(join(dir, 'cert.pem'), 'utf8'), a.certPem);
    assert.equal(readFileSync(join(dir, 'key.pem'), 'utf8'), a.keyPem);
    assert.equal(readFileSync(join(dir, 'bundle.pem'), 'utf8'), a.certPem);
  });
});
