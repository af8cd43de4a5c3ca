// Bad rows are contained (SPEC §6): a row written with SQL by another tool goes through the same
// validation as `validate`; a rejected row is reported and its last good version served.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { RESOURCE_KINDS, type ResourceSnapshot } from '../../src/api/types.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { adminQuery, dataplaneYaml, PG_URL, recordingLogger, waitForSnapshot, withStores } from './helpers.js';
import { rejectedFixtures } from './rejected-fixtures.js';
import { meshIdentity, meshTrust } from '../api/helpers.js';
import { INVALID_FIXTURES, storedShape } from '../helpers/invalid-resources.js';

const MT = { kind: 'MeshTrust', name: 'trust', key: 'MeshTrust/default//trust' };
const MI = { kind: 'MeshIdentity', name: 'identity', key: 'MeshIdentity/default//identity' };

/** `path: message` of a snapshot's errors about one row, without the `row KEY: ` prefix the store adds. */
function rowProblems(snap: ResourceSnapshot, key: string): string[] {
  return snap.errors
    .filter((e) => e.file.includes(` row ${key}`))
    .map((e) => `${e.path}: ${e.message.replace(`row ${key}: `, '')}`);
}

test('every document the API tests reject, written into the table with SQL, is reported with validate\'s own problems and its last good version is served', async () => {
  const fixtures = rejectedFixtures();
  const { logger, lines } = recordingLogger();
  await withStores(1, async ([store], schema) => {
    assert.deepEqual(await store!.apply([stringify(meshTrust()), stringify(meshIdentity())].join('---\n'), 'good.yaml'), []);
    const good = await waitForSnapshot(store!, (s) => s.resources.has(MT.key) && s.resources.has(MI.key));
    let last = good.revision;
    for (const [i, f] of fixtures.entries()) {
      const o = f.obj as { type?: unknown; kind?: unknown };
      const row = o.type === 'MeshTrust' || o.kind === 'MeshTrust' ? MT : MI;
      // A doc naming another kind mesh-sds serves than its row's is refused as that, before its fields are looked at.
      const otherKind = typeof o.kind === 'string' && o.kind !== row.kind && (RESOURCE_KINDS as readonly string[]).includes(o.kind);
      const expected = otherKind ? [`kind: is "${o.kind as string}", but the row is stored as a ${row.kind}`] : f.expected;
      // Plain SQL, as another tool would write it: no NOTIFY by hand, the table's trigger tells the store.
      await adminQuery(`UPDATE "${schema}".resources SET doc = $1::jsonb WHERE kind = $2 AND name = $3`, [
        JSON.stringify(f.obj), row.kind, row.name,
      ]);
      const snap = await waitForSnapshot(store!, (s) => s.revision > last, 5000);
      last = snap.revision;
      assert.deepEqual(rowProblems(snap, row.key), expected, `fixture ${i}: ${JSON.stringify(f.obj)}`);
      assert.equal(snap.resources.get(row.key), good.resources.get(row.key), `fixture ${i}: the last good version is served`);
      assert.ok(
        lines.some((l) => l.startsWith('warn resource rejected') && l.includes(`"row":"${row.key}"`) && l.includes(JSON.stringify(expected[0]!.split(': ')[0]))),
        `fixture ${i}: a log line names the row and the field`,
      );
    }
    // Everything else keeps flowing.
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-later', 'web'), 'later.yaml'), []);
    const later = await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//dp-later'), 5000);
    assert.ok(later.resources.has(MT.key) && later.resources.has(MI.key));

    // A fresh replica starts with the bad rows present: it becomes ready, reports them and serves the rest.
    const fresh = await PostgresStore.open(PG_URL, { schema });
    try {
      await fresh.start();
      const snap = fresh.snapshot!;
      assert.ok(snap.resources.has('Dataplane/default//dp-later'));
      assert.ok(!snap.resources.has(MI.key), 'no good version of the bad row ever existed here');
      assert.ok(rowProblems(snap, MI.key).length > 0);
      assert.equal(fresh.health().ok, true, fresh.health().detail);
    } finally {
      await fresh.close();
    }
    // One change at a time, each awaited: read at once, not gathered for 100 ms like churn.
  }, { logger, busyDebounceMs: 20 });
});

