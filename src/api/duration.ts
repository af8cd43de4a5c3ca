// Go `time.ParseDuration` syntax (what Kuma's metav1.Duration fields accept), in milliseconds.

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign
  'μs': 1e-3, // U+03BC greek mu
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const TERM = /(\d*)(?:\.(\d*))?([a-zµμ]+)/y;

/**
 * Go's longest duration, int64 nanoseconds (2562047h47m16.854775807s), in milliseconds. Go refuses
 * anything longer ("invalid duration"); accepted here it reached past what a Date can hold (or was
 * Infinity), and a CA history or retired-trust time computed from it threw on every computation.
 */
export const MAX_DURATION_MS = 9_223_372_036_854.775; // (the last 807 ns are past a double's precision)

/**
 * Parses a Go duration such as `24h`, `1h30m`, `90s`, `500ms`, `-2s` or `0`.
 * Returns milliseconds (possibly fractional or negative), or undefined when the text is not a
 * duration or is longer than Go's (MAX_DURATION_MS; see durationOverflows).
 */
export function parseDuration(text: string): number | undefined {
  const ms = parseUnbounded(text);
  return ms !== undefined && Math.abs(ms) <= MAX_DURATION_MS ? ms : undefined;
}

/** Whether `text` is a duration in Go's syntax that is longer than Go can hold (for a message saying so). */
export function durationOverflows(text: string): boolean {
  const ms = parseUnbounded(text);
  return ms !== undefined && !(Math.abs(ms) <= MAX_DURATION_MS);
}

function parseUnbounded(text: string): number | undefined {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < s.length) {
    const start = TERM.lastIndex;
    const m = TERM.exec(s);
    if (!m || m.index !== start) return undefined;
    const [, whole = '', frac, unit = ''] = m;
    // Go requires a digit on at least one side of the dot.
    if (whole === '' && (frac === undefined || frac === '')) return undefined;
    const factor = UNIT_MS[unit];
    if (factor === undefined) return undefined;
    total += Number(`${whole || '0'}.${frac ?? '0'}`) * factor;
  }
  return sign * total;
}

/** Formats milliseconds as a Go-style duration (`1h30m0s`, `500ms`), for display. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1000) return `${sign}${rest}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  if (h > 0) return `${sign}${h}h${m}m${s}s`;
  if (m > 0) return `${sign}${m}m${s}s`;
  return `${sign}${s}s`;
}
