import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';
import { makeCa } from '../helpers/openssl.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';

const seeds = join(import.meta.dirname, '..', 'fixtures', 'seeds');

test('validate accepts every seed example and the quickstart', async () => {
  const files = (await readdir(seeds)).filter((f) => f.endsWith('.yaml')).map((f) => join(seeds, f));
  const quick = (await readdir('examples/quickstart')).map((f) => join('examples/quickstart', f));
  // Several seeds define a MeshIdentity named "identity": validated together they would be
  // duplicates, so each of those goes in a run of its own.
  const named = files.filter((f) => /meshidentity-(basic|custom|user-provided)/.test(f));
  const runs = [files.filter((f) => !named.includes(f)), ...named.map((f) => [f]), quick];
  const results = await Promise.all(runs.map((r) => meshSds(['validate', ...r])));
  for (const [i, r] of results.entries()) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, runs[i]!.length);
    assert.match(r.stdout, /resources valid/);
  }
});

test('validate rejects the SPEC §1 mistakes with file, document, field path and reason, and exits 1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-validate-'));
  try {
    const ca = makeCa('v');
    const trust = (td: string, pems: string[]) => meshTrustYaml('t', td, pems);
    const identity = (provider: unknown) => meshIdentityYaml('i', { provider });
    const file = (path: string) => ({ type: 'File', file: { path } });
    const cases: [string, string, string][] = [
      ['empty.yaml', trust('a.example', []), 'spec.caBundles: must not be empty'],
      ['long.yaml', trust('a'.repeat(254), [ca.certPem]), 'spec.trustDomain: must not be longer than 253 characters'],
      ['notpem.yaml', trust('a.example', ['hello']), 'spec.caBundles[0].pem.value: provided certificate has incorrect format'],
      ['provider.yaml', identity({ type: 'Vault' }), 'spec.provider.type: must be one of Bundled, Spire'],
      [
        'relative.yaml',
        identity({ type: 'Bundled', bundled: { ca: { certificate: file('ca.crt'), privateKey: file('/ca.key') } } }),
        'spec.provider.bundled.ca.certificate.file.path: must be absolute',
      ],
    ];
    for (const [name, text] of cases) await writeFile(join(dir, name), text);
    const r = await meshSds(['validate', ...cases.map(([n]) => join(dir, n))]);
    assert.equal(r.code, 1);
    for (const [name, , message] of cases) {
      assert.ok(r.stderr.includes(`${join(dir, name)} (document 1): ${message}`), `expected "${message}" for ${name} in:\n${r.stderr}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('inspect explains which of three overlapping identities a dataplane gets, and why', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-inspect-'));
  try {
    const mi = (name: string, matchLabels: Record<string, string>, trustDomain: string) => meshIdentityYaml(name, { matchLabels, trustDomain });
    await writeFile(
      join(dir, 'ids.yaml'),
      yamlDocs(mi('all', {}, 'all.example'), mi('zz-web-prod', { app: 'web', env: 'prod' }, 'webprod.example'), mi('aa-web-team', { app: 'web', team: 'a' }, 'webteam.example')),
    );
    await writeFile(
      join(dir, 'dp.yaml'),
      dataplaneYaml('web-1', { app: 'web', env: 'prod', team: 'a', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' }),
    );
    const r = await meshSds(['inspect', '--dataplane', 'default.web-1', '--resources', dir, '--state-dir', join(dir, '.state'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    // Two identities tie on two labels: the lexicographically smaller name wins.
    assert.equal(out.identity.name, 'aa-web-team');
    assert.equal(out.spiffeId, 'spiffe://webteam.example/ns/shop/sa/web');
    assert.deepEqual(out.candidates.map((c: { name: string }) => c.name), ['aa-web-team', 'zz-web-prod', 'all']);
    assert.match(out.candidates[1].reason, /lost to aa-web-team \(name order\)/);
    assert.match(out.candidates[2].reason, /lost to aa-web-team \(fewer labels\)/);
    assert.deepEqual(out.trustDomains.map((d: { trustDomain: string }) => d.trustDomain), ['all.example', 'webprod.example', 'webteam.example']);
    const text = await meshSds(['inspect', '--dataplane', 'default.web-1', '--resources', dir, '--state-dir', join(dir, '.state')]);
    assert.match(text.stdout, /MeshIdentity: aa-web-team \(kri_mid_default_default__aa-web-team_\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('get shows identities with status conditions and the auto-created MeshTrusts', async () => {
  const r = await meshSds(['get', 'meshidentity', 'identity', '-o', 'yaml', '--resources', 'examples/quickstart', '--state-dir', join(tmpdir(), `mesh-sds-get-${process.pid}`)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /type: Provider\n\s+status: "True"/);
  assert.match(r.stdout, /type: MeshTrustCreated/);
  assert.match(r.stdout, /type: Ready/);
  const trusts = await meshSds(['get', 'meshtrusts', '--resources', 'examples/quickstart', '--state-dir', join(tmpdir(), `mesh-sds-get-${process.pid}`)]);
  assert.match(trusts.stdout, /identity\s+default\.default\.mesh\.local\s+1\s+kri_mid_default_default_kuma-system_identity_/);
  assert.match(trusts.stdout, /partner-trust\s+partner\.example/);
  await rm(join(tmpdir(), `mesh-sds-get-${process.pid}`), { recursive: true, force: true });
});

test('token generate prints the token alone on the last line, and it verifies against the same state', async () => {
  const state = await mkdtemp(join(tmpdir(), 'mesh-sds-token-'));
  try {
    const r = await meshSds(['token', 'generate', '--mesh', 'default', '--name', 'web-1', '--workload', 'web', '--valid-for', '1h', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines.at(-1)!, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const { TokenAuthority } = await import('../../src/server/tokens.js');
    const { FileStateStore } = await import('../../src/store/file-state.js');
    const claims = await (await TokenAuthority.open(await FileStateStore.open(state))).verify(lines.at(-1)!);
    assert.equal(claims.mesh, 'default');
    assert.equal(claims.name, 'web-1');
    assert.equal(claims.workload, 'web');
  } finally {
    await rm(state, { recursive: true, force: true });
  }
});

test('export-trust prints every trust domain of a mesh as PEM, and one domain on request', async () => {
  const state = join(tmpdir(), `mesh-sds-export-${process.pid}`);
  try {
    const all = await meshSds(['export-trust', '--mesh', 'default', '--resources', 'examples/quickstart', '--state-dir', state]);
    assert.equal(all.code, 0, all.stderr);
    const domains = [...all.stdout.matchAll(/^# trust domain: (.+)$/gm)].map((m) => m[1]);
    assert.deepEqual(domains, ['default.default.mesh.local', 'partner.example', 'payments.mesh.local']);
    assert.equal((all.stdout.match(/BEGIN CERTIFICATE/g) ?? []).length, 3);
    const one = await meshSds(['export-trust', '--mesh', 'default', '--trust-domain', 'partner.example', '--resources', 'examples/quickstart', '--state-dir', state]);
    assert.equal((one.stdout.match(/BEGIN CERTIFICATE/g) ?? []).length, 1);
    const none = await meshSds(['export-trust', '--mesh', 'nope', '--resources', 'examples/quickstart', '--state-dir', state]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no trust bundle for mesh "nope"/);
  } finally {
    await rm(state, { recursive: true, force: true });
  }
});

test('token revoke makes a generated token fail verification', async () => {
  const state = await mkdtemp(join(tmpdir(), 'mesh-sds-revoke-'));
  try {
    const gen = await meshSds(['token', 'generate', '--mesh', 'default', '--name', 'web-1', '--state-dir', state]);
    const token = gen.stdout.trim().split('\n').at(-1)!;
    const rev = await meshSds(['token', 'revoke', '--state-dir', state], { input: token });
    assert.equal(rev.code, 0, rev.stderr);
    assert.ok(!rev.stdout.includes(token), 'the token is never printed back');
    const { TokenAuthority } = await import('../../src/server/tokens.js');
    const { FileStateStore } = await import('../../src/store/file-state.js');
    await assert.rejects((await TokenAuthority.open(await FileStateStore.open(state))).verify(token), /token revoked/);
  } finally {
    await rm(state, { recursive: true, force: true });
  }
});

test('get never prints a Secret\'s data or an inline CA private key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-get-redact-'));
  try {
    const ca = makeCa('inline-ca');
    await writeFile(join(dir, 'id.yaml'), meshIdentityYaml('inline', { namespace: 'kuma-system', ca }));
    await writeFile(join(dir, 'secret.yaml'), `type: Secret\nname: s\nmesh: default\ndata: ${Buffer.from(ca.keyPem).toString('base64')}\n`);
    const id = await meshSds(['get', 'meshidentity', 'inline', '-o', 'yaml', '--resources', dir, '--state-dir', join(dir, '.state')]);
    assert.equal(id.code, 0, id.stderr);
    assert.doesNotMatch(id.stdout, /PRIVATE KEY/);
    assert.match(id.stdout, /value: <redacted>/);
    assert.match(id.stdout, /BEGIN CERTIFICATE/, 'the certificate itself is not secret');
    const secret = await meshSds(['get', 'secret', 's', '-o', 'json', '--resources', dir, '--state-dir', join(dir, '.state')]);
    assert.equal(JSON.parse(secret.stdout).data, '<redacted>');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
