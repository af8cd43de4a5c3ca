// What a YAML document may not be, seen on its syntax tree before it becomes a value.
//
// Map keys that are not text. js-yaml (the fast path) and the `yaml` package turn a null key or a
// list/map key into different strings (`null` vs ``, `a,b` vs `[ a, b ]`), so one file would mean
// two things depending on the parser that read it; neither is a name anything means. Refused.
//
// A value that contains itself (an alias inside its own anchor): infinite once expanded, refused as
// Kubernetes' YAML reader (go-yaml: "anchor value contains itself") refuses it.
//
// Two equal keys in one map. The yaml package's own check compares each key with every key before
// it, and its Alias.resolve walks the whole document for each alias: an anchored map of 40,000 keys
// (470 KB) took 9.5 s, a 120 KB file of 1,000 aliases 5.5 s, on the thread serving every proxy.
// Here both are one pass (parse with `uniqueKeys: false`).
import { isCollection, isScalar, visit, type Document, type LineCounter, type Node, type YAMLMap } from 'yaml';

/**
 * Text where a key may be null (`~:`, `null:`, `: x`), a list or map (`[a]: x`), or explicit (`? x`): read by the full parser.
 * Blanks before a lone `:` are not skipped by `[ \t]*` (the blank before it is a `\s` already): tried from
 * every blank of a run, that scanned the run again each time, and 100 KB of spaces on a line took 6.5 s.
 */
export const MAYBE_NON_TEXT_KEY = /(?:^|[\s{,])(?:(?:~|null|Null|NULL)[ \t]*)?:(?:[\s,}\]]|$)|[\]}][ \t]*:(?:[\s,}\]]|$)|(?:^|[\s{,[])\?(?:\s|$)/m;

/**
 * `invalid YAML at line L, column C: …` for the first key of `doc` that is null, a collection or
 * the same as an earlier key of its map, or alias in its own anchor; or undefined.
 */
export function documentShapeProblem(doc: Document, lines: LineCounter): string | undefined {
  let problem: string | undefined;
  // An alias names the last node before it with that anchor (the visit is in document order).
  const anchors = new Map<string, Node>();
  const noteAnchor = (_: unknown, node: Node) => {
    if (node.anchor) anchors.set(node.anchor, node);
  };
  visit(doc, {
    Map(_, map) {
      noteAnchor(_, map);
      const duplicate = firstDuplicateKey(map);
      if (duplicate === undefined) return undefined;
      const at = lines.linePos(duplicate);
      problem = `invalid YAML at line ${at.line}, column ${at.col}: Map keys must be unique`;
      return visit.BREAK;
    },
    Seq: noteAnchor,
    Scalar: noteAnchor,
    Alias(_, alias, path) {
      const target = anchors.get(alias.source);
      if (target === undefined || !path.includes(target)) return undefined;
      const at = lines.linePos(alias.range?.[0] ?? 0);
      problem = `invalid YAML at line ${at.line}, column ${at.col}: alias *${alias.source} is inside the value of its own anchor, which would contain itself`;
      return visit.BREAK;
    },
    Pair(_, pair) {
      const key = pair.key as unknown;
      const empty = key === null || (isScalar(key) && key.value === null);
      if (!empty && !isCollection(key)) return undefined;
      const offset = (isScalar(key) || isCollection(key)) && key.range ? key.range[0] : (isCollection(pair.value) || isScalar(pair.value)) && pair.value.range ? pair.value.range[0] : 0;
      const at = lines.linePos(offset);
      const what = empty ? 'a null or empty key (quote it, "null", if that is the name)' : 'a list or map as a key';
      problem = `invalid YAML at line ${at.line}, column ${at.col}: ${what}: map keys must be text`;
      return visit.BREAK;
    },
  });
  return problem;
}

/**
 * Where the first key equal to an earlier one of `map` starts. Keys are compared as the text they
 * become in the parsed object (`1` and `"1"` are one key there, as js-yaml's fast path says too);
 * keys that are not text are refused by the Pair check.
 */
function firstDuplicateKey(map: YAMLMap): number | undefined {
  const seen = new Set<string>();
  for (const pair of map.items) {
    const key = pair.key as unknown;
    if (!isScalar(key) || key.value === null || typeof key.value === 'object') continue;
    const text = String(key.value);
    if (seen.has(text)) return key.range?.[0] ?? 0;
    seen.add(text);
  }
  return undefined;
}
