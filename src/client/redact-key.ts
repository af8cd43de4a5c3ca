// What the --on-update command prints is logged; a command that prints key.pem (or part of it:
// `tail -n +2 key.pem`, a debug `set -x` of a script reading it) must not put the private key in
// the agent's log. The token is scrubbed by fetch.ts; a PEM block with its BEGIN line by
// scrubSecretText. This removes the body of the current key: each of its base64 lines, and the body
// run together (a command may strip the newlines); and its secret numbers printed as hex (`openssl
// pkey -text` prints the EC scalar as `priv:` then colon-separated lines, `xxd -p key.der` the DER).
import { createPrivateKey } from 'node:crypto';

const REDACTED = '<redacted key>';
/** Shorter lines (a PEM body's last line can be a few characters) are too likely to match other text. */
const MIN_LINE = 8;
/** Bytes of a secret number a hex run must share with it to be taken for it (shorter runs are any hex). */
const MIN_HEX_BYTES = 8;
/**
 * Hex runs, with or without separators between bytes (`4c:21:58`, `4c 21 58`, `4c2158`), across
 * line breaks and indents (a dump's lines: bytes of a secret split by a line end are one run).
 */
const HEX_RUN = /[0-9a-fA-F]{2}(?:[:\s]{0,8}[0-9a-fA-F]{2}){7,}/g;
/**
 * `openssl pkey -text` sections of secret numbers: the header, then indented hex lines. A section
 * is removed whole, its last line (a few bytes, under MIN_HEX_BYTES) included.
 */
const SECRET_SECTION = /^([ \t]*)(priv|privateExponent|prime1|prime2|exponent1|exponent2|coefficient):[ \t]*\r?\n(?:\1[ \t]+[0-9a-fA-F:]+[ \t]*(?:\r?\n|$))+/gm;

export function keyBodyRedactor(keyPem: string): (text: string) => string {
  const lines = keyPem
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length >= MIN_LINE && !l.startsWith('-----'));
  const joined = lines.join('');
  // Longest first, so the run-together body is replaced whole before its lines are.
  const needles = [joined, ...lines].filter((n, i, all) => n.length > 0 && all.indexOf(n) === i).sort((x, y) => y.length - x.length);
  const windows = secretHexWindows(keyPem);
  return (text) => {
    const bodyless = needles.reduce((t, n) => t.split(n).join(REDACTED), text);
    const sectionless = bodyless.replace(SECRET_SECTION, (_, indent: string, name: string) => `${indent}${name}: ${REDACTED}\n`);
    if (windows.size === 0) return sectionless;
    // Dumps first: a run redacted inside a dump line would hide the dump the line belongs to.
    return redactDumps(sectionless, windows).replace(HEX_RUN, (run) => (sharesSecret(run, windows) ? REDACTED : run));
  };
}

/** Hex dump lines hold at least this many byte or word columns (`xxd`, `hexdump`, `od -x`). */
const DUMP_COLUMNS = 4;

/**
 * Hex dumps with offsets and ASCII gutters (`xxd`, `hexdump -C`) break a run at every line, and
 * `hexdump` / `od -x` print 16-bit words with their bytes swapped: when the dump lines, their
 * columns read in order or word-swapped and across lines, share a secret window, every dump line
 * goes (a line's last few bytes of the key are no less secret than the rest).
 */
function redactDumps(text: string, windows: Set<string>): string {
  const lines = text.split('\n');
  const columns = lines.map((l) => l.split(/[\s:|]+/).filter((t) => /^(?:[0-9a-fA-F]{2}|[0-9a-fA-F]{4})$/.test(t)));
  const dumpLine = (i: number) => columns[i]!.length >= DUMP_COLUMNS;
  let straight = '';
  let swapped = '';
  let found = false;
  for (let i = 0; i < lines.length && !found; i++) {
    if (!dumpLine(i)) {
      found = sharesSecret(straight, windows) || sharesSecret(swapped, windows);
      straight = swapped = '';
      continue;
    }
    straight += columns[i]!.join('');
    swapped += columns[i]!.map((t) => (t.length === 4 ? t.slice(2) + t.slice(0, 2) : t)).join('');
  }
  found ||= sharesSecret(straight, windows) || sharesSecret(swapped, windows);
  return found ? lines.map((l, i) => (dumpLine(i) ? REDACTED : l)).join('\n') : text;
}

/**
 * Every MIN_HEX_BYTES-byte window of the secret numbers of each private key in `pems`, as hex: a
 * hex run holding one of them is (part of) a secret, whatever it was cut or wrapped at.
 */
function secretHexWindows(pems: string): Set<string> {
  const windows = new Set<string>();
  for (const block of pems.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g) ?? []) {
    let jwk: Record<string, unknown>;
    try {
      jwk = createPrivateKey(block).export({ format: 'jwk' }) as Record<string, unknown>;
    } catch {
      continue; // not a key node can read: its body lines are still redacted
    }
    for (const part of ['d', 'p', 'q', 'dp', 'dq', 'qi']) {
      const v = jwk[part];
      if (typeof v !== 'string') continue;
      const hex = Buffer.from(v, 'base64url').toString('hex');
      for (let i = 0; i + MIN_HEX_BYTES * 2 <= hex.length; i += 2) windows.add(hex.slice(i, i + MIN_HEX_BYTES * 2));
    }
  }
  return windows;
}

function sharesSecret(run: string, windows: Set<string>): boolean {
  const hex = run.replace(/[:\s]/g, '').toLowerCase();
  for (let i = 0; i + MIN_HEX_BYTES * 2 <= hex.length; i += 2) if (windows.has(hex.slice(i, i + MIN_HEX_BYTES * 2))) return true;
  return false;
}