test('a row larger than the limit is refused without being read (doc or source), naming its size; its last good version is served and the rest flows', async () => {
  await withStores(1, async ([store], schema) => {
    assert.deepEqual(await store!.apply(stringify(meshTrust()), 'good.yaml'), []);
    const good = await waitForSnapshot(store!, (s) => s.resources.has(MT.key));
    // Written with SQL by another tool: a MeshTrust whose CA list is padded past the limit.
    const huge = { ...meshTrust(), spec: { ...meshTrust().spec, padding: 'x'.repeat(70_000) } };
    await adminQuery(`UPDATE "${schema}".resources SET doc = $1::jsonb WHERE kind = 'MeshTrust' AND name = 'trust'`, [JSON.stringify(huge)]);
    const snap = await waitForSnapshot(store!, (s) => rowProblems(s, MT.key).length > 0, 5000);
    assert.deepEqual(rowProblems(snap, MT.key).map((p) => p.replace(/\d+ bytes, larger/, 'N bytes, larger')), [': doc is N bytes, larger than the limit of 65536 bytes (--max-file-size): not read']);
    assert.equal(snap.resources.get(MT.key), good.resources.get(MT.key), 'the last good version is served');
    // A row without a doc whose source text is over the limit: the same.
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-huge', $1)`, [`${dataplaneYaml('dp-huge', 'web')}# ${'y'.repeat(70_000)}\n`]);
    const after = await waitForSnapshot(store!, (s) => rowProblems(s, 'Dataplane/default//dp-huge').length > 0, 5000);
    assert.match(rowProblems(after, 'Dataplane/default//dp-huge')[0]!, /^: source is \d+ bytes, larger than the limit of 65536 bytes/);
    assert.ok(!after.resources.has('Dataplane/default//dp-huge'));
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-later', 'web'), 'later.yaml'), []);
    await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//dp-later'), 5000);
  }, { maxRowBytes: 65_536 });
});

test('a MeshIdentity row whose spiffeID is an empty object is read as validate reads it (defaults filled in), and later changes still arrive', async () => {
  await withStores(1, async ([store], schema) => {
    // The stored shape; spiffeID {} passed the old shape check and then broke the identity pipeline
    // (templates of undefined). Validated like a file, the defaults of `validate` apply.
    const doc = {
      kind: 'MeshIdentity', mesh: 'default', namespace: '', name: 'broken', labels: {},
      spec: {
        selector: { dataplane: { matchLabels: {} } },
        spiffeID: {},
        provider: { type: 'Bundled', bundled: { meshTrustCreation: 'Enabled', insecureAllowSelfSigned: true, autogenerate: { enabled: true }, certificateParameters: { expiry: '24h', expiryMs: 86_400_000 } } },
      },
    };
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ('MeshIdentity', 'default', '', 'broken', $1::jsonb)`, [
      JSON.stringify(doc),
    ]);
    const snap = await waitForSnapshot(store!, (s) => s.resources.has('MeshIdentity/default//broken'), 5000);
    const mi = snap.resources.get('MeshIdentity/default//broken');
    assert.ok(mi?.kind === 'MeshIdentity');
    assert.equal(typeof mi.spec.spiffeID.trustDomain, 'string');
    assert.equal(typeof mi.spec.spiffeID.path, 'string');
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'web'), 'dp.yaml'), []);
    await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//dp-1'), 5000);
  });
});

test('each shared invalid fixture, in the stored shape, written with SQL as a new row is reported with validate\'s first error and not served', async () => {
  await withStores(1, async ([store], schema) => {
    for (const f of INVALID_FIXTURES) {
      const doc = storedShape(f);
      await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ($1, 'default', '', $2, $3::jsonb)`, [
        doc.kind, doc.name, JSON.stringify(doc),
      ]);
    }
    const keys = INVALID_FIXTURES.map((f) => `${String(f.doc.type)}/default//${String(f.doc.name)}`);
    const snap = await waitForSnapshot(store!, (s) => keys.every((k) => rowProblems(s, k).length > 0), 5000);
    for (const [i, f] of INVALID_FIXTURES.entries()) {
      assert.equal(rowProblems(snap, keys[i]!)[0], f.error, f.what);
      assert.ok(!snap.resources.has(keys[i]!), f.what);
    }
    assert.deepEqual(await store!.apply(dataplaneYaml('dp-1', 'web'), 'dp.yaml'), []);
    await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//dp-1'), 5000);
  });
});

