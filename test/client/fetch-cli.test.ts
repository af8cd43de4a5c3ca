// `mesh-sds fetch` without --out-dir, against a real in-process server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runFetch, type FetchCliOptions } from '../../src/cli/fetch.js';
import { NODE, OTHER_TD, SPIFFE_ID, startTestServer, type TestServer } from './helpers.js';

async function capture(opts: FetchCliOptions, env: Record<string, string | undefined> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runFetch(opts, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s), env });
  return { code, stdout, stderr };
}

describe('mesh-sds fetch (summary), auth none', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer('none');
  });
  after(async () => {
    await srv?.close();
  });

  it('prints the SPIFFE ID, serial, validity, issuer and trust domains, and never the private key', async () => {
    const r = await capture({ server: srv.running.address, node: NODE, name: ['default', 'ALL', `spiffe://${OTHER_TD}`], timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`spiffe id: +${SPIFFE_ID.replace(/[/.]/g, '\\$&')}`));
    assert.match(r.stdout, /serial: +[0-9A-F]{2,}/);
    assert.match(r.stdout, /not after: +\d{4}-\d\d-\d\dT/);
    assert.match(r.stdout, /issuer: +O=Kuma, OU=Mesh, CN=default\.default\.mesh\.local/);
    assert.match(r.stdout, new RegExp(`trust domains: default\\.default\\.mesh\\.local, ${OTHER_TD.replace(/\./g, '\\.')}`));
    assert.match(r.stdout, /CN=Other Root/);
    assert.doesNotMatch(r.stdout + r.stderr, /PRIVATE KEY/);
  });

  it('--json prints the same summary as JSON, without key material', async () => {
    const r = await capture({ server: srv.running.address, node: NODE, name: ['default', 'ROOTCA'], json: true, timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { secrets: Array<Record<string, unknown>> };
    const [id, root] = doc.secrets;
    assert.equal(id!['type'], 'tls_certificate');
    assert.equal(id!['spiffeId'], SPIFFE_ID);
    assert.ok(Date.parse(String(id!['notAfter'])) - Date.now() <= 3600_000 + 60_000, 'the 1 h expiry from the MeshIdentity');
    assert.equal(root!['type'], 'trusted_ca');
    assert.equal((root!['cas'] as unknown[]).length, 1);
    assert.doesNotMatch(r.stdout, /PRIVATE KEY|keyPem/);
  });

  it('an unknown secret name fails with INVALID_ARGUMENT naming it (exit 1)', async () => {
    const r = await capture({ server: srv.running.address, node: NODE, name: ['no-such-shape!'], timeoutMs: 5000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /INVALID_ARGUMENT/);
    assert.match(r.stderr, /no-such-shape!/);
  });

  it('a proxy that no Dataplane backs gets no identity: times out (exit 1) naming the missing secret', async () => {
    const r = await capture({ server: srv.running.address, node: 'default.ghost', name: ['default'], timeoutMs: 800 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /DEADLINE_EXCEEDED: no answer for "default" within 800 ms/);
  });

  it('rejects bad usage with exit code 2', async () => {
    assert.equal((await capture({ server: srv.running.address, node: 'noperiod', name: [] })).code, 2);
    assert.equal((await capture({ server: srv.running.address, node: NODE, name: [], watch: true })).code, 2);
  });
});

describe('mesh-sds fetch (summary), auth token', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer('token');
  });
  after(async () => {
    await srv?.close();
  });

  it('a bad token exits non-zero with UNAUTHENTICATED, and the token is not printed', async () => {
    const good = await srv.running.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    // Right shape, wrong signature: the last character of the signature changed.
    const forged = good.slice(0, -2) + (good.endsWith('AA') ? 'BB' : 'AA');
    for (const token of [forged, 'not-a-jwt-at-all-0123456789']) {
      const r = await capture({ server: srv.running.address, node: NODE, name: ['default'], token, timeoutMs: 5000 });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /UNAUTHENTICATED/);
      assert.ok(!r.stderr.includes(token) && !r.stdout.includes(token), 'token printed');
    }
  });

  it('a token for another node is refused', async () => {
    const other = await srv.running.tokens!.generate({ mesh: 'default', name: 'api', validForMs: 3600_000 });
    const r = await capture({ server: srv.running.address, node: NODE, name: ['default'], token: other, timeoutMs: 5000 });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /UNAUTHENTICATED/);
  });

  it('takes the token from --token-file or MESH_SDS_TOKEN', async () => {
    const token = await srv.running.tokens!.generate({ mesh: 'default', name: 'web.shop', validForMs: 3600_000 });
    const file = join(srv.root, 'token');
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const fromFile = await capture({ server: srv.running.address, node: NODE, name: ['default'], tokenFile: file, timeoutMs: 10_000 });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.ok(fromFile.stdout.includes(SPIFFE_ID));
    const fromEnv = await capture({ server: srv.running.address, node: NODE, name: ['default'], timeoutMs: 10_000 }, { MESH_SDS_TOKEN: token });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.ok(fromEnv.stdout.includes(SPIFFE_ID));
    assert.ok(!(fromFile.stdout + fromEnv.stdout + fromFile.stderr + fromEnv.stderr).includes(token));
  });
});
