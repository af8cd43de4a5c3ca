// `get -o yaml|json` output ends up in terminals and tickets: a private key is never printed,
// wherever it sits (a CA key pasted into the certificate field, a combined cert+key PEM).

/** A PEM private key block, or the rest of the text from its header when it has no END line. */
const PRIVATE_KEY_BLOCK = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;

/** Replaces every private key block in every string of `value` (objects and lists, in place) by `<redacted>`. */
export function redactPrivateKeys<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    const record = node as Record<string, unknown>;
    for (const k of Object.keys(record)) {
      const v = record[k];
      if (typeof v === 'string') {
        if (v.includes('PRIVATE KEY-----')) record[k] = v.replace(PRIVATE_KEY_BLOCK, '<redacted>');
      } else if (v !== null && typeof v === 'object') stack.push(v);
    }
  }
  return value;
}
