// What the --on-update command prints reaches the log without the private key's body, printed as
// lines or run together.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { runFetch } from '../../src/cli/fetch.js';
import type { TestCa } from '../helpers/openssl.js';
import { closeScripted, identityAndTrust, openScripted, type ScriptedSetup } from './scripted-setup.js';
import { ScriptedSds } from './fake-sds.js';

describe('--on-update output and the private key', () => {
  let root: string;
  let a: TestCa;
  let sds: ScriptedSds;
  let setup: ScriptedSetup | undefined;
  before(async () => {
    setup = await openScripted('mesh-sds-hook-redact-', ({ a, sds }) => setImmediate(() => sds.push('1', identityAndTrust(a))));
    ({ root, a, sds } = setup);
  });
  after(() => closeScripted(setup));

  it('the key body lines a command prints are redacted from the log', { timeout: 30_000 }, async () => {
    let stderr = '';
    const hook = 'grep -v -- ----- "$MESH_SDS_OUT_DIR/key.pem"; echo; grep -v -- ----- "$MESH_SDS_OUT_DIR/key.pem" | tr -d "\\n"; echo; echo done';
    const code = await runFetch({ server: sds.address, node: 'default.web', name: [], outDir: join(root, 'out'), onUpdate: hook }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /on-update command succeeded; output: .*<redacted key>.*done/s);
    const body = a.keyPem.split('\n').filter((l) => l.length >= 8 && !l.startsWith('-----'));
    assert.ok(body.length >= 2);
    for (const line of body) assert.ok(!stderr.includes(line), `a key line reached the log: ${stderr}`);
    assert.ok(!stderr.includes(body.join('')));
  });

  it('the key\'s secret number printed as hex (openssl pkey -text, a hex dump of its DER) is redacted from the log, the public parts are not', { timeout: 30_000 }, async () => {
    let stderr = '';
    const key = '"$MESH_SDS_OUT_DIR/key.pem"';
    const hook = `openssl pkey -in ${key} -noout -text; openssl pkey -in ${key} -outform DER | od -An -tx1 -v; openssl pkey -in ${key} -outform DER | od -An -tx1 -v | tr -d ' \\n'; echo; echo "word dump:"; openssl pkey -in ${key} -outform DER | od -x; echo done`;
    const code = await runFetch({ server: sds.address, node: 'default.web', name: [], outDir: join(root, 'out2'), onUpdate: hook }, { stdout: () => undefined, stderr: (s) => (stderr += s) });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /priv: <redacted key>/);
    assert.match(stderr, /pub:/, 'the public key is still shown');
    assert.match(stderr, /done/);
    const d = Buffer.from((createPrivateKey(a.keyPem).export({ format: 'jwk' }) as { d: string }).d, 'base64url').toString('hex');
    const flat = stderr.replace(/[:\s]/g, '').toLowerCase();
    // od -x prints 16-bit words with their bytes swapped, after an offset column: read back in byte order.
    const words = stderr
      .split('\n')
      .map((l) => l.trim().split(/\s+/).filter((t) => /^[0-9a-f]{4}$/.test(t)))
      .filter((ws) => ws.length >= 4)
      .map((ws) => ws.map((w) => w.slice(2) + w.slice(0, 2)).join(''))
      .join('');
    for (const text of [flat, words]) {
      for (let i = 0; i + 12 <= d.length; i += 2) assert.ok(!text.includes(d.slice(i, i + 12)), `6 bytes of the private scalar (at ${i / 2}) reached the log:\n${stderr}`);
    }
  });
});
