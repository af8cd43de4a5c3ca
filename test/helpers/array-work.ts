// How much list work a piece of code does: the lengths of the arrays it calls one Array method on,
// summed. Tests of algorithmic cost assert on this count instead of on time.

/** Runs `run` with `Array.prototype[method]` counting the length of each array it is called on; returns the sum. */
export function arrayWork(method: 'includes' | 'sort', run: () => void): number {
  const original = Array.prototype[method] as (...args: unknown[]) => unknown;
  let work = 0;
  (Array.prototype as unknown as Record<string, unknown>)[method] = function (this: unknown[], ...args: unknown[]) {
    work += this.length;
    return original.apply(this, args);
  };
  try {
    run();
  } finally {
    (Array.prototype as unknown as Record<string, unknown>)[method] = original;
  }
  return work;
}
