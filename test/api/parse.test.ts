// File-level parsing: YAML streams, JSON, lists, syntax errors, envelopes of both forms, Dataplanes, Secrets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseResources } from '../../src/api/parse.js';
import type { Dataplane, MeshTrust, SecretResource } from '../../src/api/types.js';
import { callInWorker } from '../helpers/in-worker.js';
import { assertAccepted, assertRejected, FILE, meshIdentity, meshTrust, withField } from './helpers.js';

const errs = (r: ReturnType<typeof parseResources>) => r.errors.map((e) => `${e.document}|${e.path}|${e.message}`);

test('a YAML stream yields one resource per document and skips empty documents', () => {
  const text = [stringify(meshTrust()), '', '# only a comment', stringify(meshIdentity()), stringify({ type: 'Dataplane', name: 'dp-1' })].join('---\n');
  const r = parseResources(text, FILE);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.resources.map((x) => [x.kind, x.source?.document]), [['MeshTrust', 0], ['MeshIdentity', 2], ['Dataplane', 3]]);
  assert.deepEqual(parseResources('', FILE), { resources: [], errors: [] });
  assert.deepEqual(parseResources('---\n---\n', FILE), { resources: [], errors: [] });
});

test('one bad document does not drop the good ones of the same file', () => {
  const bad = withField(meshTrust(), 'spec.caBundles', []);
  const text = [stringify(meshTrust()), stringify({ ...bad, name: 'bad' }), stringify(meshIdentity())].join('---\n');
  const r = parseResources(text, FILE);
  assert.deepEqual(r.resources.map((x) => x.name), ['trust', 'identity']);
  assert.deepEqual(r.errors, [{ file: FILE, document: 1, path: 'spec.caBundles', message: 'must not be empty' }]);
});

test('a YAML syntax error becomes an error with its line and column, other documents survive', () => {
  const text = `${stringify(meshTrust())}---\ntype: Dataplane\nname: [oops\n---\n${stringify(meshIdentity())}`;
  const r = parseResources(text, FILE);
  assert.deepEqual(r.resources.map((x) => x.kind), ['MeshTrust', 'MeshIdentity']);
  assert.equal(r.errors.length, 1);
  const e = r.errors[0]!;
  assert.equal(e.document, 1);
  assert.equal(e.path, '');
  const line = text.split('\n').indexOf('name: [oops') + 1;
  assert.match(e.message, new RegExp(`^invalid YAML at line (${line}|${line + 1}), column \\d+: `));
});

test('duplicate keys are a YAML error', () => {
  const r = parseResources('type: Dataplane\nname: a\nname: b\n', FILE);
  assert.equal(r.resources.length, 0);
  assert.match(r.errors[0]?.message ?? '', /^invalid YAML at line 3, column 1: Map keys must be unique/);
});

test('keys equal as text (1 and "1") are one key in the parsed object, so a map holding both is refused with the second one\'s line, in a plain file and in one with anchors alike', () => {
  for (const anchor of ['', '&l ']) {
    const r = parseResources(`type: Dataplane\nname: a\nmesh: default\nlabels: ${anchor}\n  1: one\n  "1": two\n`, FILE);
    assert.equal(r.resources.length, 0, `anchor ${JSON.stringify(anchor)}: nothing accepted`);
    assert.deepEqual(errs(r), ['0||invalid YAML at line 6, column 3: Map keys must be unique'], `anchor ${JSON.stringify(anchor)}`);
  }
});

test('an alias names the last anchor of its name before it: after a redefinition, an alias inside the redefined node contains itself and is refused; one after it is not', () => {
  const doc = (rest: string) => `type: Dataplane\nname: a\nmesh: default\nlabels: {app: web}\nx: &n {k: 1}\n${rest}`;
  assert.deepEqual(errs(parseResources(doc('y: &n [*n]\n'), FILE)), ['0||invalid YAML at line 6, column 8: alias *n is inside the value of its own anchor, which would contain itself']);
  const after = parseResources(doc('y: &n [1]\nz: [*n]\n'), FILE);
  assert.ok(!errs(after).some((e) => e.includes('contain itself')), errs(after).join('; '));
});