test('a row without a doc is read from its source text and validated the same way', async () => {
  await withStores(1, async ([store], schema) => {
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-src', $1)`, [
      dataplaneYaml('dp-src', 'web'),
    ]);
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('MeshTrust', 'default', '', 'trust', $1)`, [
      stringify({ ...meshTrust(), spec: { trustDomain: 'example.org', caBundles: [] } }),
    ]);
    const snap = await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//dp-src') && s.errors.length > 0, 5000);
    assert.deepEqual(rowProblems(snap, MT.key), ['spec.caBundles: must not be empty']);
  });
});

test('a row without a doc whose source names another resource (its namespace label) says which it holds; an unknown kind column is named, with the kind it likely meant; a doc that leaves out kind takes the row\'s', async () => {
  await withStores(1, async ([store], schema) => {
    const insert = (kind: string, namespace: string, name: string, column: 'source' | 'doc', value: string) =>
      adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, ${column}) VALUES ($1, 'default', $2, $3, $4)`, [kind, namespace, name, value]);
    await insert('Dataplane', '', 'dp-ns', 'source', `${dataplaneYaml('dp-ns', 'web').replace('labels:\n', 'labels:\n  k8s.kuma.io/namespace: shop\n')}`);
    await insert('MeshIdentities', '', 'identity', 'doc', JSON.stringify({ mesh: 'default', namespace: '', name: 'identity', labels: {}, spec: meshIdentity().spec }));
    await insert('Sidecar', '', 'odd', 'doc', '{}');
    const identity = meshIdentity() as { spec: unknown };
    await insert('MeshIdentity', '', 'kindless', 'doc', JSON.stringify({ mesh: 'default', namespace: '', name: 'kindless', labels: {}, spec: identity.spec }));
    const snap = await waitForSnapshot(store!, (s) => s.errors.length >= 3 && s.resources.has('MeshIdentity/default//kindless'), 5000);
    assert.deepEqual(rowProblems(snap, 'Dataplane/default//dp-ns'), [': holds Dataplane/default/shop/dp-ns but is stored as Dataplane/default//dp-ns']);
    assert.deepEqual(rowProblems(snap, 'MeshIdentities/default//identity'), [
      ': kind column "MeshIdentities" is not a kind mesh-sds serves (MeshTrust, MeshIdentity, Dataplane, Secret, ClusterFederatedTrustDomain); it is MeshIdentity, spelt exactly so (delete MeshIdentity removes this row when no MeshIdentity row has its name; else it removes that one): not read',
    ]);
    assert.match(rowProblems(snap, 'Sidecar/default//odd')[0] ?? '', /^: kind column "Sidecar" is not a kind mesh-sds serves \([^)]*\): not read$/);
    // delete of the kind it meant removes the misspelt row (no command could, otherwise).
    assert.equal(await store!.delete('MeshIdentity', 'default', '', 'identity', { force: true }), true);
    await waitForSnapshot(store!, (s) => rowProblems(s, 'MeshIdentities/default//identity').length === 0, 5000);
  });
});

test("a row whose doc is of another kind than its kind column says so, instead of that kind's field errors; the doc's own kind in Kubernetes form too", async () => {
  await withStores(1, async ([store], schema) => {
    const insert = (name: string, doc: unknown) =>
      adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ('Dataplane', 'default', '', $1, $2)`, [name, JSON.stringify(doc)]);
    const trust = meshTrust() as { spec: unknown };
    await insert('stored-trust', { kind: 'MeshTrust', mesh: 'default', namespace: '', name: 'stored-trust', labels: {}, spec: { trustDomain: '' } });
    await insert('k8s-trust', { apiVersion: 'kuma.io/v1alpha1', kind: 'MeshTrust', metadata: { name: 'k8s-trust', labels: { 'kuma.io/mesh': 'default' } }, spec: trust.spec });
    const snap = await waitForSnapshot(store!, (s) => rowProblems(s, 'Dataplane/default//stored-trust').length > 0 && rowProblems(s, 'Dataplane/default//k8s-trust').length > 0, 5000);
    assert.deepEqual(rowProblems(snap, 'Dataplane/default//stored-trust'), ['kind: is "MeshTrust", but the row is stored as a Dataplane']);
    assert.deepEqual(rowProblems(snap, 'Dataplane/default//k8s-trust'), ['kind: is "MeshTrust", but the row is stored as a Dataplane']);
  });
});

test('a misspelt kind row beside a served row of that name says that delete removes the served one; delete does so, and then removes the misspelt one', async () => {
  await withStores(1, async ([store], schema) => {
    assert.deepEqual(await store!.apply(dataplaneYaml('db', 'db'), 'db.yaml'), []);
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('dataplane', 'default', '', 'db', $1)`, [dataplaneYaml('db', 'db')]);
    const snap = await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//db') && rowProblems(s, 'dataplane/default//db').length === 1, 5000);
    assert.match(rowProblems(snap, 'dataplane/default//db')[0]!, /\(delete Dataplane removes this row when no Dataplane row has its name; else it removes that one\): not read$/);
    assert.equal(await store!.delete('Dataplane', 'default', '', 'db', { force: true }), true);
    await waitForSnapshot(store!, (s) => !s.resources.has('Dataplane/default//db') && rowProblems(s, 'dataplane/default//db').length === 1, 5000);
    assert.equal(await store!.delete('Dataplane', 'default', '', 'db', { force: true }), true);
    await waitForSnapshot(store!, (s) => s.errors.length === 0, 5000);
  });
});

