// The key that seals private keys at rest (SPEC §6): 32 random bytes in a file, named by a key id.
import { createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { readFlagFile } from '../api/flag-file.js';

export interface StateKey {
  /** 32 bytes, AES-256-GCM key. */
  readonly bytes: Buffer;
  /** First 8 bytes of SHA-256 of the key, hex: names the key in sealed values and messages without revealing it. */
  readonly id: string;
  /** Where it was read from, for messages. */
  readonly source: string;
}

export const STATE_KEY_BYTES = 32;

export function stateKeyId(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest().subarray(0, 8).toString('hex');
}

/**
 * A key file holds the 32 bytes either raw (a file of exactly 32 bytes) or as text: 64 hex digits,
 * or base64 (standard or URL-safe) of 32 bytes; surrounding whitespace is ignored.
 * `state-key generate` writes base64 and a newline (friendly to Kubernetes Secrets).
 */
export function parseStateKey(content: Buffer, source: string): StateKey {
  let bytes: Buffer | undefined;
  if (content.length === STATE_KEY_BYTES) bytes = Buffer.from(content);
  else {
    const text = content.toString('latin1').trim();
    if (/^[0-9a-fA-F]{64}$/.test(text)) bytes = Buffer.from(text, 'hex');
    else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
      const b = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      if (b.length === STATE_KEY_BYTES) bytes = b;
    }
  }
  if (!bytes) {
    throw new Error(
      `state key file ${source}: expected 32 bytes, raw or as 64 hex digits or base64 (got ${content.length} bytes that are none of these; make one with \`mesh-sds state-key generate --out FILE\`)`,
    );
  }
  return { bytes, id: stateKeyId(bytes), source };
}

/**
 * `flag` names where `file` came from. Its errors name the flag and never echo a value that is the
 * key itself rather than its path; a FIFO, a device or a file over 1 MiB is refused at once.
 */
export async function loadStateKey(file: string, flag = '--state-key-file'): Promise<StateKey> {
  return parseStateKey(await readFlagFile(flag, file), file);
}

/** Writes a new random key as base64 text, mode 0600; refuses to overwrite an existing file. */
export async function generateStateKeyFile(file: string): Promise<StateKey> {
  const bytes = randomBytes(STATE_KEY_BYTES);
  let fh;
  try {
    fh = await open(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${file} already exists: refusing to overwrite a state key (the state sealed with it would be lost)`, { cause: e });
    throw new Error(`${file}: cannot be created (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  try {
    await fh.chmod(0o600); // exactly 0600 whatever the umask
    await fh.writeFile(`${bytes.toString('base64')}\n`);
  } finally {
    await fh.close();
  }
  return { bytes, id: stateKeyId(bytes), source: file };
}
