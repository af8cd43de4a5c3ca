// The `source` column keeps each document as the user wrote it; a JSON file is split without the
// YAML parser (linear), and must be cut exactly where the YAML parser cuts it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitDocuments, splitJsonDocuments, splitYamlDocuments } from '../../src/store/postgres-codec.js';

const dp = (name: string, extra: Record<string, unknown> = {}) => ({ kind: 'Dataplane', mesh: 'default', name, labels: { app: name }, ...extra });

const inputs: [string, string][] = [
  ['a pretty array', JSON.stringify([dp('a'), dp('b'), dp('c')], null, 2)],
  ['an array indented by 4 with CRLF line ends', JSON.stringify([dp('a'), dp('b')], null, 4).replace(/\n/g, '\r\n')],
  ['a compact array', JSON.stringify([dp('a'), dp('b')])],
  ['a List kind with items', JSON.stringify({ apiVersion: 'v1', kind: 'DataplaneList', items: [dp('a'), dp('b')] }, null, 2)],
  ['items without a kind, after other members holding arrays', JSON.stringify({ meta: { tags: ['x', ']', '[', '{'] }, items: [dp('a'), dp('b')] }, null, 2)],
  ['an object with a kind that is not a list (one document)', JSON.stringify(dp('solo', { items: [1, 2] }), null, 2)],
  ['strings with brackets, quotes, commas and escapes', JSON.stringify([dp('a', { note: 'a "quoted" ] } , [ { \\ \u00e9 \n' }), dp('b', { note: '\\"' })], null, 2)],
  ['nested arrays and numbers inside items', JSON.stringify([dp('a', { ports: [1, 2.5e3, -7, true, false, null] }), dp('b')], null, 1)],
  ['leading and trailing blank lines', `\n\n  ${JSON.stringify([dp('a'), dp('b')], null, 2)}\n\n`],
  ['an empty array', '[]'],
  ['an empty items list', '{"kind": "List", "items": []}'],
];

for (const [what, text] of inputs) {
  test(`a JSON file is split as the YAML parser splits it: ${what}`, () => {
    const fast = splitJsonDocuments(text);
    assert.ok(fast, 'taken as JSON');
    assert.deepEqual(fast, splitYamlDocuments(text));
  });
}

test('an items key spelt with an escape is found where JSON.parse finds it', () => {
  const text = `{"kind": "DataplaneList", "it\\u0065ms": [${JSON.stringify(dp('a'))}, ${JSON.stringify(dp('b'))}]}`;
  assert.deepEqual(splitJsonDocuments(text), [JSON.stringify(dp('a')), JSON.stringify(dp('b'))]);
});

test('each item of a large JSON list keeps its own text, one per resource', () => {
  const items = Array.from({ length: 5000 }, (_, i) => dp(`dp-${i}`));
  const docs = splitDocuments(JSON.stringify(items, null, 2));
  assert.equal(docs.length, 5000);
  assert.deepEqual(JSON.parse(docs[4321]!), items[4321]);
});

test('text that is not JSON (YAML, or JSON-looking YAML flow style) goes to the YAML parser', () => {
  assert.equal(splitJsonDocuments('kind: Dataplane\nname: a\n'), undefined);
  assert.equal(splitJsonDocuments('[{kind: Dataplane, name: a}]'), undefined);
  assert.deepEqual(splitDocuments('[{kind: Dataplane, name: a}, {kind: Dataplane, name: b}]'), ['{kind: Dataplane, name: a}', '{kind: Dataplane, name: b}']);
});
