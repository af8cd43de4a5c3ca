// Series of /metrics that follow live state and must go with it: the streams of a mesh (a peer
// with --auth none names any mesh it likes) and the CA expiry of a MeshIdentity that was deleted.
// A real server, scraped over HTTP; streams opened over raw HTTP/2.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { webcrypto } from 'node:crypto';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import { x509 } from '../../src/pki/x509.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';
import { makeCaUntil } from '../helpers/openssl.js';
import { PATHS, SECRET_TYPE, discoveryRequest, deltaRequest, grpcFrame, rawCall, rawConnect } from '../helpers/raw-grpc.js';

const root = await mkdtemp(join(tmpdir(), 'mesh-sds-series-'));
after(() => rm(root, { recursive: true, force: true }));

async function quickstartServer(name: string): Promise<RunningServer> {
  const resourcesDir = join(root, name, 'resources');
  await cp('examples/quickstart', resourcesDir, { recursive: true });
  const s = await startServer({ resourcesDir, stateDir: join(root, name, 'state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', admin: '127.0.0.1:0', logger: createLogger('silent') });
  await s.ready;
  return s;
}

async function seriesOf(s: RunningServer, metric: string): Promise<string[]> {
  const text = await (await fetch(`${s.admin!.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`));
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('mesh_sds_streams: a mesh and API keep a series while they have open streams; the last one closing removes it (each made-up mesh used to leave a series at 0 until a restart)', async () => {
  const s = await quickstartServer('streams');
  const session = rawConnect(s.address);
  try {
    const open = (node: string, api: 'sotw' | 'delta') =>
      api === 'sotw'
        ? rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node, names: ['system_trust_bundle'] }))] })
        : rawCall(session, PATHS.DeltaSecrets, { body: [grpcFrame(deltaRequest({ typeUrl: SECRET_TYPE, node, names: ['system_trust_bundle'] }))] });
    const madeUp = Array.from({ length: 30 }, (_, i) => open(`m${i}-x.gw`, 'sotw'));
    const web = [open('default.web-1', 'sotw'), open('default.web-2', 'sotw'), open('default.web-1', 'delta')];
    await until('every stream registered', () => (s.registry.streams.size === 33 ? true : undefined));
    const streams = await seriesOf(s, 'mesh_sds_streams');
    assert.equal(streams.filter((l) => /mesh="m\d+-x"/.test(l)).length, 30);
    assert.ok(streams.includes('mesh_sds_streams{mesh="default",api="sotw"} 2'), streams.join('\n'));
    assert.ok(streams.includes('mesh_sds_streams{mesh="default",api="delta"} 1'), streams.join('\n'));

    for (const c of madeUp) c.stream.close();
    web[0]!.stream.close();
    web[2]!.stream.close();
    await until('the closed streams gone', () => (s.registry.streams.size === 1 ? true : undefined));
    assert.deepEqual(await seriesOf(s, 'mesh_sds_streams'), ['mesh_sds_streams{mesh="default",api="sotw"} 1'], 'only the mesh and API with an open stream have a series');
    web[1]!.stream.close();
    await until('the last stream gone', () => (s.registry.streams.size === 0 ? true : undefined));
    assert.deepEqual(await seriesOf(s, 'mesh_sds_streams'), []);
    // A mesh that comes back gets its series back.
    const again = open('m7-x.gw', 'sotw');
    await until('the stream registered', () => (s.registry.streams.size === 1 ? true : undefined));
    assert.deepEqual(await seriesOf(s, 'mesh_sds_streams'), ['mesh_sds_streams{mesh="m7-x",api="sotw"} 1']);
    again.stream.close();
  } finally {
    session.close();
    await s.close();
  }
});

test('a deleted MeshIdentity takes its CA expiry and SVID-issued series with it; the remaining identity keeps its own', async () => {
  const s = await quickstartServer('ca');
  const session = rawConnect(s.address);
  try {
    const issuedSeries = async () => (await seriesOf(s, 'mesh_sds_svid_issued_total')).map((l) => /identity="([^"]+)"/.exec(l)![1]).sort();
    const payments = rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node: 'default.payments-1.billing', names: ['default'] }))] });
    const web = rawCall(session, PATHS.StreamSecrets, { body: [grpcFrame(discoveryRequest({ typeUrl: SECRET_TYPE, node: 'default.backend-1.shop', names: ['default'] }))] });
    await until('both identities issued', async () => ((await issuedSeries()).length === 2 ? true : undefined), 10_000);
    payments.stream.close();
    web.stream.close();
    const caSeries = async () => (await seriesOf(s, 'mesh_sds_certificate_expiry_timestamp_seconds')).filter((l) => l.includes('kind="ca"')).map((l) => /name="([^"]+)"/.exec(l)![1]);
    assert.deepEqual((await caSeries()).sort(), ['kri_mid_default_default_kuma-system_identity_', 'kri_mid_default_default_kuma-system_payments_']);
    const file = join(root, 'ca', 'resources', 'identities.yaml');
    const identities = await readFile(file, 'utf8');
    // Keep the first document (identity), delete the second (payments).
    await writeFile(file, identities.split('\n---\n')[0]!);
    await until('payments gone from the view', () => ([...(s.authorities.current?.identities.values() ?? [])].some((st) => st.identity.name === 'payments') ? undefined : true));
    const left = await until('one CA series left', async () => {
      const names = await caSeries();
      return names.length === 1 ? names : undefined;
    });
    assert.deepEqual(left, ['kri_mid_default_default_kuma-system_identity_']);
    assert.deepEqual(await issuedSeries(), ['identity'], 'the deleted identity issues no more: its series goes too');
    // Back again: its series too.
    await writeFile(file, identities);
    await until('payments back in /metrics', async () => ((await caSeries()).length === 2 ? true : undefined));
  } finally {
    session.close();
    await s.close();
  }
});

