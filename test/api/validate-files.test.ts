// `mesh-sds validate FILE…` output lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { validateFiles } from '../../src/api/validate-files.js';
import { meshIdentity, meshTrust, withField } from './helpers.js';
import { makeCa, makeExpiredCa } from '../helpers/openssl.js';
import { meshTrustYaml } from '../helpers/yaml.js';

test('validateFiles prints one line per error, or a count per valid file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.yaml');
  const bad = join(dir, 'bad.yaml');
  const missing = join(dir, 'missing.yaml');
  writeFileSync(good, [stringify(meshTrust()), stringify(meshIdentity())].join('---\n'));
  writeFileSync(
    bad,
    [stringify({ type: 'Dataplane', name: 'dp' }), stringify(withField(meshTrust(), 'spec.trustDomain', 'x'.repeat(300)))].join('---\n'),
  );

  assert.deepEqual(await validateFiles([good]), { ok: true, lines: [`${good}: 2 resources valid`] });
  assert.deepEqual(await validateFiles([good, bad, missing]), {
    ok: false,
    lines: [
      `${good}: 2 resources valid`,
      `${bad} (document 2): spec.trustDomain: must not be longer than 253 characters`,
      `${missing} (document 1): cannot read file: no such file or directory (ENOENT)`,
    ],
  });
});

test('validateFiles flags the same resource defined in two files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  writeFileSync(a, stringify(meshTrust()));
  writeFileSync(b, stringify(meshTrust()));
  assert.deepEqual(await validateFiles([a, b]), {
    ok: false,
    lines: [`${a}: 1 resources valid`, `${b} (document 1): duplicate MeshTrust "trust" in mesh "default" (also defined in ${a})`],
  });
});

test('an expired CA in a MeshTrust is a warning naming where it is, not an error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-expired-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'old.yaml');
  writeFileSync(file, meshTrustYaml('old', 'old.example', [(await makeExpiredCa('old')).certPem]));
  const r = await validateFiles([file]);
  assert.equal(r.ok, true);
  assert.deepEqual(r.lines, [
    `${file}: 1 resources valid`,
    `warning: ${file} (document 1): spec.caBundles[0].pem.value: certificate 1 expired at 2021-01-01T00:00:00.000Z`,
  ]);
});

test('a ClusterFederatedTrustDomain whose bootstrap bundle holds no CA valid now is a warning saying it cannot authenticate the endpoint; one current CA beside it is fine', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-expired-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const expired = (await makeExpiredCa('old-peer')).certPem;
  const current = makeCa('current-peer').certPem;
  const cftd = (bundle: string) =>
    stringify({
      type: 'ClusterFederatedTrustDomain',
      name: 'peer',
      spec: { trustDomain: 'peer.example', bundleEndpointURL: 'https://peer.example/bundle', bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: 'spiffe://peer.example/bundle' }, trustDomainBundle: bundle },
    });
  const stale = join(dir, 'stale.yaml');
  writeFileSync(stale, cftd(expired));
  const r = await validateFiles([stale]);
  assert.equal(r.ok, true, r.lines.join('\n'));
  assert.deepEqual(r.lines, [
    `${stale}: 1 resources valid`,
    `warning: ${stale} (document 1): spec.trustDomainBundle: no CA of the bootstrap bundle is valid now (valid 2020-01-01T00:00:00.000Z to 2021-01-01T00:00:00.000Z): it cannot authenticate the bundle endpoint; put a current bundle of the trust domain here`,
  ]);
  const rolled = join(dir, 'rolled.yaml');
  writeFileSync(rolled, cftd(expired + current));
  assert.deepEqual(await validateFiles([rolled]), { ok: true, lines: [`${rolled}: 1 resources valid`] });
});

test('a ClusterFederatedTrustDomain naming the trust domain of a MeshIdentity among the files is a warning: the server would trust the peer for nothing but refuse it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-own-td-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cftd = (td: string) =>
    stringify({
      type: 'ClusterFederatedTrustDomain',
      name: 'zone-b',
      spec: { trustDomain: td, bundleEndpointURL: 'https://zone-b.example/bundle', bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: `spiffe://${td}/bundle` }, trustDomainBundle: makeCa('peer').certPem },
    });
  const identity = join(dir, 'identity.yaml');
  writeFileSync(identity, stringify(withField(meshIdentity(), 'spec.spiffeID', { trustDomain: 'prod.example.org' })));
  const fed = join(dir, 'fed.yaml');
  writeFileSync(fed, cftd('prod.example.org'));
  const r = await validateFiles([identity, fed]);
  assert.equal(r.ok, true, r.lines.join('\n'));
  assert.deepEqual(r.lines, [
    `${identity}: 1 resources valid`,
    `${fed}: 1 resources valid`,
    `warning: ${fed} (document 1): spec.trustDomain: prod.example.org is the trust domain of MeshIdentity default/identity (${identity}): the server issues from it and will not trust another zone's CAs for it; give one side a distinct trust domain`,
  ]);
  // The default template: the same trust domain when this server runs with --zone default.
  const defaultTd = join(dir, 'default-td.yaml');
  writeFileSync(defaultTd, stringify(meshIdentity()));
  const fed2 = join(dir, 'fed2.yaml');
  writeFileSync(fed2, cftd('default.default.mesh.local'));
  const r2 = await validateFiles([defaultTd, fed2]);
  assert.equal(r2.ok, true, r2.lines.join('\n'));
  assert.equal(
    r2.lines[2],
    `warning: ${fed2} (document 1): spec.trustDomain: default.default.mesh.local is the trust domain of MeshIdentity default/identity (${defaultTd}) when this server runs with --zone default: the server issues from it and will not trust another zone's CAs for it; give the zones distinct --zone names (or one side a distinct trust domain)`,
  );
  // Another trust domain: no warning.
  const fed3 = join(dir, 'fed3.yaml');
  writeFileSync(fed3, cftd('default.zone-b.mesh.local'));
  assert.deepEqual((await validateFiles([identity, fed3])).lines.filter((l) => l.startsWith('warning')), []);
  // A Spire identity's trust domain is the SPIRE server's, which may be federated: no warning.
  const spire = join(dir, 'spire.yaml');
  writeFileSync(spire, stringify(withField(withField(meshIdentity(), 'spec.spiffeID', { trustDomain: 'prod.example.org' }), 'spec.provider', { type: 'Spire', spire: {} })));
  assert.deepEqual((await validateFiles([spire, fed])).lines.filter((l) => l.startsWith('warning')), []);
});
