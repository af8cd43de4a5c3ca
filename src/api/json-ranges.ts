// Where the values of a JSON text are, without parsing it again: the text of each list item a
// JSON resource file holds (the Postgres store's `source` column), each object's keys (the equal-key
// check of parse.ts). One pass; the text must already be valid JSON.

/** The index just past the JSON value starting at `i` (after whitespace). */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return jsonStringEnd(text, i);
  if (c === 0x5b || c === 0x7b) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === 0x22) j = jsonStringEnd(text, j) - 1;
      else if (d === 0x5b || d === 0x7b) depth++;
      else if ((d === 0x5d || d === 0x7d) && --depth === 0) return j + 1;
    }
    return text.length;
  }
  let j = i;
  while (j < text.length && !/[\s,\]}]/.test(text[j]!)) j++;
  return j;
}

/** The index just past the string whose opening quote is at `i`. */
export function jsonStringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (d === 0x5c) j++;
    else if (d === 0x22) return j + 1;
  }
  return text.length;
}

const skipBlank = (text: string, i: number): number => {
  while (i < text.length && /\s/.test(text[i]!)) i++;
  return i;
};

/** [start, end) of each element of the array whose `[` is at `open`. */
export function jsonArrayItemRanges(text: string, open: number): [number, number][] {
  const out: [number, number][] = [];
  let i = skipBlank(text, open + 1);
  while (i < text.length && text[i] !== ']') {
    const end = valueEnd(text, i);
    out.push([i, end]);
    i = skipBlank(text, end);
    if (text[i] === ',') i = skipBlank(text, i + 1);
  }
  return out;
}

/** Where the value of `key` in the object whose `{` is at `open` starts (the last such key), or undefined. */
export function jsonMemberStart(text: string, open: number, key: string): number | undefined {
  let found: number | undefined;
  let i = skipBlank(text, open + 1);
  while (i < text.length && text[i] === '"') {
    const keyEnd = jsonStringEnd(text, i);
    const name = jsonStringValue(text, i, keyEnd);
    i = skipBlank(text, keyEnd);
    i = skipBlank(text, i + 1); // past ':'
    if (name === key) found = i;
    i = skipBlank(text, valueEnd(text, i));
    if (text[i] === ',') i = skipBlank(text, i + 1);
  }
  return found;
}

/** The value of the string from its opening quote at `start` to just past its closing one (escapes decoded). */
export function jsonStringValue(text: string, start: number, end: number): string {
  const raw = text.slice(start, end);
  return raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
}
