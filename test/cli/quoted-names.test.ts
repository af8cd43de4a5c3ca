// Names given on the command line reach the terminal quoted: no control character of one acts
// (`\x1b]0;pwned\x07` retitles a terminal, `\x1b[31m` recolours it). An impossible node id is an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshSds } from './run.js';
import { quoted } from '../../src/api/quote.js';

async function quickstartCopy(t: { after: (fn: () => Promise<void>) => void }): Promise<{ resources: string; state: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-quoted-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp('examples/quickstart', join(dir, 'resources'), { recursive: true });
  return { resources: join(dir, 'resources'), state: join(dir, 'state') };
}

// ESC, BEL, DEL and the C1 controls (U+009B is CSI on 8-bit terminals).
// eslint-disable-next-line no-control-regex -- finding them is the point
const ACTING = /[\u0000-\u001f\u007f-\u009f]/;

test('quoted() escapes what JSON.stringify leaves raw (DEL, C1, bidi controls, line separators) and clips long text', () => {
  assert.equal(quoted('backend-1'), '"backend-1"');
  assert.equal(quoted('x\x1b]0;pwned\x07'), '"x\\u001b]0;pwned\\u0007"');
  assert.equal(quoted('a\x7fb\x9bc\u202ed\u2028e'), '"a\\u007fb\\u009bc\\u202ed\\u2028e"');
  assert.equal(quoted('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(quoted('x'.repeat(300)), `"${'x'.repeat(200)}"... (100 more characters)`);
  assert.equal(quoted('abcdef', 3), '"abc"... (3 more characters)');
});

test('delete, get … not found and inspect quote a name holding control characters; inspect of an impossible node id exits 1 saying why', async (t) => {
  const { resources, state } = await quickstartCopy(t);
  const flags = ['--resources', resources, '--state-dir', state];
  const evil = 'x\x1b]0;pwned\x07\x1b[31mRED\x7f\u009b';
  const escaped = 'x\\u001b]0;pwned\\u0007\\u001b[31mRED\\u007f\\u009b';

  const del = await meshSds(['delete', 'dataplane', evil, ...flags]);
  assert.equal(del.code, 1, del.stdout);
  assert.ok(!ACTING.test(del.stderr.replace(/\n/g, '')), `delete: ${JSON.stringify(del.stderr)}`);
  assert.ok(del.stderr.includes(`Dataplane "${escaped}"`), `delete: ${del.stderr}`);

  const delMesh = await meshSds(['delete', 'dataplane', 'backend-1', '--mesh', evil, ...flags]);
  assert.equal(delMesh.code, 1, delMesh.stdout);
  assert.ok(!ACTING.test(delMesh.stderr.replace(/\n/g, '')), `delete --mesh: ${JSON.stringify(delMesh.stderr)}`);

  const get = await meshSds(['get', 'dataplane', evil, ...flags]);
  assert.equal(get.code, 1, get.stdout);
  assert.ok(!ACTING.test(get.stderr.replace(/\n/g, '')), `get: ${JSON.stringify(get.stderr)}`);
  assert.ok(get.stderr.includes(`mesh-sds: Dataplane "${escaped}" not found`), `get: ${get.stderr}`);

  const kind = await meshSds(['get', `dp\x1b[2J`, ...flags]);
  assert.equal(kind.code, 1);
  assert.ok(kind.stderr.includes('unknown kind "dp\\u001b[2J"'), kind.stderr);

  const ins = await meshSds(['inspect', '--dataplane', `default.${evil}`, ...flags]);
  assert.equal(ins.code, 1, ins.stdout);
  assert.equal(ins.stdout, '');
  assert.ok(!ACTING.test(ins.stderr.replace(/\n/g, '')), `inspect: ${JSON.stringify(ins.stderr)}`);
  assert.ok(ins.stderr.includes(`--dataplane "default.${escaped}": dataplane name "${escaped}" must be printable ASCII without spaces: no proxy can connect as this node id`), ins.stderr);
  for (const [node, why] of [['backend-1', 'must be "<mesh>.<dataplane-name>"'], ['Default.backend-1', 'mesh "Default"'], ['default.a#b', "must not contain '#' or '/'"]] as const) {
    const r = await meshSds(['inspect', '--dataplane', node, ...flags]);
    assert.equal(r.code, 1, `${node}: ${r.stdout}`);
    assert.ok(r.stderr.includes(why), `${node}: ${r.stderr}`);
  }
  // A possible node id without a Dataplane (a gateway) is still explained, exit 0.
  const gw = await meshSds(['inspect', '--dataplane', 'default.edge-gw', ...flags]);
  assert.equal(gw.code, 0, gw.stderr);
  assert.match(gw.stdout, /^Dataplane default\.edge-gw \(not registered\)/);
});

// Lines of a table or a report: their line breaks are theirs.
// eslint-disable-next-line no-control-regex -- finding them is the point
const ACTING_BUT_LINE_BREAKS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

/** A resource folder holding the ClusterFederatedTrustDomain "partner" (partner.example), and a state folder beside it. */
async function partnerFederation(t: { after: (fn: () => Promise<void>) => void }): Promise<{ resources: string; state: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-fed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const resources = join(dir, 'resources');
  await mkdir(resources);
  await writeFile(
    join(resources, 'fed.yaml'),
    'apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterFederatedTrustDomain\nmetadata:\n  name: partner\nspec:\n  trustDomain: partner.example\n  bundleEndpointURL: https://partner.example/bundle\n  bundleEndpointProfile:\n    type: https_web\n',
  );
  return { resources, state: join(dir, 'state') };
}

test('get (table) and inspect print a federation error that quotes the remote endpoint\'s bytes (V8 quotes the text JSON.parse refused) with its control characters escaped', async (t) => {
  const { resources, state } = await partnerFederation(t);
  // What the follower stores when an endpoint answers `\x1b]0;pwned\x07…` instead of a bundle.
  let parseError = '';
  try {
    JSON.parse('\x1b]0;pwned\x07\x1b[2J<html>');
  } catch (e) {
    parseError = (e as Error).message;
  }
  const at = new Date().toISOString();
  const { FileStateStore } = await import('../../src/store/file-state.js');
  await (await FileStateStore.open(state)).put(
    'federation/partner.example',
    JSON.stringify({ trustDomain: 'partner.example', resource: 'partner', endpointURL: 'https://partner.example/bundle', lastAttemptAt: at, lastError: { reason: 'malformed', message: `https://partner.example/bundle: not a SPIFFE bundle: not valid JSON: ${parseError}`, at } }),
  );
  const get = await meshSds(['get', 'clusterfederatedtrustdomain', '--resources', resources, '--state-dir', state]);
  assert.equal(get.code, 0, get.stderr);
  assert.match(get.stdout, /not valid JSON: Unexpected token '\\u001b'/);
  assert.doesNotMatch(get.stdout, ACTING_BUT_LINE_BREAKS, 'the endpoint\'s escape sequences reach the terminal raw');

  const { formatInspection } = await import('../../src/cli/inspect.js');
  const text = formatInspection({
    dataplane: 'default.web',
    found: true,
    labels: {},
    candidates: [],
    trustDomains: [{ trustDomain: 'partner.example', cas: 1, sources: ['federated-partner'], federation: { resource: 'partner', endpointURL: 'https://partner.example/bundle', bundle: 'bootstrap', lastError: `malformed: not valid JSON: ${parseError} (at ${at})` } }],
  });
  assert.match(text, /last refresh failed: malformed: not valid JSON: Unexpected token '\\u001b'/);
  assert.doesNotMatch(text, ACTING_BUT_LINE_BREAKS, 'inspect prints them raw');
});

test('get warns about a damaged federation record with the record\'s text escaped: a C1 CSI in a stored time does not reach the terminal', async (t) => {
  const { resources, state } = await partnerFederation(t);
  const { FileStateStore } = await import('../../src/store/file-state.js');
  // JSON.stringify, which quotes the damaged value in the warning, leaves U+009B (CSI) raw.
  await (await FileStateStore.open(state)).put(
    'federation/partner.example',
    JSON.stringify({ trustDomain: 'partner.example', resource: 'partner', endpointURL: 'https://partner.example/bundle', fetchedAt: '\u009b2J\u009b31m' }),
  );
  const get = await meshSds(['get', 'clusterfederatedtrustdomain', '--resources', resources, '--state-dir', state]);
  assert.equal(get.code, 0, get.stderr);
  assert.match(get.stderr, /stored record federation\/partner\.example damaged \(fetchedAt "\\u009b2J\\u009b31m" is not a time/);
  assert.doesNotMatch(get.stderr, ACTING_BUT_LINE_BREAKS, 'the record\'s text reaches the terminal raw');
});

test('validate names an unknown field whose name holds control characters with them escaped (the file\'s text is not printed raw), at the top level and nested', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-field-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'dp.yaml');
  await writeFile(file, 'type: Dataplane\nmesh: default\nname: a\n"\\e]0;pwned\\a": x\n---\ntype: MeshTrust\nmesh: default\nname: t\nspec:\n  "\\e[2Jy": 1\n');
  const r = await meshSds(['validate', file]);
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, ACTING_BUT_LINE_BREAKS, 'a field name acts on the terminal');
  assert.match(r.stderr, /\["\\u001b\]0;pwned\\u0007"\]: unknown field/);
  assert.match(r.stderr, /spec\["\\u001b\[2Jy"\]: unknown field/);
});

test('what the CLI writes to stderr never carries a control character that acts: a resource file named with an escape sequence is reported escaped by get and validate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-sds-file-name-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const resources = join(dir, 'resources');
  await mkdir(resources);
  const file = join(resources, 'x\x1b]0;pwned\x07.yaml');
  await writeFile(file, 'type: Dataplane\nmesh: default\nname: BAD\n');
  const get = await meshSds(['get', 'dataplane', '--resources', resources, '--state-dir', join(dir, 'state')]);
  assert.match(get.stderr, /x\\u001b\]0;pwned\\u0007\.yaml \(document 1\): name: must be a valid DNS-1123 name/);
  assert.doesNotMatch(get.stderr, ACTING_BUT_LINE_BREAKS);
  const validate = await meshSds(['validate', file]);
  assert.equal(validate.code, 1);
  assert.doesNotMatch(validate.stderr, ACTING_BUT_LINE_BREAKS);
});
