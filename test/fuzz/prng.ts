// A seeded PRNG for reproducible fuzzing: the same FUZZ_SEED replays the same cases.

export interface Rng {
  /** [0, 1) */
  next(): number;
  int(maxExclusive: number): number;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Buffer;
  chance(p: number): boolean;
}

/** mulberry32: small, fast, good enough to drive a fuzzer. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (items) => items[int(items.length)]!,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    chance: (p) => next() < p,
  };
}

/** FUZZ_SEED (decimal) or a fresh one; FUZZ_CASES or the default. */
export function fuzzSettings(defaultCases: number): { seed: number; cases: number } {
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
  const cases = process.env.FUZZ_CASES ? Number(process.env.FUZZ_CASES) : defaultCases;
  if (!Number.isInteger(seed) || !Number.isInteger(cases) || cases <= 0) throw new Error('FUZZ_SEED and FUZZ_CASES must be integers');
  return { seed, cases };
}
