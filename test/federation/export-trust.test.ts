// Static exchange: `export-trust --format spiffe-bundle` on one zone, the document given to a
// second zone as a MeshTrust `SpiffeBundle` CA source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSpiffeBundle } from '../../src/federation/bundle.js';
import { resourceYaml } from '../helpers/yaml.js';
import { DEFAULT_TD, makeWorld, PARTNER_TD, PAYMENTS_TD, startWorldServer, waitFor } from '../conformance/world.js';
import { meshSds } from '../cli/run.js';

test('export-trust --format spiffe-bundle writes the bundle the endpoint serves; a second zone trusts it through a SpiffeBundle MeshTrust', async () => {
  const a = makeWorld();
  const b = makeWorld();
  const serverA = await startWorldServer(a, { bundleEndpoint: '127.0.0.1:0' });
  let serverB: Awaited<ReturnType<typeof startWorldServer>> | undefined;
  try {
    const flags = ['--mesh', 'default', '--resources', a.resourcesDir, '--state-dir', a.stateDir];
    const exported = await meshSds(['export-trust', ...flags, '--format', 'spiffe-bundle', '--trust-domain', DEFAULT_TD]);
    assert.equal(exported.code, 0, exported.stderr);
    const doc = decodeSpiffeBundle(exported.stdout);
    const served = decodeSpiffeBundle(serverA.bundleEndpoint!.document(DEFAULT_TD)!.body);
    assert.deepEqual(doc.caPems, served.caPems);
    assert.equal(doc.sequence, served.sequence, 'the same spiffe_sequence as the endpoint');
    assert.doesNotMatch(exported.stdout, /PRIVATE KEY|"d"\s*:/);

    // A trust domain the mesh trusts but does not issue from: its CAs, no sequence.
    const partner = await meshSds(['export-trust', ...flags, '--format', 'spiffe-bundle', '--trust-domain', PARTNER_TD]);
    assert.equal(partner.code, 0, partner.stderr);
    const p = decodeSpiffeBundle(partner.stdout);
    assert.deepEqual(p.caPems, [a.cas.partnerA.certPem, a.cas.partnerB.certPem]);
    assert.equal(p.sequence, undefined);

    // Several trust domains cannot go into one SPIFFE bundle.
    const many = await meshSds(['export-trust', ...flags, '--format', 'spiffe-bundle']);
    assert.equal(many.code, 1);
    assert.match(many.stderr, new RegExp(`trusts 4 trust domains \\(alpha\\.example, ${DEFAULT_TD.replace(/\./g, '\\.')}, partner\\.example, ${PAYMENTS_TD.replace(/\./g, '\\.')}\\); a SPIFFE bundle is for one: choose it with --trust-domain`));
    const pem = await meshSds(['export-trust', ...flags]);
    assert.equal(pem.code, 0);
    assert.match(pem.stdout, /^# trust domain: alpha\.example\n-----BEGIN CERTIFICATE-----/);

    // Zone B (--zone zone-b: its identity's trust domain is default.zone-b.mesh.local) trusts A's through the document.
    b.write('zone-a.yaml', resourceYaml('MeshTrust', 'zone-a', { spec: { trustDomain: DEFAULT_TD, caBundles: [{ type: 'SpiffeBundle', spiffeBundle: { value: exported.stdout } }] } }));
    serverB = await startWorldServer(b, { zone: 'zone-b' });
    const bundle = await waitFor('zone B to trust zone A', () => serverB!.publisher.bundle('default')?.domains.find((d) => d.trustDomain === DEFAULT_TD), 10_000);
    assert.equal(bundle.pem, doc.caPems.join(''));
    assert.deepEqual(bundle.cas.map((c) => c.sources), [['zone-a']]);
    assert.ok(serverB.publisher.bundle('default')!.domains.some((d) => d.trustDomain === 'default.zone-b.mesh.local'));
  } finally {
    await serverB?.close();
    await serverA.close();
    a.cleanup();
    b.cleanup();
  }
});
