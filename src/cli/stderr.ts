// What the CLI writes to stderr: a message may quote a file's name, a stored error or a peer's
// bytes, so it goes out without a key, a token or a URL's password (scrubSecretText), and without
// a character that acts on the terminal (printable).
import { printable } from '../api/quote.js';
import { scrubSecretText } from '../api/secret-text.js';

/** Writes `s` to stderr, scrubbed and escaped, ending it with a line break if it has none. */
export function writeStderr(s: string): void {
  process.stderr.write(printable(scrubSecretText(s.endsWith('\n') ? s : `${s}\n`)));
}
