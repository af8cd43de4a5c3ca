// Property test: on generated JSON files (strings holding brackets, quotes, escapes, YAML
// indicators, surrogate pairs; any JSON whitespace, CRLF, tabs, one long line or many), the linear
// JSON split cuts each item exactly where the YAML parser does, and every resource parseResources
// reads is given the text of its own item. Seeded, so a failure names an input that reproduces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitJsonDocuments, splitYamlDocuments } from '../../src/store/postgres-codec.js';
import { parseResources } from '../../src/api/parse.js';

function generator(seed: number) {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const pieces = ['a', ']', '[', '{', '}', '"', '\\', ',', ':', ' ', '#', '---', '...', '\t', '\n', 'é', '\u2028', '😀', '- ', '? ', '&x', '*x', '!t', '%', '@', '`', '|', '>', "'", '\u0085', '\ufeff', '0', 'true', 'null', '\\u005d'];
  const str = () => Array.from({ length: Math.floor(rnd() * 6) }, () => pick(pieces)).join('');
  // JSON string text, with some characters written as escapes (`\u005d`, `\/`) as other tools do.
  const enc = (v: string) => {
    let out = '"';
    for (const ch of v) {
      const c = ch.codePointAt(0)!;
      if (ch === '"') out += '\\"';
      else if (ch === '\\') out += '\\\\';
      else if (c < 0x20 || rnd() < 0.1) out += [...Array(ch.length).keys()].map((i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join('');
      else if (ch === '/' && rnd() < 0.5) out += '\\/';
      else out += ch;
    }
    return `${out}"`;
  };
  let ws = () => '';
  const value = (depth: number): string => {
    const r = rnd();
    if (depth > 3 || r < 0.3) return pick([() => enc(str()), () => String(Math.floor(rnd() * 1000) - 500), () => pick(['true', 'false', 'null', '1e5', '-0.5', '2E-3'])])();
    const n = Math.floor(rnd() * 4);
    if (r < 0.6) return `[${Array.from({ length: n }, () => ws() + value(depth + 1)).join(`${ws()},`)}${ws()}]`;
    return `{${Array.from({ length: n }, (_, i) => `${ws()}${enc(str() + i)}${ws()}:${ws()}${value(depth + 1)}`).join(`${ws()},`)}${ws()}}`;
  };
  const item = (i: number) =>
    `{${ws()}"type"${ws()}:${ws()}"Dataplane",${ws()}"mesh":"default",${ws()}"name":${enc(`dp-${i}`)},${ws()}"labels":{"app":"web"}` +
    `${rnd() < 0.7 ? `${ws()},${ws()}"x-note"${ws()}:${ws()}${value(1)}` : ''}${ws()}}`;
  return (): string => {
    const nl = pick(['\n', '\r\n']);
    const ind = pick(['', ' ', '  ', '    ', '\t']);
    const style = rnd();
    ws = style < 0.3 ? () => '' : style < 0.6 ? () => nl + ind.repeat(1 + Math.floor(rnd() * 3)) : () => pick(['', ' ', nl + ind, '\t', nl + nl + ind]);
    const items = Array.from({ length: Math.floor(rnd() * 4) }, (_, i) => item(i));
    let body = `[${items.map((i) => ws() + i).join(`${ws()},`)}${ws()}]`;
    if (rnd() < 0.4) {
      const kind = rnd() < 0.5 ? `"kind":${pick(['"List"', '"DataplaneList"'])},${ws()}` : '';
      const meta = rnd() < 0.3 ? `"meta":${value(1)},` : '';
      body = `{${ws()}${kind}${meta}"items":${ws()}${body}${ws()}}`;
    }
    return pick(['', ' ', nl, `\t${nl}`]) + body + pick(['', nl, ` ${nl}${nl}`]);
  };
}

test('on 1,500 generated JSON files, the JSON split equals the YAML split, and each resource gets its own item\'s text', () => {
  const next = generator(20261202);
  for (let n = 0; n < 1500; n++) {
    const text = next();
    JSON.parse(text); // the generator writes JSON only
    const fast = splitJsonDocuments(text);
    assert.deepEqual(fast, splitYamlDocuments(text), `input ${n}: ${JSON.stringify(text)}`);
    for (const r of parseResources(text, 'f.json').resources) {
      const own = JSON.parse(fast![r.source!.document]!) as { name?: unknown };
      assert.equal(own.name, r.name, `input ${n}: ${JSON.stringify(text)}`);
    }
  }
});
