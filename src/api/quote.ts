// A name someone gave (a CLI argument, a proxy's node id), quoted for a message: a terminal shows it
// as written and no character of it acts. JSON.stringify escapes C0 controls, `"` and `\`; DEL, the
// C1 controls (U+009B is CSI on 8-bit terminals), the line and paragraph separators and the bidi
// controls (which reorder what follows on screen) are escaped here too.

/** Characters JSON.stringify leaves raw that a terminal or a viewer acts on. */
const ACTING = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** A character as its `\\uXXXX` escape. */
const escaped = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** Names in messages are cut past this many characters: enough to recognise one, never a whole request. */
export const QUOTED_CHARS = 200;

/** `text` quoted as a JSON string with every acting character escaped, cut past `max` characters with a note of how much was left out. */
export function quoted(text: string, max = QUOTED_CHARS): string {
  const shown = text.length <= max ? text : text.slice(0, max);
  const q = JSON.stringify(shown).replace(ACTING, escaped);
  return text.length <= max ? q : `${q}... (${text.length - max} more characters)`;
}

/** Every control character a terminal acts on (C0 but the line break and the tab, ESC among them; DEL; C1), and the characters of ACTING. */
const CONTROL = new RegExp(`[\\u0000-\\u0008\\u000b-\\u001f${ACTING.source.slice(1, -1)}]`, 'g');

/**
 * Text from someone else (a server's status details, a command's output) made safe to print as
 * lines: each acting character becomes its `\uXXXX` escape, so an escape sequence cannot clear the
 * screen or set the title; line breaks and tabs stay. Scrub secrets first: this does not remove them.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, escaped);
}

/**
 * One line of `printable` text: a line break in it is escaped too, so a name someone gave (a
 * database row's key columns, a file name) cannot pass for a line of its own.
 */
export function printableLine(text: string): string {
  return printable(text).replace(/\n/g, '\\n');
}