test('JSON input: one object, an array of objects, an items list, a Kubernetes List', () => {
  const one = parseResources(JSON.stringify(meshTrust()), 'x.json');
  assert.deepEqual(one.errors, []);
  assert.equal(one.resources[0]?.kind, 'MeshTrust');

  const arr = parseResources(JSON.stringify([meshTrust(), withField(meshIdentity(), 'spec.provider.type', 'X'), meshIdentity()], null, 2), 'x.json');
  assert.deepEqual(arr.resources.map((x) => [x.kind, x.source?.document]), [['MeshTrust', 0], ['MeshIdentity', 2]]);
  assert.deepEqual(errs(arr), ['1|spec.provider.type|must be one of Bundled, Spire']);

  const items = parseResources(JSON.stringify({ items: [meshTrust(), meshIdentity()] }), 'x.json');
  assert.deepEqual(items.errors, []);
  assert.deepEqual(items.resources.map((x) => x.kind), ['MeshTrust', 'MeshIdentity']);

  const list = parseResources(stringify({ apiVersion: 'v1', kind: 'List', items: [meshTrust()] }), FILE);
  assert.deepEqual(list.errors, []);
  assert.equal(list.resources.length, 1);
});

test('the same resource twice in a file is an error on the second', () => {
  const r = parseResources([stringify(meshTrust()), stringify(meshTrust())].join('---\n'), FILE);
  assert.equal(r.resources.length, 1);
  assert.deepEqual(errs(r), ['1||duplicate MeshTrust "trust" in mesh "default" (first defined in document 1)']);
});

test('a document that is not an object, or has neither kind nor type, is rejected', () => {
  assert.deepEqual(errs(parseResources('just a string\n', FILE)), ['0||document must be an object']);
  assert.deepEqual(errs(parseResources('name: x\n', FILE)), ['0||document has neither kind (Kubernetes form) nor type (Universal form)']);
});

test('an unknown kind is named, in either form', () => {
  assertRejected({ type: 'MeshTLS', name: 'x' }, 'type: unknown kind "MeshTLS", expected one of MeshTrust, MeshIdentity, Dataplane, Secret, ClusterFederatedTrustDomain');
  assertRejected(
    { apiVersion: 'kuma.io/v1alpha1', kind: 'Mesh', metadata: { name: 'x' } },
    'kind: unknown kind "Mesh", expected one of MeshTrust, MeshIdentity, Dataplane, Secret, ClusterFederatedTrustDomain',
  );
});

test('Kubernetes form: apiVersion is checked, mesh comes from the kuma.io/mesh label', () => {
  const k8s = {
    apiVersion: 'kuma.io/v1alpha1',
    kind: 'MeshTrust',
    metadata: { name: 'trust', namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'payments', team: 'a' } },
    spec: meshTrust().spec,
  };
  const mt = assertAccepted<MeshTrust>(k8s);
  assert.deepEqual([mt.mesh, mt.namespace, mt.labels], ['payments', 'kuma-system', { team: 'a', 'k8s.kuma.io/namespace': 'kuma-system' }]);
  assert.equal(assertAccepted(withField(k8s, 'metadata.labels', undefined)).mesh, 'default');
  assertRejected(withField(k8s, 'apiVersion', 'kuma.io/v1'), 'apiVersion: must be kuma.io/v1alpha1');
  assertRejected(withField(k8s, 'metadata', undefined), 'metadata: must be defined', 'metadata.name: must not be empty');
  assertRejected(withField(k8s, 'extra', 1), 'extra: unknown field');
  // Server-populated metadata is ignored so `kubectl get -o yaml` output is accepted.
  assertAccepted(withField(k8s, 'metadata.resourceVersion', '12'));
});

