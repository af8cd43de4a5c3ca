// A real server following a real remote endpoint: the federated trust domain appears in every
// validation context (SPIFFE validator and flat), is pushed on a CA roll like any trust change,
// loses to a user MeshTrust of the same trust domain (reported), and `get`/`inspect` show it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { canonicalCaPems } from '../../src/federation/follower.js';
import { fetchOnce, openSecretStream, type DecodedSecret } from '../../src/client/sds-client.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml } from '../helpers/yaml.js';
import { meshSds as runCli } from '../cli/run.js';
import { bundleOf, endpointId, fakeEndpoint, newCa, type FakeEndpoint } from './remote.js';
import type { CertificateAuthority } from '../../src/pki/types.js';

const TD = 'zone-b.test';

function cftdYaml(url: string, bootstrapPem: string): string {
  return stringify({
    apiVersion: 'spire.spiffe.io/v1alpha1',
    kind: 'ClusterFederatedTrustDomain',
    metadata: { name: 'zone-b' },
    spec: { trustDomain: TD, bundleEndpointURL: url, bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: endpointId(TD) }, trustDomainBundle: bootstrapPem },
  });
}

interface World {
  root: string;
  resources: string;
  state: string;
  caB: CertificateAuthority;
  ep: FakeEndpoint;
  server: RunningServer;
  close(): Promise<void>;
}

