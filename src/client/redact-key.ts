// What the --on-update command prints is logged; a command that prints key.pem (or part of it:
// `tail -n +2 key.pem`, a debug `set -x` of a script reading it) must not put the private key in
// the agent's log. The token is scrubbed by fetch.ts; a PEM block with its BEGIN line by
// scrubSecretText. This removes the body of the current key: each of its base64 lines, and the body
// run together (a command may strip the newlines).
const REDACTED = '<redacted key>';
/** Shorter lines (a PEM body's last line can be a few characters) are too likely to match other text. */
const MIN_LINE = 8;

export function keyBodyRedactor(keyPem: string): (text: string) => string {
  const lines = keyPem
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length >= MIN_LINE && !l.startsWith('-----'));
  const joined = lines.join('');
  // Longest first, so the run-together body is replaced whole before its lines are.
  const needles = [joined, ...lines].filter((n, i, all) => n.length > 0 && all.indexOf(n) === i).sort((x, y) => y.length - x.length);
  return (text) => needles.reduce((t, n) => t.split(n).join(REDACTED), text);
}
