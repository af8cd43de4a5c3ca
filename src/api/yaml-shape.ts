// What a YAML document may not be, seen on its syntax tree before it becomes a value.
//
// Map keys that are not text. js-yaml (the fast path) and the `yaml` package turn a null key or a
// list/map key into different strings (`null` vs ``, `a,b` vs `[ a, b ]`), so one file would mean
// two things depending on the parser that read it; neither is a name anything means. Refused.
//
// A value that contains itself (an alias inside its own anchor): infinite once expanded, refused as
// Kubernetes' YAML reader (go-yaml: "anchor value contains itself") refuses it.
import { isCollection, isScalar, visit, type Document, type LineCounter } from 'yaml';

/** Text where a key may be null (`~:`, `null:`, `: x`), a list or map (`[a]: x`), or explicit (`? x`): read by the full parser. */
export const MAYBE_NON_TEXT_KEY = /(?:^|[\s{,])(?:~|null|Null|NULL)?[ \t]*:(?:[\s,}\]]|$)|[\]}][ \t]*:(?:[\s,}\]]|$)|(?:^|[\s{,[])\?(?:\s|$)/m;

/** `invalid YAML at line L, column C: …` for the first key of `doc` that is null or a collection, or alias in its own anchor; or undefined. */
export function documentShapeProblem(doc: Document, lines: LineCounter): string | undefined {
  let problem: string | undefined;
  visit(doc, {
    Alias(_, alias, path) {
      const target = alias.resolve(doc);
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