test('Universal form: the k8s.kuma.io/namespace label gives the namespace (as Kuma carries it)', () => {
  const mt = assertAccepted<MeshTrust>(withField(meshTrust(), 'labels', { 'k8s.kuma.io/namespace': 'kuma-system' }));
  assert.equal(mt.namespace, 'kuma-system');
  assertRejected(
    withField(meshTrust(), 'labels', { 'k8s.kuma.io/namespace': 'Bad_NS' }),
    'labels["k8s.kuma.io/namespace"]: must be a valid DNS-1123 label (lowercase letters, digits and \'-\', starting and ending with a letter or digit)',
  );
});

test('Universal form: mesh defaults to default, unknown top-level fields are refused', () => {
  const mt = assertAccepted<MeshTrust>(withField(meshTrust(), 'mesh', undefined));
  assert.equal(mt.mesh, 'default');
  assert.equal(mt.namespace, '');
  assertRejected(withField(meshTrust(), 'metadata', {}), 'metadata: unknown field');
  assertAccepted(withField(meshTrust(), 'creationTime', '2024-01-01T00:00:00Z'));
});

test('names must be valid DNS-1123 names and meshes DNS labels', () => {
  const dns = "must be a valid DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)";
  assertRejected(withField(meshTrust(), 'name', 'My_Trust'), `name: ${dns}`);
  assertRejected(withField(meshTrust(), 'name', undefined), 'name: must not be empty');
  assertRejected(withField(meshTrust(), 'name', 'a'.repeat(254)), 'name: must not be longer than 253 characters');
  assertAccepted(withField(meshTrust(), 'name', 'zone-2.trust'));
  assertRejected(
    withField(meshTrust(), 'mesh', 'my.mesh'),
    "mesh: must be a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)",
  );
  assertRejected(
    { apiVersion: 'kuma.io/v1alpha1', kind: 'Dataplane', metadata: { name: 'Bad' } },
    `metadata.name: ${dns}`,
  );
});

test('labels must map strings to strings', () => {
  assertRejected(withField(meshTrust(), 'labels', { version: 2 }), 'labels["version"]: must be a string');
  assertRejected(withField(meshTrust(), 'labels', ['a']), 'labels: must be a map of strings');
  assert.deepEqual(assertAccepted(withField(meshTrust(), 'labels', { version: '2' })).labels, { version: '2' });
});

test('labels, tags and selectors refuse control characters (ANSI escapes, newlines rewrote terminals and forged lines of `get`), naming the first', () => {
  assertRejected(withField(meshTrust(), 'labels', { app: 'web\u001b]0;owned\u0007' }), 'labels["app"]: must not hold control characters (U+001B at 3)');
  assertRejected(withField(meshTrust(), 'labels', { 'a\nb': 'x' }), 'labels: key "a\\nb" must not hold control characters (U+000A at 1)');
  assertRejected({ type: 'Dataplane', name: 'x', networking: { inbound: [{ tags: { app: 'a\u0085' } }] } }, 'networking.inbound[0].tags["app"]: must not hold control characters (U+0085 at 1)');
  assertRejected(withField(meshIdentity(), 'spec.selector.dataplane.matchLabels', { app: '\r' }), 'spec.selector.dataplane.matchLabels["app"]: must not hold control characters (U+000D at 0)');
  // Non-ASCII text is not a control character.
  assert.deepEqual(assertAccepted(withField(meshTrust(), 'labels', { team: 'équipe-ü' })).labels, { team: 'équipe-ü' });
});

test('Universal Dataplane: labels plus inbound tags, labels winning', () => {
  const dp = assertAccepted<Dataplane>({
    type: 'Dataplane',
    mesh: 'default',
    name: 'web-1',
    labels: { app: 'web', 'kuma.io/workload': 'web' },
    networking: { address: '10.0.0.1', inbound: [{ port: 8080, tags: { 'kuma.io/service': 'web', app: 'from-tag' } }] },
  });
  assert.deepEqual(dp.labels, { 'kuma.io/service': 'web', app: 'web', 'kuma.io/workload': 'web' });
  assert.equal(dp.namespace, '');
  assertRejected({ type: 'Dataplane', name: 'x', networking: { inbound: [{ tags: { port: 1 } }] } }, 'networking.inbound[0].tags["port"]: must be a string');
  assertRejected({ type: 'Dataplane', name: 'x', spec: {} }, 'spec: unknown field');
});