test('a row without a doc whose source text expands past the row limit with YAML aliases is refused, not expanded', async () => {
  await withStores(1, async ([store], schema) => {
    const v = 'x'.repeat(20_000);
    const source = `${dataplaneYaml('dp-bomb', 'web')}note: &v "${v}"\nmore: [${Array.from({ length: 10 }, () => '*v').join(', ')}]\n`;
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, source) VALUES ('Dataplane', 'default', '', 'dp-bomb', $1)`, [source]);
    const snap = await waitForSnapshot(store!, (s) => rowProblems(s, 'Dataplane/default//dp-bomb').length > 0, 5000);
    assert.match(rowProblems(snap, 'Dataplane/default//dp-bomb')[0]!, /^: YAML aliases expand this file to more than 65536 bytes, the limit of a file \(--max-file-size\)/);
  }, { maxRowBytes: 65_536 });
});

test('apply refuses, writing nothing, a document stored larger than the row limit though its file is small (a YAML alias used 5 times)', async () => {
  await withStores(1, async ([store], schema) => {
    const v = 'x'.repeat(20_000);
    const text = `${dataplaneYaml('dp-small', 'web')}---
type: Dataplane
name: dp-alias
mesh: default
labels:
  a: &v "${v}"
  b: *v
  c: *v
  d: *v
  e: *v
`;
    assert.ok(Buffer.byteLength(text) < 65_536);
    const errors = await store!.apply(text, 'alias.yaml');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]!.document, 1);
    // Refused as it is read: the aliases are never expanded into a row (or into memory).
    assert.match(errors[0]!.message, /^YAML aliases expand this file to more than 65536 bytes, the limit of a file \(--max-file-size\), from \d+ bytes of text/);
    const rows = await adminQuery(`SELECT name FROM "${schema}".resources`);
    assert.deepEqual(rows.rows, [], 'nothing of the file is written');
  }, { maxRowBytes: 65_536 });
});

test("apply's limit is measured as readers measure a row (jsonb's text, spaces included): what it writes every reader with that limit reads", async () => {
  await withStores(1, async ([measure], schema) => {
    const labels = Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`l${i}`, 'v']));
    const text = stringify({ type: 'Dataplane', name: 'dp-wide', mesh: 'default', labels });
    assert.deepEqual(await measure!.apply(text, 'wide.yaml'), []);
    const res = await adminQuery<{ doc: string; bytes: number }>(`SELECT doc::text AS doc, octet_length(doc::text) AS bytes FROM "${schema}".resources`);
    const stored = res.rows[0]!.bytes;
    const compact = Buffer.byteLength(JSON.stringify(JSON.parse(res.rows[0]!.doc)));
    assert.ok(compact < stored - 1, 'the compact JSON is smaller than what readers measure');
    await adminQuery(`DELETE FROM "${schema}".resources`);
    const open = (maxRowBytes: number) => PostgresStore.open(PG_URL, { schema, maxRowBytes });
    const [tight, exact] = [await open(stored - 1), await open(stored)];
    try {
      await Promise.all([tight.start(), exact.start()]);
      const [refused] = await tight.apply(text, 'wide.yaml');
      assert.match(refused?.message ?? '', new RegExp(`is stored as ${stored} bytes of JSON .*over the limit of ${stored - 1} bytes`));
      assert.deepEqual(await exact.apply(text, 'wide.yaml'), []);
      const snap = await waitForSnapshot(exact, (s) => s.resources.has('Dataplane/default//dp-wide'), 5000);
      assert.deepEqual(snap.errors, []);
      // The reader with the tighter limit refuses the row the tighter writer refused to write.
      const tightSnap = await waitForSnapshot(tight, (s) => rowProblems(s, 'Dataplane/default//dp-wide').length > 0, 5000);
      assert.match(rowProblems(tightSnap, 'Dataplane/default//dp-wide')[0]!, new RegExp(`doc is ${stored} bytes, larger than the limit of ${stored - 1} bytes`));
    } finally {
      await Promise.all([tight.close(), exact.close()]);
    }
  });
});

test('apply refuses, writing nothing, a resource holding a NUL character (an escape in text beside a PEM block, in a file path) naming the field, instead of failing with the database\'s "unsupported Unicode escape sequence"', async () => {
  await withStores(1, async ([store], schema) => {
    const trust = stringify(meshTrust());
    const pem = (meshTrust() as { spec: { caBundles: { pem: { value: string } }[] } }).spec.caBundles[0]!.pem.value;
    // JSON's \u0000 and YAML's "\0": a file's own NUL bytes are refused as binary, escapes are not.
    const json = JSON.stringify({ type: 'MeshTrust', name: 'nul-json', spec: { trustDomain: 'nul.example', caBundles: [{ type: 'Pem', pem: { value: `${pem}\n\u0000note` } }] } });
    const yaml = `${dataplaneYaml('dp-ok', 'web')}---
type: MeshIdentity
name: nul-yaml
spec:
  selector: { dataplane: { matchLabels: { app: web } } }
  provider:
    type: Bundled
    bundled:
      ca:
        certificate: { type: File, file: { path: "/etc/ca\\0.pem" } }
        privateKey: { type: File, file: { path: /etc/ca.key } }
`;
    for (const [text, file, path] of [[json, 'nul.json', 'spec.caBundles[0].pem.value'], [yaml, 'nul.yaml', 'spec.provider.bundled.ca.certificate.file.path']] as const) {
      const errors = await store!.apply(text, file);
      assert.deepEqual(
        errors.map((e) => `${e.file} ${e.path}: ${e.message}`),
        [`${file} ${path}: must not hold a NUL character (U+0000): no resource needs one, and the Postgres store cannot keep it`],
      );
    }
    const rows = await adminQuery(`SELECT name FROM "${schema}".resources`);
    assert.deepEqual(rows.rows, [], 'nothing written');
    assert.deepEqual(await store!.apply(trust, 'trust.yaml'), [], 'the same resource without it is written');
  });
});

test('apply refuses, writing nothing, a resource holding a lone UTF-16 surrogate (a JSON or YAML "\\ud800" escape) naming the field, instead of failing with the database\'s "invalid input syntax for type json"', async () => {
  await withStores(1, async ([store], schema) => {
    const dp = (name: string, labels: Record<string, string>) => ({ type: 'Dataplane', mesh: 'default', name, labels });
    // JSON.stringify writes a lone surrogate as its escape, as a user's file would.
    const json = JSON.stringify([dp('ok', { app: 'web' }), dp('lone-high', { app: 'web', note: 'x\ud800' })]);
    const yaml = `${dataplaneYaml('ok', 'web')}---\ntype: Dataplane\nmesh: default\nname: lone-low\nlabels:\n  app: web\n  "k\\udc00": v\n`;
    for (const [text, file, path] of [[json, 'lone.json', 'labels.note'], [yaml, 'lone.yaml', 'labels["k\\udc00"]']] as const) {
      const errors = await store!.apply(text, file);
      assert.deepEqual(
        errors.map((e) => `${e.file} ${e.path}: ${e.message}`),
        [`${file} ${path}: must not hold a lone UTF-16 surrogate (an escape such as \\ud800 without its pair): it is no Unicode character, and the Postgres store cannot keep it`],
      );
    }
    const rows = await adminQuery(`SELECT name FROM "${schema}".resources`);
    assert.deepEqual(rows.rows, [], 'nothing written');
    // A pair (an emoji written as two escapes) is one character, and is kept.
    assert.deepEqual(await store!.apply(JSON.stringify([dp('pair', { app: 'web', note: '\ud83d\ude00' })]), 'pair.json'), []);
  });
});

test('apply over a row whose doc another tool nested 5,000 levels deep (jsonb takes it) replaces it, instead of failing with "Maximum call stack size exceeded"', async () => {
  await withStores(1, async ([store], schema) => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, name, doc) VALUES ('Dataplane', 'default', 'deep', $1::jsonb)`, [`{"labels": {"app": ${deep}}}`]);
    await waitForSnapshot(store!, (s) => s.errors.some((e) => e.file.includes('Dataplane/default//deep')));
    for (const force of [false, true]) {
      assert.deepEqual(await store!.apply(dataplaneYaml('deep', force ? 'db' : 'web'), 'deep.yaml', { force }), []);
    }
    const snap = await waitForSnapshot(store!, (s) => s.resources.get('Dataplane/default//deep')?.labels.app === 'db');
    assert.deepEqual(snap.errors, []);
  });
});

