/**
 * Joins `parts` into one flat string, for keys kept for days in Maps and objects. A template
 * literal builds a cons string instead (a 32-byte node pointing at its parts), and a Map keeps
 * that node as its key even after hashing flattened it: with 10,000 proxies and several keys
 * each, that is megabytes of string nodes and slower GCs. `Array.prototype.join` writes one flat
 * string.
 */
export function flatKey(...parts: string[]): string {
  return parts.join('');
}
