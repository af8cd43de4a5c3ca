// Text that may carry a secret, made safe for an error message or a log line. A file-path flag set
// from the wrong Kubernetes Secret key (MESH_SDS_TLS_KEY holding the key itself, not its path)
// must not put that secret on stderr: a value that does not look like a path is described, never
// echoed, and node's fs errors (which quote the path) are reworded without it. Low level on
// purpose: the store, the server and the CLI all use it.

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export const REDACTED = '[REDACTED]';

/** Longer values are not echoed: no file path a person types is this long, a PEM key is. */
const MAX_ECHOED_CHARS = 256;

const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
const JWT = /^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const HEX_KEY = /^[0-9a-fA-F]{32,}$/;
const BASE64_RUN = /^[A-Za-z0-9+/_-]{20,}={0,2}$/;

/** Raw key bytes in an environment variable: control characters, or bytes that were no UTF-8 (U+FFFD). */
function hasControlOrNonText(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0xfffd) return true;
  }
  return false;
}

const LOWER = 0;
const UPPER = 1;
const DIGIT = 2;

/**
 * Random base64 of 20 characters or more: upper case, lower case and digits, changing class at
 * about 6 of 10 characters. A path made of the same characters (no dot) is words: it changes class
 * far less often, even with a random temp-dir suffix (`/tmp/mesh-sds-AbC123/state`: 2 in 10). At 3
 * in 10 one random 32-byte key in 35,000 is missed (at 3.5 in 10 it was one in 3,000).
 */
export function looksLikeBase64Secret(v: string): boolean {
  if (!BASE64_RUN.test(v)) return false;
  const seen = [false, false, false];
  let previous = -1;
  let pairs = 0;
  let changes = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    const cls = c >= 97 && c <= 122 ? LOWER : c >= 65 && c <= 90 ? UPPER : c >= 48 && c <= 57 ? DIGIT : -1;
    if (cls < 0) continue; // + / _ - = separate words in a path
    seen[cls] = true;
    if (previous >= 0) {
      pairs++;
      if (cls !== previous) changes++;
    }
    previous = cls;
  }
  if (!seen[LOWER] || !seen[UPPER]) return false;
  // Base64 padding ends no path (a state key is 44 such characters).
  if (v.endsWith('=') && v.length % 4 === 0) return true;
  // One 32-byte key in 2,000 has no digit: a long value needs none.
  return (seen[DIGIT]! || pairs >= 30) && changes >= 0.3 * pairs;
}

/**
 * How a value that must not be echoed looks ("1,704 characters, looks like a PEM private key"), or
 * undefined for one that can be shown as it is. `maxEchoed`: longer values are described too.
 */
export function describeSecretLike(value: string, maxEchoed = MAX_ECHOED_CHARS): string | undefined {
  const t = value.trim();
  let looks: string | undefined;
  if (PEM_PRIVATE_KEY.test(t)) looks = 'looks like a PEM private key';
  else if (t.includes('-----BEGIN ')) looks = 'looks like a PEM block';
  else if (/^bearer\s/i.test(t)) looks = 'looks like an authorization header';
  else if (JWT.test(t)) looks = 'looks like a JWT';
  else if (HEX_KEY.test(t)) looks = 'looks like a hex-encoded key';
  else if (looksLikeBase64Secret(t)) looks = 'looks like a base64 key or token';
  else if (/[\r\n]/.test(value)) looks = `spans ${value.split(/\r\n|\r|\n/).length} lines`;
  else if (hasControlOrNonText(value)) looks = 'holds control characters or bytes that are not text';
  else if (value.length > maxEchoed) looks = 'too long to be shown';
  if (looks === undefined) return undefined;
  return `${value.length.toLocaleString('en-US')} characters, ${looks}`;
}

/** The value as a message may quote it (JSON-quoted), or a description of it when it looks secret. */
export function valueForMessage(value: string, maxEchoed = MAX_ECHOED_CHARS): string {
  const looks = describeSecretLike(value, maxEchoed);
  return looks === undefined ? JSON.stringify(withoutUrlUserinfo(value)) : `<not shown: ${looks}>`;
}

