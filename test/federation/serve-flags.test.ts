// `mesh-sds serve` as a process: the bundle endpoint from MESH_SDS_BUNDLE_ENDPOINT, the refresh
// hint flag, and half an https_web configuration refused before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, meshSds } from '../cli/run.js';
import { freePort, startProc } from '../e2e/procs.js';
import { makeWorld } from '../conformance/world.js';
import { decodeSpiffeBundle } from '../../src/federation/bundle.js';
import { run } from './helpers.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateCertificateAuthority } from '../../src/pki/generate-ca.js';

test('serve takes the bundle endpoint from MESH_SDS_BUNDLE_ENDPOINT and --bundle-refresh-hint; an https_web cert without its key is refused', async () => {
  const world = makeWorld();
  const [port, epPort] = [await freePort(), await freePort()];
  const proc = startProc('mesh-sds', process.execPath, [BIN, 'serve', '--auth', 'none', '--listen', `127.0.0.1:${port}`, '--resources', world.resourcesDir, '--state-dir', world.stateDir, '--bundle-refresh-hint', '1m'], {
    env: { ...process.env, MESH_SDS_BUNDLE_ENDPOINT: String(epPort) },
  });
  try {
    await proc.waitForLine(/"msg":"ready"/, 30_000);
    assert.match(proc.stdout(), new RegExp(`"bundleEndpoint":"https://127\\.0\\.0\\.1:${epPort}"`));
    // -k only to read the document here; TLS verification is proven in endpoint-serve.test.ts.
    const r = await run('curl', ['-sS', '-k', '--max-time', '20', `https://127.0.0.1:${epPort}/default.default.mesh.local`]);
    assert.equal(r.code, 0, r.stderr);
    const b = decodeSpiffeBundle(r.stdout);
    assert.equal(b.refreshHintSeconds, 60);
    assert.equal(b.cas.length, 1);
  } finally {
    await proc.stop();
  }
  const half = await meshSds(['serve', '--auth', 'none', '--listen', '127.0.0.1:0', '--resources', world.resourcesDir, '--state-dir', world.stateDir, '--bundle-endpoint', '127.0.0.1:0', '--bundle-endpoint-tls-cert', '/tmp/x.pem']);
  assert.notEqual(half.code, 0);
  assert.match(half.stderr, /--bundle-endpoint-tls-cert and --bundle-endpoint-tls-key must be given together/);
  world.cleanup();
});

test('serve --federation-ca-file naming a file that holds no PEM CA certificate (a DER file, a key) is refused at start, naming the flag and what is in it, not its content', async () => {
  const world = makeWorld();
  try {
    const ca = generateCertificateAuthority('web-ca.test');
    const files = {
      der: Buffer.from(ca.certPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64'),
      key: ca.keyPem,
      // A good CA followed by a block that does not parse: half the file silently dropped.
      damaged: `${ca.certPem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`,
    };
    for (const [name, content] of Object.entries(files)) {
      const path = join(world.dir, `${name}.pem`);
      writeFileSync(path, content);
      const r = await meshSds(['serve', '--auth', 'none', '--listen', '127.0.0.1:0', '--resources', world.resourcesDir, '--state-dir', world.stateDir, '--federation-ca-file', path], { timeoutMs: 15_000 });
      assert.notEqual(r.code, 0, `${name}: started: ${r.stderr}`);
      assert.match(r.stderr, /--federation-ca-file/, name);
      assert.match(r.stderr, /no PEM certificate|not a CERTIFICATE|not an X.509 certificate/, name);
      assert.doesNotMatch(r.stderr, /BEGIN|MII/, name);
    }
  } finally {
    world.cleanup();
  }
});
