// SPEC §6 containment with the directory store: every invalid resource is reported (one log line
// naming file, field and reason; mesh_sds_store_errors; /readyz stays ready), its last good version
// is served, and later valid changes still reach open streams.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { RunningServer } from '../../src/server/serve.js';
import { createLogger } from '../../src/server/logger.js';
import type { DiscoveryResponse } from '../../src/xds/messages.js';
import { INVALID_FIXTURES, fixtureYaml } from '../helpers/invalid-resources.js';
import { SotwClient, makeClient, secretsOf, spiffeTrustDomains } from './envoy-client.js';
import { makeWorld, meshTrustYaml, startWorldServer, PARTNER_TD, type World } from './world.js';

let world: World;
let s: RunningServer;
let channel: grpc.Client;
const logLines: Record<string, unknown>[] = [];
const open: SotwClient[] = [];

before(async () => {
  world = makeWorld();
  // A fresh server starts with every invalid fixture already in its directory.
  for (const f of INVALID_FIXTURES) world.write(`bad-${(f.doc as { name: string }).name}.yaml`, fixtureYaml(f));
  // Valid, with the default templates (as in Kuma): `spiffeID: {}` means the defaults.
  world.write('empty-spiffe.yaml', 'type: MeshIdentity\nname: empty-spiffe\nmesh: default\nspec:\n  selector:\n    dataplane:\n      matchLabels: {app: nothing}\n  spiffeID: {}\n  provider: {type: Bundled, bundled: {insecureAllowSelfSigned: true, autogenerate: {enabled: true}}}\n');
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  s = await startWorldServer(world, { logger: createLogger('info', { destination }) });
  channel = makeClient(s.address);
});

after(async () => {
  for (const c of open) c.close();
  channel.close();
  await s.close();
  world.cleanup();
});

const storeErrors = async () => (await s.metrics.storeErrors.get()).values.find((v) => v.labels.source === 'directory')?.value;
const domainsOf = (r: DiscoveryResponse) => {
  const b = secretsOf(r).get('system_trust_bundle');
  return b ? spiffeTrustDomains(b).map((t) => t.name) : [];
};

test('a server started with every invalid fixture in its directory is ready, and reports each one once: log line, metric', async () => {
  const report = s.readiness.evaluate();
  assert.equal(report.ready, true, JSON.stringify(report.checks));
  assert.equal(await storeErrors(), INVALID_FIXTURES.length);
  for (const f of INVALID_FIXTURES) {
    const file = `bad-${(f.doc as { name: string }).name}.yaml`;
    const lines = logLines.filter((l) => typeof l.file === 'string' && l.file.endsWith(file));
    assert.equal(lines.length >= 1, true, `a log line for ${file}`);
    const [field, ...reason] = f.error.split(': ');
    assert.equal(lines[0]!.field, field, file);
    assert.equal(lines[0]!.reason, reason.join(': '), file);
  }
  const empty = [...s.authorities.current!.identities.values()].find((st) => st.identity.name === 'empty-spiffe')!;
  assert.equal(empty.ready, true, 'spiffeID {} gets the default templates');
});

test('a bad edit keeps the last good version, and later valid changes still reach an open stream', async () => {
  const c = new SotwClient(s.address, { node: 'default.web', client: channel });
  open.push(c);
  c.request(['system_trust_bundle']);
  await c.ackUntil('initial bundle', (r) => domainsOf(r).includes(PARTNER_TD));
  // Break a served file: its MeshTrust keeps being served.
  world.write('partner-a.yaml', meshTrustYaml('partner-a', 'x'.repeat(254), [world.cas.partnerA.certPem]));
  const late = 'late.example';
  writeFileSync(join(world.resourcesDir, 'late.yaml'), meshTrustYaml('late', late, [world.cas.anyDomain.certPem]));
  const r = await c.ackUntil('the later valid MeshTrust', (x) => domainsOf(x).includes(late));
  assert.ok(domainsOf(r).includes(PARTNER_TD), 'the broken file still serves its last good MeshTrust');
  assert.equal(await storeErrors(), INVALID_FIXTURES.length + 1);
  assert.equal(s.readiness.evaluate().ready, true);
});
