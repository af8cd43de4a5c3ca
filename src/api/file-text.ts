// Bytes of a resource file → text, refusing what no resource file can be: too large, or not UTF-8.
// Shared by `validate`, `apply -f` and the directory store so all three say the same thing.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { ResourceError } from './types.js';
import { fsErrorReason } from './secret-text.js';

export const DEFAULT_MAX_FILE_SIZE = 4 * 1024 * 1024;

/** Offset of the first byte that does not start a well-formed UTF-8 sequence (or a truncated one). */
export function invalidUtf8Offset(buf: Uint8Array): number | undefined {
  let i = 0;
  while (i < buf.length) {
    const b = buf[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      if (b === 0xe0) lo = 0xa0; // overlong
      if (b === 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      if (b === 0xf0) lo = 0x90; // overlong
      if (b === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= n; k++) {
      const c = buf[i + k];
      if (c === undefined) return i;
      if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return undefined;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const utf8 = (buf: Uint8Array): string => decoder.decode(buf);

export type FileText = { text: string } | { error: ResourceError };

const fileError = (file: string, message: string): { error: ResourceError } => ({ error: { file, document: 0, path: '', message } });

/** `setBy` names what sets the limit (the resource files' flag unless said otherwise). */
export function sizeLimitMessage(size: number, maxBytes: number, setBy = ' (--max-file-size)'): string {
  return `file is ${size} bytes, larger than the limit of ${maxBytes} bytes${setBy}: not read`;
}

/**
 * Decodes file bytes as UTF-8, naming the byte offset of the first invalid sequence. `decode` is
 * the decoder (a test passes one that fails as V8 does on a too-long string).
 */
export function decodeResourceText(buf: Uint8Array, file: string, maxBytes = DEFAULT_MAX_FILE_SIZE, decode = utf8): FileText {
  if (buf.length > maxBytes) return fileError(file, sizeLimitMessage(buf.length, maxBytes));
  // UTF-16 (a Windows editor's "Unicode"): a byte-order mark, or ASCII text with a NUL every other byte.
  const bom = (buf[0] === 0xff && buf[1] === 0xfe) || (buf[0] === 0xfe && buf[1] === 0xff);
  if (bom || (buf.length >= 4 && (buf[0] === 0) !== (buf[1] === 0) && (buf[2] === 0) !== (buf[3] === 0))) {
    return fileError(file, 'file is UTF-16 text, not UTF-8: save it as UTF-8');
  }
  try {
    const text = decode(buf);
    // No YAML or JSON holds a NUL; it says the file is binary (or another encoding).
    const nul = buf.indexOf(0);
    if (nul >= 0) return fileError(file, `file is not text: NUL byte at byte offset ${nul}`);
    // A byte-order mark starting a line: files saved by a Windows editor, then concatenated. YAML
    // 1.2 allows one before any document, the parser only at the very start (the decoder drops
    // that one): the whole file failed as "Implicit keys need to be on a single line".
    return { text: text.includes('\uFEFF') ? text.replace(/(^|\n)\uFEFF/g, '$1') : text };
  } catch (e) {
    const at = invalidUtf8Offset(buf);
    if (at !== undefined) return fileError(file, `file is not valid UTF-8: invalid byte 0x${(buf[at] ?? 0).toString(16).padStart(2, '0')} at byte offset ${at}`);
    // Valid UTF-8 that still failed: V8 cannot make a string that long (ERR_STRING_TOO_LONG, about
    // 512 M characters), or memory ran out. Reported as what it is, never as bad bytes.
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_STRING_TOO_LONG' || /string (length|longer)/i.test(err.message)) {
      return fileError(file, `file of ${buf.length} bytes is too long to hold as one string in this runtime (${err.message}): split it into smaller files`);
    }
    return fileError(file, `file of ${buf.length} bytes could not be decoded: ${err.message}`);
  }
}

/**
 * The file system failed (EMFILE, EIO, EACCES…), which says nothing about the file's content: `code`
 * lets a reader that waits for a change before reading again (the directory store) try again.
 */
const failed = (display: string, err: unknown): { error: ResourceError; code: string } => ({
  ...fileError(display, `cannot read file: ${fsErrorReason(err)}`),
  code: typeof (err as NodeJS.ErrnoException).code === 'string' ? (err as NodeJS.ErrnoException).code! : 'EIO',
});

/**
 * Reads a resource file without ever holding more than `maxBytes` (+1) of it: the size is checked
 * on the open descriptor, and reading stops past the limit if the file grows meanwhile.
 */
export async function readResourceText(
  path: string,
  display = path,
  maxBytes = DEFAULT_MAX_FILE_SIZE,
  limitSetBy?: string,
  openFile: (path: string, flags: number) => Promise<FileHandle> = open,
): Promise<FileText & { size?: number; changing?: boolean; code?: string }> {
  let fh;
  try {
    // Non-blocking open: a FIFO (or a link to one) must be refused below, not hang a libuv thread
    // until a writer shows up. Regular files read exactly as before.
    fh = await openFile(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return failed(display, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return fileError(display, 'not a regular file');
    if (st.size > maxBytes) return { ...fileError(display, sizeLimitMessage(st.size, maxBytes, limitSetBy)), size: st.size };
    const buf = Buffer.allocUnsafe(Math.min(st.size, maxBytes) + 1);
    const readAll = async () => {
      let n = 0;
      for (;;) {
        const { bytesRead } = await fh!.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) return n;
        n += bytesRead;
        if (n === buf.length) return n;
      }
    };
    const len = await readAll();
    if (len > maxBytes) return { ...fileError(display, sizeLimitMessage(len, maxBytes, limitSetBy)), size: len };
    if (len !== st.size) {
      // A procfs or sysfs file (a link to /proc/version) states a size (0, 4096) that reading never
      // gives, and nothing changes its size or times: not a writer mid-write. Refused, since told
      // "changing" the directory store re-read it every 50 ms for ever, naming nothing.
      const now = await fh.stat();
      const still = now.size === st.size && now.mtimeMs === st.mtimeMs && now.ctimeMs === st.ctimeMs;
      if (still && (await readAll()) !== st.size) {
        return fileError(display, `file says it is ${st.size} bytes but reading it gives other content, though nothing writes it (a procfs or sysfs file?): not read`);
      }
      return { ...fileError(display, 'file changed while being read'), size: len, changing: true };
    }
    return { ...decodeResourceText(buf.subarray(0, len), display, maxBytes), size: len };
  } catch (err) {
    return failed(display, err);
  } finally {
    await fh.close();
  }
}

/**
 * The highest --max-file-size: a resource file (or row) is parsed as one string and then as YAML,
 * which takes several times its size in memory; past V8's string limit (~512 M characters) it
 * cannot be read at all. 256 MiB is far above any real resource file.
 */
export const MAX_FILE_SIZE_LIMIT = 256 * 1024 * 1024;

/** --max-file-size: a size (as parseByteSize) of at most MAX_FILE_SIZE_LIMIT, else an error naming the flag. */
export function parseMaxFileSize(text: string, flag = '--max-file-size'): number {
  const n = parseByteSize(text, flag);
  if (n > MAX_FILE_SIZE_LIMIT) throw new Error(`${flag} "${text}" is ${n} bytes, above the maximum of 256MiB (${MAX_FILE_SIZE_LIMIT} bytes): no resource file needs more, and a larger one could not be read`);
  return n;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** `4MiB`, `512KiB`, `1MB`, `1048576` → bytes; anything else is an error naming `flag`. */
export function parseByteSize(text: string, flag = '--max-file-size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} "${text}": expected a size such as 4MiB, 512KiB or 1048576`);
  return n;
}