/** A self-signed CA of `trustDomain` (URI SAN) that ends `validForMs` from now, in whole seconds, and that end. */
async function shortLivedCa(trustDomain: string, validForMs: number): Promise<{ certPem: string; keyPem: string; notAfter: Date }> {
  const notAfter = new Date(Math.floor((Date.now() + validForMs) / 1000) * 1000);
  return { ...(await makeCaUntil(trustDomain, notAfter, { trustDomain })), notAfter };
}

test('a CA that expires while nothing changes: its identity keeps its CA expiry series at the CA\'s end, and an expired MeshTrust CA is logged', async () => {
  const resourcesDir = join(root, 'expiring', 'resources');
  await mkdir(resourcesDir, { recursive: true });
  const own = await shortLivedCa('own.example', 4000);
  const partner = await shortLivedCa('partner.example', 4000);
  await writeFile(
    join(resourcesDir, 'all.yaml'),
    yamlDocs(
      meshIdentityYaml('expiring', { namespace: 'kuma-system', trustDomain: 'own.example', ca: own, insecureAllowSelfSigned: true }),
      meshTrustYaml('partner', 'partner.example', [partner.certPem], { namespace: 'kuma-system' }),
      dataplaneYaml('web-1', { app: 'web' }),
    ),
  );
  const lines: { msg: string; meshTrust?: string }[] = [];
  const destination = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(...c.toString().trim().split('\n').map((l) => JSON.parse(l))), cb()) });
  const s = await startServer({
    resourcesDir,
    stateDir: join(root, 'expiring', 'state'),
    listen: '127.0.0.1:0',
    auth: 'none',
    zone: 'default',
    admin: '127.0.0.1:0',
    logger: createLogger('info', { destination }),
    stateResyncMs: 500,
    trustExpiryCheckMs: 300,
  });
  try {
    await s.ready;
    const kri = 'kri_mid_default_default_kuma-system_expiring_';
    const series = `mesh_sds_certificate_expiry_timestamp_seconds{kind="ca",name="${kri}"} ${own.notAfter.getTime() / 1000}`;
    const first = await seriesOf(s, "mesh_sds_certificate_expiry_timestamp_seconds");
    assert.ok(first.includes(series), `${first.join("\n")}\n${lines.map((l) => JSON.stringify(l)).join("\n")}`);
    assert.equal(lines.filter((l) => l.msg === 'MeshTrust carries an expired CA').length, 0, 'nothing is expired yet');
    await until('the identity lost its CA', () => ([...(s.authorities.current?.identities.values() ?? [])].some((st) => st.kri === kri && !st.ca) ? true : undefined), 15_000);
    // Past the re-reads that refused the expired CA: the series stays, with the CA's end.
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok((await seriesOf(s, 'mesh_sds_certificate_expiry_timestamp_seconds')).includes(series), 'the series stays at the CA\'s end, in the past');
    const logged = await until('the expired partner CA logged', () => lines.find((l) => l.msg === 'MeshTrust carries an expired CA' && l.meshTrust === 'partner'), 5000);
    assert.ok(logged);
  } finally {
    await s.close();
  }
});

/** An intermediate of `trustDomain` that ended an hour ago, with its root (valid for years), and the intermediate's key. */
async function expiredIntermediate(trustDomain: string): Promise<{ certPem: string; keyPem: string; notAfter: Date }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const rootKeys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${trustDomain} root`,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 10 * 365 * 86_400_000),
    keys: rootKeys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const notAfter = new Date(Math.floor((Date.now() - 3_600_000) / 1000) * 1000);
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: `CN=${trustDomain} intermediate`,
    issuer: root.subject,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter,
    publicKey: keys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return { certPem: `${inter.toString('pem')}\n${root.toString('pem')}\n`, keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`, notAfter };
}

test('a server started with an expired intermediate reports that intermediate\'s end as its CA expiry, not its root\'s', async () => {
  const resourcesDir = join(root, 'expired-at-start', 'resources');
  await mkdir(resourcesDir, { recursive: true });
  const ca = await expiredIntermediate('late.example');
  await writeFile(join(resourcesDir, 'all.yaml'), yamlDocs(meshIdentityYaml('late', { namespace: 'kuma-system', trustDomain: 'late.example', ca }), dataplaneYaml('web-1', { app: 'web' })));
  const s = await startServer({ resourcesDir, stateDir: join(root, 'expired-at-start', 'state'), listen: '127.0.0.1:0', auth: 'none', zone: 'default', admin: '127.0.0.1:0', logger: createLogger('silent') });
  try {
    await s.ready.catch(() => undefined);
    const series = `mesh_sds_certificate_expiry_timestamp_seconds{kind="ca",name="kri_mid_default_default_kuma-system_late_"} ${ca.notAfter.getTime() / 1000}`;
    const all = await seriesOf(s, 'mesh_sds_certificate_expiry_timestamp_seconds');
    assert.ok(all.includes(series), all.join('\n'));
  } finally {
    await s.close();
  }
});