test('Kubernetes Dataplane: metadata.labels, plus its namespace as k8s.kuma.io/namespace', () => {
  const dp = assertAccepted<Dataplane>({
    apiVersion: 'kuma.io/v1alpha1',
    kind: 'Dataplane',
    mesh: 'demo',
    metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web', 'k8s.kuma.io/service-account': 'web-sa' } },
    spec: { networking: { inbound: [{ tags: { version: 'v1' } }] } },
  });
  assert.equal(dp.mesh, 'demo');
  assert.deepEqual(dp.labels, { version: 'v1', app: 'web', 'k8s.kuma.io/service-account': 'web-sa', 'k8s.kuma.io/namespace': 'shop' });
  assert.equal(dp.namespace, 'shop');
});

test('Universal Secret: data is base64', () => {
  const s = assertAccepted<SecretResource>({ type: 'Secret', name: 'ca-cert', mesh: 'default', data: Buffer.from('hello').toString('base64') });
  assert.equal(s.data.toString(), 'hello');
  assertRejected({ type: 'Secret', name: 'ca-cert', data: 'not base64!' }, 'data: must be valid base64');
  assertRejected({ type: 'Secret', name: 'ca-cert' }, 'data: must not be empty');
});

test('Kubernetes Secret: data.value base64 or stringData.value, apiVersion v1', () => {
  const base = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ca-key', namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'default' } }, type: 'system.kuma.io/secret' };
  const a = assertAccepted<SecretResource>({ ...base, data: { value: Buffer.from('key-bytes').toString('base64') } });
  assert.equal(a.data.toString(), 'key-bytes');
  assert.equal(a.namespace, 'kuma-system');
  const b = assertAccepted<SecretResource>({ ...base, stringData: { value: 'plain' } });
  assert.equal(b.data.toString(), 'plain');
  assertRejected({ ...base, data: {} }, 'data.value: must be defined (or stringData.value)');
  assertRejected({ ...base, apiVersion: 'kuma.io/v1alpha1', data: { value: 'aGk=' } }, 'apiVersion: must be v1');
});

test('broken JSON is reported with its line and column by the YAML parser', () => {
  const r = parseResources('{\n  "type": "Dataplane",\n  "name": "x"\n  "mesh": "default"\n}\n', 'x.json');
  assert.equal(r.resources.length, 0);
  assert.match(r.errors[0]?.message ?? '', /^invalid YAML at line \d, column \d+: /);
  assert.equal(r.errors[0]?.document, 0);
});

test('a large JSON list of Dataplanes parses every item', () => {
  const items = Array.from({ length: 2000 }, (_, i) => ({ type: 'Dataplane', name: `dp-${i}`, labels: { app: 'web' } }));
  const r = parseResources(JSON.stringify({ items }), 'big.json');
  assert.deepEqual(r.errors, []);
  assert.equal(r.resources.length, 2000);
  assert.equal(r.resources[1999]?.source?.document, 1999);
});

test('plain files (fast path) and files with anchors and aliases (full parser) read to the same resources', () => {
  const plain = 'type: Dataplane\nname: a\nmesh: default\nlabels:\n  app: web\n  env: prod\n---\ntype: Dataplane\nname: b\nmesh: default\nlabels:\n  app: web\n  env: prod\n';
  const aliased = 'type: Dataplane\nname: a\nmesh: default\nlabels: &l\n  app: web\n  env: prod\n---\ntype: Dataplane\nname: b\nmesh: default\nlabels:\n  app: web\n  env: prod\n';
  const strip = (r: ReturnType<typeof parseResources>) => r.resources.map(({ source: _source, ...rest }) => rest);
  const a = parseResources(plain, FILE);
  const b = parseResources(aliased, FILE);
  assert.deepEqual(errs(a), []);
  assert.deepEqual(strip(a), strip(b));
});

