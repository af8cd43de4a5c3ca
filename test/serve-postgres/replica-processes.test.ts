// Replicas as separate `mesh-sds serve` processes on one Postgres schema (SPEC §6): they agree on one
// CA per identity even when started at the same instant, a change applied with the CLI reaches every
// replica's open streams, and a replica whose connections are all killed keeps its streams.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSecretStream } from '../../src/client/sds-client.js';
import { generateStateKeyFile } from '../../src/store/state-key.js';
import { BIN, meshSds } from '../cli/run.js';
import { poll, startProc, type Proc } from '../e2e/procs.js';
import { makeCa, openssl } from '../helpers/openssl.js';
import { PG_URL, adminQuery, dropSchema, makeCaPem, testSchema } from '../store-postgres/helpers.js';
import { dataplaneYaml, meshIdentityYaml, meshTrustYaml, yamlDocs } from '../helpers/yaml.js';
import { watchTrust, type TrustWatch } from './streams.js';

const schema = testSchema();
const dir = mkdtempSync(join(tmpdir(), 'mesh-sds-replicas-'));
const procs: Proc[] = [];
const watches: TrustWatch[] = [];
after(async () => {
  for (const w of watches) w.close();
  await Promise.all(procs.map((p) => p.stop()));
  await dropSchema(schema);
  rmSync(dir, { recursive: true, force: true });
});

interface Replica {
  name: string;
  proc: Proc;
  address: string;
}

const storeUrl = (app: string) => `${PG_URL}?schema=${schema}&application_name=${app}`;

/** One state key shared by every replica (the Postgres store refuses unsealed private keys). */
let keyFile: Promise<string> | undefined;
const stateKey = () => (keyFile ??= generateStateKeyFile(join(dir, 'state.key')).then(() => join(dir, 'state.key')));

async function startReplica(name: string): Promise<Replica> {
  const proc = startProc(name, process.execPath, [
    BIN, 'serve', '--store', storeUrl(name), '--state-dir', join(dir, name), '--state-key-file', await stateKey(), '--listen', '127.0.0.1:0', '--auth', 'none', '--log-level', 'info',
  ]);
  procs.push(proc);
  const line = JSON.parse(await proc.waitForLine(/"msg":"mesh-sds serving"/, 60_000)) as { listen: string };
  return { name, proc, address: line.listen };
}

function watch(r: Replica, node: string): TrustWatch {
  const w = watchTrust(r.address, node);
  watches.push(w);
  return w;
}

/** The identity secret of `node` from replica `r`: its chain PEM. */
async function leafOf(r: Replica, node: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`${r.name}: no identity for ${node}`));
    }, 30_000);
    const s = openSecretStream({ server: r.address, node, names: ['default'] }, (_x, _v, all) => {
      const id = all.get('default');
      if (id?.kind !== 'tls_certificate') return;
      clearTimeout(timer);
      s.close();
      resolve(id.certChainPem);
    });
  });
}

function verifies(caPem: string, chainPem: string): boolean {
  const ca = join(dir, `ca-${Math.random()}.pem`);
  const chain = join(dir, `chain-${Math.random()}.pem`);
  writeFileSync(ca, caPem);
  writeFileSync(chain, chainPem);
  try {
    return /: OK/.test(openssl(['verify', '-CAfile', ca, '-untrusted', chain, chain]));
  } catch {
    return false;
  } finally {
    rmSync(ca, { force: true });
    rmSync(chain, { force: true });
  }
}

async function apply(text: string): Promise<void> {
  const r = await meshSds(['apply', '-f', '-', '--store', storeUrl('cli')], { input: text });
  assert.equal(r.code, 0, r.stderr);
}

let replicas: Replica[] = [];
/** The identity's trust domain, as served. */
let TD = '';
/** A Dataplane the autogenerating identity can name (its default SPIFFE path needs namespace and service account). */
const dp = (name: string) => dataplaneYaml(name, { app: 'web', 'k8s.kuma.io/namespace': 'shop', 'k8s.kuma.io/service-account': 'web' });

