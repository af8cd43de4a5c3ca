// How large a parsed YAML document is once its aliases are expanded. The parser shares one value
// per anchor, but everything downstream (own string copies, JSON in Postgres, a file written by
// apply, every hash) copies each occurrence: a 4 MB file of one anchored string and 999 aliases
// cost the server 8 GB.

/**
 * Adds the expanded size of `value` to `used`, counting every occurrence of a shared value, and
 * stops as soon as the sum passes `budget` (a value that contains itself never ends otherwise).
 * Strings count their UTF-16 length (a lower bound of their UTF-8 bytes) and every key or item one
 * more, so a document without aliases never counts more than its own text.
 */
export function addExpandedSize(value: unknown, used: number, budget: number): number {
  let total = used;
  const stack: unknown[] = [value];
  while (stack.length > 0 && total <= budget) {
    const v = stack.pop();
    if (typeof v === 'string') total += v.length + 1;
    else if (Array.isArray(v)) {
      total += 1;
      for (const item of v) stack.push(item);
    } else if (v !== null && typeof v === 'object') {
      total += 1;
      for (const [k, item] of Object.entries(v)) {
        total += k.length + 1;
        stack.push(item);
      }
    } else total += 1;
  }
  return total;
}