test('a syntax error in one document of a plain file still names its line and keeps the good documents', () => {
  const r = parseResources('type: Dataplane\nname: ok\nmesh: default\n---\ntype: Dataplane\nname: [broken\n', FILE);
  assert.deepEqual(r.resources.map((x) => x.name), ['ok']);
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0]!.document, 1);
  assert.match(r.errors[0]!.message, /^invalid YAML at line \d+, column \d+/);
});

test('duplicate keys in a JSON file are an error naming the key, as in YAML, also when escaped differently; equal keys in different objects are not', () => {
  const dup = '{"type":"Dataplane","name":"a","mesh":"default","labels":{"app":"web","app":"api"}}';
  const r = parseResources(dup, 'f.json');
  assert.equal(r.resources.length, 0);
  assert.match(r.errors[0]!.message, /Map keys must be unique/);
  const escaped = parseResources('{"type":"Dataplane","name":"a","mesh":"default","labels":{"ab":"1","a\\u0062":"2"}}', 'f.json');
  assert.equal(escaped.resources.length, 0, 'the second "ab" is the same key');
  const fine = parseResources('[{"type":"Dataplane","name":"a","mesh":"default","labels":{"app":"web"}},{"type":"Dataplane","name":"b","mesh":"default","labels":{"app":"web","k":"{\\"app\\":1,\\"app\\":2}"}}]', 'f.json');
  assert.deepEqual(fine.errors, []);
  assert.equal(fine.resources.length, 2, 'same keys in other objects, and inside strings, are fine');
});

test('YAML merge keys are refused by name, with or without anchors, and a merge bomb is never expanded (the yaml package copies the map for each merge, outside the alias limit)', () => {
  const anchored = 'type: Dataplane\nname: a\nmesh: default\nlabels:\n  <<: &common\n    app: web\n  env: dev\n';
  const inline = 'type: Dataplane\nname: b\nmesh: default\nlabels:\n  <<: { app: api, env: prod }\n  env: dev\n';
  for (const text of [anchored, inline, inline.replace('type: Dataplane', '# & a comment\ntype: Dataplane')]) {
    const r = parseResources(text, FILE);
    assert.equal(r.resources.length, 0, text);
    assert.deepEqual(r.errors.map((e) => `${e.path}: ${e.message}`), ['labels.<<: YAML merge keys (<<) are not supported: write the keys out'], text);
  }
  // A value or a quoted key holding "<<" is just text.
  const text = parseResources('type: Dataplane\nname: c\nmesh: default\nlabels:\n  note: "a << b"\n', FILE);
  assert.deepEqual(text.errors, []);
  // A merge bomb (a large anchored map merged a thousand times) is refused at once, not expanded.
  const keys = Array.from({ length: 10_000 }, (_, i) => `  k${i}: v`).join('\n');
  const bomb = `type: Dataplane\nname: d\nmesh: default\nx: &a\n${keys}\nitems:\n${Array.from({ length: 1000 }, () => '  - <<: *a').join('\n')}\n`;
  const r = parseResources(bomb, FILE);
  assert.equal(r.resources.length, 0);
  assert.ok(r.errors.some((e) => /YAML merge keys \(<<\) are not supported|Excessive alias count/.test(e.message)), JSON.stringify(r.errors.slice(0, 3)));
});