test('three serve processes started at the same instant on an empty schema agree on one CA, and every proxy\'s leaf chains to it', async () => {
  replicas = await Promise.all(['replica-a', 'replica-b', 'replica-c'].map(startReplica));
  const streams = replicas.map((r, i) => watch(r, `default.web-${i}`));
  // The identity arrives once all three run, so all three race to create its CA.
  await apply(yamlDocs(meshIdentityYaml('identity'), ...replicas.map((_, i) => dp(`web-${i}`))));
  for (const s of streams) await s.until((d) => d.length > 0, 30_000, 'the trust bundle');
  TD = streams[0]!.domains()[0]!;
  const bundles = streams.map((s) => [...s.pems().values()].join('\n'));
  assert.equal(new Set(bundles).size, 1, 'every replica serves the same trust bundle: one CA');
  const ca = bundles[0]!;
  assert.equal((ca.match(/BEGIN CERTIFICATE/g) ?? []).length, 1, 'exactly one CA for the identity');
  const caRows = await adminQuery(`SELECT key FROM "${schema}".state WHERE key LIKE 'ca/%'`);
  assert.equal(caRows.rowCount, 1);
  for (const [i, r] of replicas.entries()) {
    const chain = await leafOf(r, `default.web-${i}`);
    assert.ok(verifies(ca, chain), `${r.name}'s leaf chains to the one CA (openssl verify)`);
  }
});

test('a MeshTrust applied with `mesh-sds apply` reaches the open streams of every replica within 2 s', async () => {
  assert.equal(replicas.length, 3);
  const streams = replicas.map((r, i) => watch(r, `default.web-${i}`));
  for (const s of streams) await s.until((d) => d.length > 0, 30_000, 'the trust bundle');
  await apply(meshTrustYaml('partner', 'partner.example', [makeCaPem('partner')]));
  const applied = Date.now();
  await Promise.all(streams.map((s) => s.until((d) => d.includes('partner.example'), 2000, 'the applied MeshTrust')));
  assert.ok(Date.now() - applied <= 2000);
});

test('pg_terminate_backend of every connection of a replica with 100 streams open: no stream ends, later changes still arrive', async () => {
  const [a] = replicas;
  assert.ok(a);
  const streams = Array.from({ length: 100 }, (_, i) => watch(a, `default.web-${i % 3}`));
  for (const s of streams) await s.until((d) => d.length > 0, 30_000, 'the trust bundle');
  const killed = await adminQuery<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'replica-a%') k`,
  );
  assert.ok(killed.rows[0]!.n >= 1, 'the replica had connections to kill');
  const gone = await poll('the replica to reconnect its change feed', 15_000, async () => {
    const r = await adminQuery(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'replica-a-listen'`);
    return r.rowCount ? true : undefined;
  });
  assert.ok(gone);
  await apply(meshTrustYaml('after-kill', 'after-kill.example', [makeCaPem('after-kill')]));
  await Promise.all(streams.map((s) => s.until((d) => d.includes('after-kill.example'), 10_000, 'the change after the kill')));
  for (const s of streams) assert.equal(s.broken(), undefined, 'no stream ended');
  for (const s of streams) s.close();
});

test('a CA roll applied once reaches the proxies of every replica without any further change: new leaves chain to the new CA, the old CA stays trusted', async () => {
  const streams = replicas.map((r, i) => watch(r, `default.web-${i}`));
  for (const s of streams) await s.until((d) => d.includes(TD), 30_000, 'the identity trust domain');
  const oldCa = streams[0]!.pems().get(TD)!;
  const rolled = makeCa('rolled');
  await apply(yamlDocs(meshIdentityYaml('identity', { ca: rolled, insecureAllowSelfSigned: true }), ...replicas.map((_, i) => dp(`web-${i}`))));
  for (const s of streams) {
    await s.until(() => (s.pems().get(TD) ?? '').includes(rolled.certPem.trim().split('\n')[1]!), 10_000, 'the rolled CA in the bundle');
    assert.ok((s.pems().get(TD) ?? '').includes(oldCa.trim().split('\n')[1]!), 'the old CA is still trusted while its leaves live');
  }
  for (const [i, r] of replicas.entries()) {
    const chain = await leafOf(r, `default.web-${i}`);
    assert.ok(verifies(rolled.certPem, chain), `${r.name} issues from the rolled CA`);
  }
});