async function world(opts: { flatTrust?: boolean; extra?: string } = {}): Promise<World> {
  const root = mkdtempSync(join(tmpdir(), 'mesh-sds-fed-'));
  const resources = join(root, 'resources');
  const state = join(root, 'state');
  mkdirSync(resources);
  mkdirSync(state);
  const caB = newCa(TD);
  const ep = await fakeEndpoint(caB, endpointId(TD), bundleOf([caB], 1, 1));
  writeFileSync(join(resources, 'identity.yaml'), meshIdentityYaml('identity'));
  writeFileSync(join(resources, 'dp.yaml'), dataplaneYaml('web', { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' }));
  writeFileSync(join(resources, 'dp2.yaml'), dataplaneYaml('api', { 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'api' }, 'other'));
  writeFileSync(join(resources, 'federation.yaml'), cftdYaml(ep.url, caB.trustPem));
  if (opts.extra) writeFileSync(join(resources, 'extra.yaml'), opts.extra);
  const server = await startServer({
    resourcesDir: resources,
    stateDir: state,
    listen: '127.0.0.1:0',
    auth: 'none',
    zone: 'default',
    flatTrust: opts.flatTrust,
    logger: pino({ level: 'silent' }),
    federation: { minRefreshMs: 100, backoffBaseMs: 50 },
  });
  await server.ready;
  return {
    root,
    resources,
    state,
    caB,
    ep,
    server,
    close: async () => {
      await server.close();
      await ep.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

const spiffeDomains = (s: DecodedSecret | undefined) => (s?.kind === 'spiffe' ? s.trustDomains : []);

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a federated trust domain is in the SPIFFE validator of every mesh, and a CA roll is pushed to open streams', async () => {
  const w = await world();
  try {
    await until('first fetch', () => w.server.federation.current.domains.get('zone-b')?.source === 'endpoint');
    for (const node of ['default.web', 'other.api']) {
      const { secrets } = await fetchOnce({ server: w.server.address, node, names: ['ALL'] });
      const b = spiffeDomains(secrets[0]).find((d) => d.name === TD);
      assert.ok(b, `${node} trusts ${TD}`);
      assert.equal(b.pem, w.caB.trustPem);
    }
    const seen: string[][] = [];
    const stream = openSecretStream({ server: w.server.address, node: 'default.web', names: ['ALL'] }, (secrets) => {
      seen.push(spiffeDomains(secrets.find((s) => s.name === 'ALL')).filter((d) => d.name === TD).map((d) => d.pem));
    });
    try {
      await until('initial push', () => seen.length > 0);
      const caB2 = newCa(TD);
      w.ep.serve(bundleOf([w.caB, caB2], 2, 1));
      // Served in canonical order (by fingerprint), whatever order the bundle lists them in.
      const both = canonicalCaPems([w.caB.trustPem, caB2.trustPem]).join('');
      const pushed = await until('the new CA pushed', () => seen.find((p) => p[0] === both));
      assert.ok(pushed);
    } finally {
      stream.close();
    }
  } finally {
    await w.close();
  }
});

test('with --flat-trust the federated CAs are in the flat trusted_ca and its SAN matchers', async () => {
  const w = await world({ flatTrust: true });
  try {
    const { secrets } = await fetchOnce({ server: w.server.address, node: 'default.web', names: ['ALL'] });
    const s = secrets[0]!;
    assert.equal(s.kind, 'trusted_ca');
    if (s.kind !== 'trusted_ca') return;
    assert.ok(s.pem.includes(w.caB.trustPem));
    assert.ok(s.sanPrefixes?.includes(`spiffe://${TD}/`), JSON.stringify(s.sanPrefixes));
  } finally {
    await w.close();
  }
});

test('a user MeshTrust of the same trust domain wins in its mesh and the conflict is reported; get and inspect show the origin', async () => {
  const userCa = newCa(TD);
  const w = await world({ extra: meshTrustYaml('pinned-zone-b', TD, [userCa.trustPem]) });
  try {
    await until('first fetch', () => w.server.federation.current.domains.get('zone-b')?.source === 'endpoint');
    const view = await until('federated view', () => w.server.view()?.federation.find((f) => f.source === 'endpoint'));
    assert.deepEqual(view.overriddenIn, { default: ['pinned-zone-b'] });
    const mine = await fetchOnce({ server: w.server.address, node: 'default.web', names: [`spiffe://${TD}`] });
    assert.equal(mine.secrets[0]?.kind === 'trusted_ca' && mine.secrets[0].pem, userCa.trustPem, 'the user MeshTrust wins in mesh default');
    const other = await fetchOnce({ server: w.server.address, node: 'other.api', names: [`spiffe://${TD}`] });
    assert.equal(other.secrets[0]?.kind === 'trusted_ca' && other.secrets[0].pem, w.caB.trustPem, 'the federated bundle in mesh other');

    const flags = ['--resources', w.resources, '--state-dir', w.state];
    const get = await runCli(['get', 'clusterfederatedtrustdomain', 'zone-b', '-o', 'yaml', ...flags]);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, /bundleSource: endpoint/);
    assert.match(get.stdout, /sequence: 1/);
    assert.match(get.stdout, /kri: kri_cftd____zone-b_/);
    assert.match(get.stdout, /type: MeshTrustCreated\n\s+status: "True"\n\s+reason: OverriddenByMeshTrust/);
    const inspect = await runCli(['inspect', '--dataplane', 'other.api', ...flags]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, new RegExp(`${TD.replace(/\./g, '\\.')} \\(1 CA from federated-zone-b-test\\)`));
    assert.match(inspect.stdout, new RegExp(`federated by ClusterFederatedTrustDomain zone-b from ${w.ep.url.replace(/\./g, '\\.')}: fetched \\S+, sequence 1`));
  } finally {
    await w.close();
  }
});

test('a ClusterFederatedTrustDomain of the server\'s own trust domain (two zones both at --zone default) is trusted in no mesh, and get says why', async () => {
  const own = 'default.default.mesh.local';
  const peer = newCa(own);
  const w = await world({
    extra: stringify({
      apiVersion: 'spire.spiffe.io/v1alpha1',
      kind: 'ClusterFederatedTrustDomain',
      metadata: { name: 'zone-twin' },
      spec: { trustDomain: own, bundleEndpointURL: 'https://127.0.0.1:1/twin', bundleEndpointProfile: { type: 'https_spiffe', endpointSPIFFEID: endpointId(own) }, trustDomainBundle: peer.trustPem },
    }),
  });
  try {
    await until('first fetch', () => w.server.federation.current.domains.get('zone-b')?.source === 'endpoint');
    for (const node of ['default.web', 'other.api']) {
      const { secrets } = await fetchOnce({ server: w.server.address, node, names: ['ALL'] });
      const domains = spiffeDomains(secrets[0]);
      assert.ok(domains.some((d) => d.name === TD), `${node} still trusts ${TD}`);
      assert.ok(!domains.some((d) => d.pem.includes(peer.trustPem)), `${node} trusts the peer's CA: ${domains.filter((d) => d.pem.includes(peer.trustPem)).map((d) => d.name).join()}`);
    }
    const get = await runCli(['get', 'clusterfederatedtrustdomain', 'zone-twin', '-o', 'yaml', '--resources', w.resources, '--state-dir', w.state]);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, /type: Ready\n\s+status: "False"\n\s+reason: LocalTrustDomain/);
    assert.match(get.stdout, /type: MeshTrustCreated\n\s+status: "False"\n\s+reason: LocalTrustDomain\n\s+message: "?default\.default\.mesh\.local is the trust domain of MeshIdentity default\/identity of this server/);
  } finally {
    await w.close();
  }
});