/**
 * A value judged secret only by its letters or length (no PEM header, JWT, bearer prefix, line
 * break or control character) is still shown when it is a path into a folder that exists: a real
 * path's folder usually does (`/mnt/Secrets/ProdEU1/CaKeyV2`), a key's "folder" does not (the root
 * folder is no evidence: a key may begin with its "/").
 */
function plainlyAPath(value: string): boolean {
  if (!value.includes('/') || /[\r\n]/.test(value) || hasControlOrNonText(value)) return false;
  if (PEM_PRIVATE_KEY.test(value) || value.includes('-----BEGIN ') || /^\s*bearer\s/i.test(value) || JWT.test(value.trim())) return false;
  // The root folder always exists: a base64 key starting with its one "/" (1 in 64) named it.
  const parent = dirname(resolve(value));
  return parent !== resolve('.') && parent !== dirname(parent) && existsSync(parent);
}

/** How `value` must be described instead of shown, or undefined when it can be shown. */
function describedPath(value: string): string | undefined {
  const looks = describeSecretLike(value);
  return looks === undefined || plainlyAPath(value) ? undefined : looks;
}

/** A file path as a message names it: itself, or a description when it is no path but a secret. */
export function pathForMessage(path: string): string {
  const looks = describedPath(path);
  return looks === undefined ? withoutUrlUserinfo(path) : `<not a file path: ${looks}; not shown>`;
}

/**
 * Why a file could not be read, without node's message: "ENOENT: no such file or directory, open
 * '<path>'" quotes the path, which may be a secret given by mistake.
 */
export function fsErrorReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (!code) return 'cannot be read';
  const message = typeof e?.message === 'string' ? e.message : '';
  if (!message.startsWith(`${code}: `)) return code;
  const comma = message.indexOf(', ', code.length);
  const strerror = message.slice(code.length + 2, comma < 0 ? undefined : comma);
  return strerror && strerror.length <= 80 ? `${strerror} (${code})` : code;
}

/**
 * The message for a file that `flag` names and that could not be read: "cannot read --token-file
 * /run/token: no such file or directory (ENOENT)", or, when the value looks like a secret, "cannot
 * read --tls-key: no such file or directory (ENOENT); its value is not shown (1,704 characters,
 * looks like a PEM private key)".
 */
export function fileReadMessage(flag: string, path: string, err: unknown, reason = fsErrorReason(err)): string {
  const looks = describedPath(path);
  if (looks !== undefined) return `cannot read ${flag}: ${reason}; its value is not shown (${looks})`;
  return `cannot read ${flag} ${withoutUrlUserinfo(path)}: ${reason}`;
}

/**
 * A file a flag names could not be read, or was refused (`reason`: "is a FIFO, not a regular
 * file"). Its message is fileReadMessage's; node's error is not kept as the cause (its message
 * quotes the path), only its code.
 */
export class FlagFileError extends Error {
  override readonly name = 'FlagFileError';
  readonly code: string | undefined;

  constructor(flag: string, path: string, err: unknown, reason?: string) {
    super(fileReadMessage(flag, path, err, reason));
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

/** `postgres://user:pw@host/db` → `postgres://[REDACTED]@host/db`, anywhere in a text. */
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'@]*(?:@[^\s/?#"'@]*)*@/iy;
const URL_START = /\b[a-z]/gi;
const SCHEME_RUN = /[a-z0-9+.-]*/iy;

export function withoutUrlUserinfo(text: string): string {
  if (!text.includes('@')) return text;
  return replaceLinear(text, URL_START, SCHEME_RUN, (at) => {
    URL_USERINFO.lastIndex = at;
    const m = URL_USERINFO.exec(text);
    return m ? { end: URL_USERINFO.lastIndex, by: `${m[1]}${REDACTED}@` } : undefined;
  });
}

