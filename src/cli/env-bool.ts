// Boolean flags settable by environment variables, parsed strictly: commander would turn any value
// (even "false") into true, and MESH_SDS_INSECURE=false must never enable plaintext gRPC.
import { Option, type Command } from 'commander';
import { valueForMessage } from '../api/secret-text.js';

const envOf = new WeakMap<Option, string>();

export const BOOLEAN_VALUES = 'true, false, 1, 0, yes, no';

/** A mistyped boolean is short: a longer value (a token set in the wrong variable) is described, not echoed. */
const MAX_ECHOED_CHARS = 32;

/** `true|false|1|0|yes|no` (any case); anything else is an error naming the variable. */
export function parseEnvBoolean(name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  throw new Error(`${name}=${valueForMessage(value, MAX_ECHOED_CHARS)}: must be one of ${BOOLEAN_VALUES}`);
}

/** A boolean flag that `env` also sets (applied by applyBooleanEnv before the action runs). */
export function booleanOption(flags: string, description: string, env: string): Option {
  const o = new Option(flags, `${description} (env: ${env}=true|false)`);
  envOf.set(o, env);
  return o;
}

/** Sets each boolean flag not given on the command line from its variable; an empty variable is unset. */
export function applyBooleanEnv(cmd: Command, env: NodeJS.ProcessEnv = process.env): void {
  for (const o of cmd.options) {
    const name = envOf.get(o);
    const raw = name === undefined ? undefined : env[name];
    if (name === undefined || raw === undefined || raw.trim() === '') continue;
    const key = o.attributeName();
    if (cmd.getOptionValueSource(key) === 'cli') continue;
    cmd.setOptionValueWithSource(key, parseEnvBoolean(name, raw), 'env');
  }
}
