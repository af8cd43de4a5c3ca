// What is wrong with the text given to `token revoke`, said without printing it: "malformed token"
// alone left an operator revoking a leaked token in a hurry guessing at a wrapped line or quotes.

/** Why `t` (trimmed, scheme removed) cannot be a mesh-sds token as written, or undefined. */
export function tokenTextProblem(t: string): string | undefined {
  const where = (i: number) => `at character ${i + 1} of ${t.length}`;
  if (/^authorization:/i.test(t)) return 'give the token alone, not the "authorization:" header';
  const space = t.search(/\s/);
  if (space >= 0) return `the token holds whitespace ${where(space)} (a line break where a terminal wrapped it?): give it as one line`;
  if (/^["'`]|["'`]$/.test(t)) return 'the token is quoted: give it without the quotes';
  const parts = t.split('.').length;
  if (parts !== 3) return `a token is three base64url parts joined by '.', this text has ${parts} (cut short or joined to something?)`;
  const other = t.search(/[^A-Za-z0-9_.-]/);
  if (other >= 0) return `the token holds a character that base64url has not, ${where(other)}`;
  return undefined;
}