test('a resource kept from a parse does not keep its whole file alive (parsers return slices of the file text): 30 parses of a 0.5 MB file, one resource kept from each, retain far less than 30 files', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const many = Array.from({ length: 4000 }, (_, i) => `type: Dataplane\nname: dp-${i}\nmesh: default\nlabels:\n  app: web-application-${i}\n  k8s.kuma.io/namespace: namespace-number-${i}`).join('\n---\n');
  for (const [form, text] of [['YAML', many], ['JSON', JSON.stringify(parseResources(many, FILE).resources.map((r) => ({ type: 'Dataplane', name: r.name, mesh: 'default', labels: r.labels })))]] as const) {
    const kept: unknown[] = [];
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 30; i++) kept.push(parseResources(text.replace('dp-0', `dp-0-${i}`), FILE).resources[0]);
    gc();
    const retainedMb = (process.memoryUsage().heapUsed - before) / 1e6;
    assert.equal(kept.length, 30);
    assert.ok(retainedMb < (30 * text.length) / 1e6 / 3, `${form}: ${retainedMb.toFixed(1)} MB retained for 30 parses of ${(text.length / 1e6).toFixed(2)} MB`);
  }
});

test('a self-referencing alias is refused naming it, even in a field validation ignores (infinite once expanded; Kubernetes refuses it too); JSON nested 20,000 deep in an ignored field is read', () => {
  const k8s = (extra: string) => `apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmesh: default\nmetadata:\n  name: web-1\n  namespace: shop\n  managedFields: ${extra}\nspec: {}\n`;
  const r = parseResources(k8s('&m [{x: *m}]'), FILE);
  assert.deepEqual(errs(r), ['0||invalid YAML at line 7, column 26: alias *m is inside the value of its own anchor, which would contain itself']);
  assert.equal(r.resources.length, 0);
  assert.deepEqual(errs(parseResources(k8s('[&m {x: 1}, *m]'), FILE)), [], 'an alias beside its anchor is fine');
  const deep = `{"type":"Dataplane","name":"deep","meta":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
  const d = parseResources(deep, FILE);
  assert.equal(d.errors.some((e) => /call stack|nested too deeply/.test(e.message)), false, errs(d).join('; '));
});

test('YAML nested thousands deep is refused in plain words, naming where, not with the engine\'s stack overflow', () => {
  const r = parseResources(`type: Dataplane\nname: a\nmesh: default\nlabels: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`, FILE);
  assert.equal(r.resources.length, 0);
  assert.match(errs(r).join('; '), /invalid YAML at line 4, column \d+: nested too deeply \(thousands of levels; no resource has more than a few\)/);
  assert.doesNotMatch(errs(r).join('; '), /call stack/);
});

test('YAML aliases that expand a file past the size limit are refused naming the limit, not expanded (one anchored string aliased a thousand times, summed over documents); aliases within the limit still read', () => {
  const big = 'x'.repeat(5000);
  const bomb = `type: Dataplane\nname: a\nmesh: default\nlabels:\n  app: web\nnote: &s "${big}"\nmore: [${Array.from({ length: 999 }, () => '*s').join(', ')}]\n`;
  const r = parseResources(bomb, FILE, 1_000_000);
  assert.equal(r.resources.length, 0);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0]!.message, /^YAML aliases expand this file to more than 1000000 bytes, the limit of a file \(--max-file-size\), from \d+ bytes of text/);
  // Each document alone within the limit, together past it: the later ones are not read.
  // Kubernetes form: metadata.managedFields is read and ignored, as such a list would be.
  const doc = (i: number) =>
    `apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmesh: default\nmetadata:\n  name: d${i}\n  managedFields: [&s "${'y'.repeat(1000)}", ${Array.from({ length: 300 }, () => '*s').join(', ')}]\nspec: {}\n`;
  const many = parseResources(Array.from({ length: 5 }, (_, i) => doc(i)).join('---\n'), FILE, 1_000_000);
  assert.deepEqual(many.resources.map((x) => x.name), ['d0', 'd1', 'd2']);
  assert.equal(many.errors.length, 1);
  assert.equal(many.errors[0]!.document, 3);
  const fine = parseResources(`type: Dataplane\nname: f\nmesh: default\nlabels: {app: &w web, env: *w}\n`, FILE, 1_000_000);
  assert.deepEqual(fine.errors, []);
  assert.deepEqual(fine.resources[0]?.labels, { app: 'web', env: 'web' });
});

test('a file without aliases that is within the size limit is never refused as expanding past it (the count stays below the text size)', () => {
  const labels = Array.from({ length: 2000 }, (_, i) => `  k${i}: v${i}`).join('\n');
  const text = `# & a comment to take the full parser\ntype: Dataplane\nname: a\nmesh: default\nlabels:\n${labels}\n`;
  const r = parseResources(text, FILE, Buffer.byteLength(text));
  assert.deepEqual(r.errors.filter((e) => /expand/.test(e.message)), []);
});