test('a kind column with stray whitespace (a row imported from a padded export) is named with the kind it meant, and delete of that kind removes it', async () => {
  await withStores(1, async ([store], schema) => {
    for (const [kind, name] of [['Dataplane ', 'pad'], ['\tmeshidentity\n', 'tab']] as const) {
      await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, namespace, name, doc) VALUES ($1, 'default', '', $2, '{}')`, [kind, name]);
    }
    const snap = await waitForSnapshot(store!, (s) => s.errors.length === 2, 5000);
    assert.match(rowProblems(snap, 'Dataplane /default//pad')[0] ?? '', /^: kind column "Dataplane " is not a kind mesh-sds serves \([^)]*\); it is Dataplane, spelt exactly so \(delete Dataplane removes this row/);
    assert.match(rowProblems(snap, '\tmeshidentity\n/default//tab')[0] ?? '', /; it is MeshIdentity, spelt exactly so/);
    assert.equal(await store!.delete('Dataplane', 'default', '', 'pad', { force: true }), true);
    assert.equal(await store!.delete('MeshIdentity', 'default', '', 'tab', { force: true }), true);
    await waitForSnapshot(store!, (s) => s.errors.length === 0, 5000);
    assert.deepEqual((await adminQuery(`SELECT kind FROM "${schema}".resources`)).rows, []);
  });
});

test('a row whose source_name (or, for apply, source) another tool made 513 MiB (a short repeat() in SQL, compressed on disk) is read cut or not at all, instead of crashing the process with ERR_STRING_TOO_LONG; the rest flows', async () => {
  await withStores(1, async ([store], schema) => {
    const huge = `repeat('x', 513 * 1024 * 1024)`; // past V8's longest string, 2^29 - 24 characters
    assert.deepEqual(await store!.apply(dataplaneYaml('served', 'web'), 'a.yaml'), []);
    await adminQuery(`INSERT INTO "${schema}".resources (kind, mesh, name, source, source_name) VALUES ('Dataplane', 'default', 'named', $1, ${huge})`, [dataplaneYaml('named', 'web')]);
    const snap = await waitForSnapshot(store!, (s) => s.resources.has('Dataplane/default//named'), 20_000);
    assert.ok(snap.resources.get('Dataplane/default//named')!.source!.file.length < 8192, 'the file label is cut');
    // apply compares with the stored row: its text must not be sent whole either.
    await adminQuery(`UPDATE "${schema}".resources SET source = ${huge}, source_name = '' WHERE name = 'named'`);
    assert.deepEqual(await store!.apply(dataplaneYaml('named', 'db'), 'b.yaml', { force: true }), []);
    await adminQuery(`UPDATE "${schema}".resources SET doc = NULL, source = ${huge} WHERE name = 'served'`);
    assert.deepEqual(await store!.apply(dataplaneYaml('after', 'web'), 'c.yaml'), []);
    const last = await waitForSnapshot(store!, (s) => s.resources.get('Dataplane/default//named')?.labels.app === 'db' && s.resources.has('Dataplane/default//after') && s.errors.length === 1, 20_000);
    assert.match(last.errors[0]!.message, /row Dataplane\/default\/\/served: source is 537919488 bytes, larger than the limit/);
    assert.equal(last.resources.get('Dataplane/default//served')?.labels.app, 'web', 'its last good version is served');
  });
});