/**
 * `text.replace(/\b<start><run>…/g, …)` in linear time. V8 retries a failed match at the next
 * character, and a pattern starting with a run (`\beyJ[A-Za-z0-9_-]{4,}\.`, a URL scheme) scanned
 * that run again from each word boundary in it: 40 KB of `eyJ-` in a label value took 1 s to log,
 * 400 KB minutes. Every later start in one run is followed by the same text after the run, so once a
 * start fails the rest of its run (`run`, sticky) is skipped. `match` returns where a match at `at`
 * ends and what replaces it, or undefined.
 */
function replaceLinear(text: string, start: RegExp, run: RegExp, match: (at: number) => { end: number; by: string } | undefined): string {
  let out = '';
  let copied = 0;
  start.lastIndex = 0;
  for (let s = start.exec(text); s; s = start.exec(text)) {
    const m = match(s.index);
    if (m) {
      out += text.slice(copied, s.index) + m.by;
      copied = start.lastIndex = m.end;
    } else {
      run.lastIndex = s.index;
      run.test(text);
      start.lastIndex = Math.max(run.lastIndex, s.index + 1);
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** A URL (e.g. --store) as a message names it: without user and password, or described if it is no URL but a secret. */
export function urlForMessage(url: string): string {
  const looks = describeSecretLike(url);
  return looks === undefined ? withoutUrlUserinfo(url) : `<not shown: ${looks}>`;
}

// What scrubSecretText removes. Each stops at a double quote: in a JSON log line that ends the
// string value, and a replacement must never swallow the JSON around it.
const PEM_PRIVATE_KEY_BLOCK = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[^"\\]|\\.)*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|(?=")|$)/g;
const JWT_START = /\beyJ/g;
const JWT_REST = /[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/y;
const BASE64URL_RUN = /[A-Za-z0-9_-]*/y;
/** Each JWT (`\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`) → REDACTED, in linear time. */
const withoutJwts = (text: string): string =>
  replaceLinear(text, JWT_START, BASE64URL_RUN, (at) => {
    JWT_REST.lastIndex = at + 3;
    return JWT_REST.test(text) ? { end: JWT_REST.lastIndex, by: REDACTED } : undefined;
  });
/** A bearer credential (RFC 6750 b64token) of 8 characters or more; lower-case prose ("bearer authentication") is left alone. */
const BEARER_CREDENTIAL = /\b([Bb]earer|BEARER)(\s+)(?![a-z]+\b)[A-Za-z0-9._~+/-]{8,}=*/g;
/**
 * A credential in a URL's query: `/debug/proxies?token=…`, `?access_token=`, `&password=`,
 * `&client_secret=`, and a signed URL's signature (`X-Amz-Signature=`, `X-Goog-Signature=`, a SAS
 * `sig=`), which grants what the URL names to whoever holds it (a federation bundle endpoint may be one).
 */
const QUERY_CREDENTIAL = /([?&](?:[A-Za-z0-9_-]*(?:[Tt]oken|[Pp]assword|[Ss]ecret|[Ss]ignature|SIGNATURE)|[Ss]ig)=)[^&\s"'#]+/g;
/**
 * Cheap pre-check: most text holds none of these and is returned without running the patterns. Its
 * alternatives are literals of three characters or more, which V8 finds without trying every
 * position (a one-character or case-insensitive alternative makes every log line cost twice as much).
 */
const MAY_HOLD_SECRET = /PRIVATE KEY|eyJ|earer|EARER|:\/\/[^\s"/?#]*@|oken=|assword=|ecret=|ignature=|IGNATURE=|[?&][Ss]ig=/;

/**
 * Removes credentials from free text (a log line, an error message): PEM private key blocks, JWTs,
 * bearer credentials, and a URL's user and password and credential query parameters. Text without
 * any is returned as it is.
 */
export function scrubSecretText(text: string): string {
  // Nothing it removes is shorter than `a://b@`; the logger's short fields skip the pattern test.
  if (text.length < 6 || !MAY_HOLD_SECRET.test(text)) return text;
  return withoutUrlUserinfo(
    withoutJwts(text.replace(PEM_PRIVATE_KEY_BLOCK, REDACTED))
      .replace(BEARER_CREDENTIAL, `$1$2${REDACTED}`)
      .replace(QUERY_CREDENTIAL, `$1${REDACTED}`),
  );
}
