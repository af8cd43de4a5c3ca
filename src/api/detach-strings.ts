// Parsed documents whose strings are their own. A YAML parser returns slices of the whole file's
// text, and V8 keeps all of that text alive for as long as anything holds one slice: a 1 MB file
// edited 40 times kept 40 copies of itself alive through one cached SPIFFE template (43 MB), and
// every connected proxy's Dataplane pinned the version of its file it was read from.

/** Below this length V8 copies a substring instead of slicing it (SlicedString::kMinLength). */
const MIN_SLICE_LENGTH = 13;

/**
 * Replaces every string in a freshly parsed value (objects and lists, in place) by a copy of its
 * own. Iterative, and each object once: a YAML alias can make a value contain itself, and JSON can
 * nest deeper than the call stack (fields that validation ignores are walked too).
 */
export function detachStrings(value: unknown): unknown {
  if (typeof value === 'string') return ownCopy(value);
  if (value === null || typeof value !== 'object') return value;
  const seen = new WeakSet<object>([value]);
  const stack: object[] = [value];
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown>;
    // Own keys only; an own "__proto__" key (JSON.parse makes one) is assigned as the own property it is.
    for (const k of Array.isArray(node) ? node.keys() : Object.keys(node)) {
      const v = node[k as string];
      if (typeof v === 'string') node[k as string] = ownCopy(v);
      else if (v !== null && typeof v === 'object' && !seen.has(v)) {
        seen.add(v);
        stack.push(v);
      }
    }
  }
  return value;
}

/** A flat copy: UTF-16 code units, so even a lone surrogate survives unchanged. */
function ownCopy(s: string): string {
  return s.length < MIN_SLICE_LENGTH ? s : Buffer.from(s, 'utf16le').toString('utf16le');
}