test('a null key or a list or map as a key is refused with its line, read by either parser (they named such keys differently: "null" or "", "a,b" or "[ a, b ]"); a quoted "null" and a number are ordinary keys', () => {
  const dp = (key: string) => `type: Dataplane\nname: a\nmesh: default\nlabels:\n  app: web\n  ${key}: b\n`;
  for (const pre of ['', '# & takes the full parser\n']) {
    const line = pre === '' ? 6 : 7;
    for (const key of ['null', '~', 'NULL', '']) {
      const r = parseResources(pre + dp(key), FILE);
      assert.equal(r.resources.length, 0, `${pre}${key}`);
      assert.match(r.errors[0]?.message ?? '', new RegExp(`^invalid YAML at line ${line}, column \\d: a null or empty key \\(quote it, "null", if that is the name\\): map keys must be text$`), key);
    }
    const quoted = parseResources(pre + dp('"null"'), FILE);
    assert.deepEqual(quoted.resources[0]?.labels, { app: 'web', null: 'b' });
    const numeric = parseResources(pre + dp('1'), FILE);
    assert.deepEqual(numeric.resources[0]?.labels, { app: 'web', 1: 'b' });
    const explicit = parseResources(`${pre}type: Dataplane\nname: a\nmesh: default\n? - a\n  - b\n: c\n`, FILE);
    assert.equal(explicit.resources.length, 0);
    assert.match(explicit.errors[0]?.message ?? '', new RegExp(`^invalid YAML at line ${line - 2}, column 3: a list or map as a key: map keys must be text$`));
  }
  const flow = parseResources('{type: Dataplane, name: a, mesh: default, labels: {[a]: b}}\n', FILE);
  assert.match(flow.errors[0]?.message ?? '', /a list or map as a key: map keys must be text/);
});

// The pre-check that sends a file to the full parser (a key may be null) retried `[ \t]*:` from
// every blank of a run: 50 KB of spaces on one line took 1.6 s, 100 KB 6.5 s, in apply or a reload.
test('a file with a megabyte of blanks on one line is read in one pass', async () => {
  const text = `type: Dataplane\nname: dp-1\nmesh: default\nlabels:\n  team: a${' '.repeat(1_000_000)}b\n`;
  const r = (await callInWorker(new URL('../../src/api/parse.ts', import.meta.url), 'parseResources', [text, FILE])) as ReturnType<typeof parseResources>;
  assert.deepEqual(errs(r), []);
  assert.equal((r.resources[0] as Dataplane).labels.team?.length, 1_000_002);
});

test('a document nested deeper than the call stack, in a file holding a backslash or `<<`, is read, and a NUL or merge key deep in it still found', () => {
  const nest = (inner: string) => `${'['.repeat(20_000)}${inner}${']'.repeat(20_000)}`;
  const doc = (extra: string, meta: string) => `{"type":"Dataplane","name":"deep","mesh":"default",${extra}"meta":${meta}}`;
  for (const extra of ['"labels":{"a":"x\\\\y"},', '"labels":{"a":"<<"},']) {
    const r = parseResources(doc(extra, nest('')), FILE);
    assert.deepEqual(errs(r), ['0|meta|unknown field'], extra);
  }
  const nul = parseResources(doc('', nest('"a\\u0000"')), FILE);
  assert.match(errs(nul).join(), /^0\|meta(\[0\]){20000}\|must not hold a NUL character/);
  const merge = parseResources(doc('', nest('{"<<":1}')), FILE);
  assert.match(errs(merge).join(), /^0\|meta(\[0\]){20000}\.<<\|YAML merge keys/);
});
