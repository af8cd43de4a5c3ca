// Whether the `--on-update` command has succeeded since the files last changed, kept in the
// out-dir (`.mesh-sds-fetch-state`, 0600) so it survives the agent. Without it a command that
// failed, or was killed by a stop, is never run again: a restarted agent (or a one-shot re-run)
// finds the files current and has nothing to report, and the program reading them keeps the old
// certificate until the next rotation.
//
// Written `pending` before the files are renamed, so a crash between the renames and the command
// leaves a record that the command is owed.
import { lstat, open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { stageFile } from './files.js';

export const HOOK_STATE_FILE = '.mesh-sds-fetch-state';

/** A state file is a line of JSON; anything larger was not written by us. */
const MAX_STATE_BYTES = 4096;

export type HookStatus = 'pending' | 'failed' | 'succeeded';

export interface HookState {
  onUpdate: HookStatus;
  /** How the last run failed ("exit code 1", "signal SIGTERM"). */
  failure?: string;
  at: string;
}

export async function writeHookState(outDir: string, status: HookStatus, failure?: string): Promise<void> {
  const state: HookState = { onUpdate: status, at: new Date().toISOString() };
  if (failure !== undefined) state.failure = failure;
  const staged = await stageFile(join(outDir, HOOK_STATE_FILE), `${JSON.stringify(state)}\n`, 0o600);
  await staged.commit().catch(async (e: unknown) => {
    await staged.abort();
    throw e;
  });
}

/**
 * The recorded state, or undefined when there is none (an out-dir written by an older version, or
 * never with --on-update): then nothing is known to be owed. Only a regular file is read (a FIFO
 * put there would block the read for good).
 */
export async function readHookState(outDir: string): Promise<HookState | undefined> {
  const path = join(outDir, HOOK_STATE_FILE);
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isFile() || st.size > MAX_STATE_BYTES) return undefined;
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(MAX_STATE_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAX_STATE_BYTES, 0);
    const parsed = JSON.parse(buf.subarray(0, bytesRead).toString('utf8')) as Partial<HookState>;
    if (parsed.onUpdate !== 'pending' && parsed.onUpdate !== 'failed' && parsed.onUpdate !== 'succeeded') return undefined;
    return parsed as HookState;
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}
