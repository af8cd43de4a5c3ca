// A file that a flag or an environment variable names (a state key, a TLS pair, a CA bundle, a
// token) is read only when it is a regular file of bounded size: a FIFO would block the read until
// a writer shows up (for ever, without a word), a device such as /dev/zero would be read until
// memory runs out. Low level on purpose: the store, the server, the CLI and the client use it.
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { FlagFileError } from './secret-text.js';

/** A key, a certificate with its chain, a CA bundle or a token is at most a few hundred KiB. */
export const MAX_FLAG_FILE_BYTES = 1024 * 1024;

// Non-blocking: a FIFO (or a link to one) opens at once, to be refused by its fstat, instead of
// waiting for a writer. Regular files read as before.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

const sizeText = (n: number): string => (n % 1024 ** 2 === 0 ? `${n / 1024 ** 2} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`);

/** Why the opened file (fstat, not the path: nothing can be swapped in between) is not read, or undefined. */
function refusal(st: Stats, maxBytes: number): string | undefined {
  if (!st.isFile()) {
    const kind = st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'something else';
    return `is ${kind}, not a regular file`;
  }
  return st.size > maxBytes ? tooLarge(maxBytes) : undefined;
}

const tooLarge = (maxBytes: number): string => `is larger than ${sizeText(maxBytes)}: not read`;

/**
 * Room for the next read: the stated size + 1 at first (a file that grew shows; one of /proc states
 * 0), at most maxBytes + 1. Not pooled memory: a key read here is not left in a shared slab.
 */
function room(buf: Buffer, len: number, maxBytes: number): Buffer | undefined {
  if (len < buf.length) return buf;
  if (buf.length > maxBytes) return undefined;
  const bigger = Buffer.alloc(Math.min(buf.length * 2, maxBytes + 1));
  buf.copy(bigger, 0, 0, len);
  return bigger;
}

/** The file `flag` names, whole, or a FlagFileError naming the flag, the path (unless it looks secret) and why. */
export async function readFlagFile(flag: string, path: string, maxBytes = MAX_FLAG_FILE_BYTES): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, OPEN_FLAGS);
  } catch (e) {
    throw new FlagFileError(flag, path, e);
  }
  try {
    const st = await fh.stat();
    const refused = refusal(st, maxBytes);
    if (refused) throw new FlagFileError(flag, path, undefined, refused);
    let buf: Buffer | undefined = Buffer.alloc(st.size + 1);
    let len = 0;
    for (;;) {
      buf = room(buf, len, maxBytes);
      if (!buf) throw new FlagFileError(flag, path, undefined, tooLarge(maxBytes));
      const { bytesRead } = await fh.read(buf, len, buf.length - len, len);
      if (bytesRead === 0) return buf.subarray(0, len);
      len += bytesRead;
    }
  } catch (e) {
    throw e instanceof FlagFileError ? e : new FlagFileError(flag, path, e);
  } finally {
    await fh.close();
  }
}

/** readFlagFile for synchronous callers (start-up checks, the client's credentials). */
export function readFlagFileSync(flag: string, path: string, maxBytes = MAX_FLAG_FILE_BYTES): Buffer {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (e) {
    throw new FlagFileError(flag, path, e);
  }
  try {
    const st = fstatSync(fd);
    const refused = refusal(st, maxBytes);
    if (refused) throw new FlagFileError(flag, path, undefined, refused);
    let buf: Buffer | undefined = Buffer.alloc(st.size + 1);
    let len = 0;
    for (;;) {
      buf = room(buf, len, maxBytes);
      if (!buf) throw new FlagFileError(flag, path, undefined, tooLarge(maxBytes));
      const bytesRead = readSync(fd, buf, len, buf.length - len, len);
      if (bytesRead === 0) return buf.subarray(0, len);
      len += bytesRead;
    }
  } catch (e) {
    throw e instanceof FlagFileError ? e : new FlagFileError(flag, path, e);
  } finally {
    closeSync(fd);
  }
}
