// Parsed documents whose strings are their own. A YAML parser returns slices of the whole file's
// text, and V8 keeps all of that text alive for as long as anything holds one slice: a 1 MB file
// edited 40 times kept 40 copies of itself alive through one cached SPIFFE template (43 MB), and
// every connected proxy's Dataplane pinned the version of its file it was read from.

/** Below this length V8 copies a substring instead of slicing it (SlicedString::kMinLength). */
const MIN_SLICE_LENGTH = 13;

/** Replaces every string in a freshly parsed value (objects and lists, in place) by a copy of its own. */
export function detachStrings(value: unknown): unknown {
  if (typeof value === 'string') return ownCopy(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = detachStrings(value[i]);
  } else if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    // Own keys only; an own "__proto__" key (JSON.parse makes one) is assigned as the own property it is.
    for (const k of Object.keys(obj)) obj[k] = detachStrings(obj[k]);
  }
  return value;
}

/** A flat copy: UTF-16 code units, so even a lone surrogate survives unchanged. */
function ownCopy(s: string): string {
  return s.length < MIN_SLICE_LENGTH ? s : Buffer.from(s, 'utf16le').toString('utf16le');
}
