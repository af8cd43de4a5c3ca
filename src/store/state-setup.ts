// Start-up of the state store's sealing (SPEC §6): load the key files, check that every sealed value
// can be opened, seal plaintext private keys and re-seal values under an old key — or refuse to
// start, naming the key id, before anything has been served or written.
import { loadStateKey, type StateKey } from './state-key.js';
import { holdsSecret, isSealed, SealedStateStore, sealedKeyId } from './sealed-state.js';
import { ReadOnlyStateStore } from './read-only-state.js';
import type { StateStore } from './types.js';

export interface StateSealingConfig {
  stateKeyFile?: string;
  stateOldKeyFile?: string;
  insecurePlaintextState?: boolean;
  /** The Postgres store refuses unsealed private keys unless `insecurePlaintextState`. */
  postgres: boolean;
  /** get / inspect / export-trust: check, never write (no sealing of old values, no created CAs). */
  readOnly?: boolean;
}

export interface SealingLog {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export class StateKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateKeyError';
  }
}

export async function openSealedState(inner: StateStore, cfg: StateSealingConfig, log?: SealingLog): Promise<StateStore> {
  if (cfg.stateOldKeyFile && !cfg.stateKeyFile) {
    throw new StateKeyError('--state-old-key-file needs --state-key-file: the old key opens the state, the new one re-seals it');
  }
  const key = cfg.stateKeyFile ? await loadStateKey(cfg.stateKeyFile) : undefined;
  const old = cfg.stateOldKeyFile ? await loadStateKey(cfg.stateOldKeyFile) : undefined;
  const allowPlaintext = !cfg.postgres || !!cfg.insecurePlaintextState;
  const sealed = new SealedStateStore(inner, {
    key,
    oldKeys: old ? [old] : [],
    allowPlaintext,
    plaintextRefusal: 'the Postgres store needs --state-key-file (MESH_SDS_STATE_KEY_FILE), or --insecure-plaintext-state',
    onPlaintext: (k) =>
      log?.warn(
        { stateKey: k },
        'private keys are stored UNSEALED in the state (no --state-key-file): anyone who can read the state can impersonate every identity',
      ),
  });
  await prepare(sealed, inner, key, !!cfg.readOnly);
  if (key) log?.info({ stateKeyId: key.id, oldStateKeyId: old?.id }, 'state keys sealed with AES-256-GCM');
  return cfg.readOnly ? new ReadOnlyStateStore(sealed) : sealed;
}

/**
 * Two passes: first every value is checked (nothing written), and any problem refuses start-up as a
 * whole; only then are plaintext private keys sealed and old-key values re-sealed.
 */
async function prepare(sealed: SealedStateStore, inner: StateStore, key: StateKey | undefined, readOnly: boolean): Promise<void> {
  if (!inner.keys) throw new Error('this state store cannot list its keys');
  const problems: string[] = [];
  const toSeal: string[] = [];
  let plaintext: string | undefined;
  for (const k of await inner.keys()) {
    const raw = await inner.get(k);
    if (raw === undefined) continue;
    if (isSealed(raw)) {
      try {
        sealed.open(k, raw); // proves the key is there and the value is intact
        if (sealedKeyId(raw) !== key?.id) toSeal.push(k);
      } catch (e) {
        problems.push((e as Error).message);
      }
    } else if (holdsSecret(k, raw)) {
      if (key) toSeal.push(k);
      else plaintext ??= k;
    }
  }
  if (problems.length > 0) {
    const ids = [...new Set(problems.flatMap((p) => /state key id ([0-9a-f]+)/.exec(p)?.[1] ?? []))];
    throw new StateKeyError(
      `refusing to start: ${problems.length} sealed state value(s) cannot be opened${ids.length ? ` (sealed with state key id ${ids.join(', ')})` : ''}: ${problems.slice(0, 3).join('; ')}`,
    );
  }
  // A read-only command stores nothing, so unsealed old state is no reason to refuse it.
  if (plaintext !== undefined && !readOnly) {
    if (!sealed.opts.allowPlaintext) {
      throw new StateKeyError(
        `refusing to start: the state holds unsealed private keys (e.g. "${plaintext}"); ${sealed.opts.plaintextRefusal ?? 'give --state-key-file'} (with a key they are sealed at start-up)`,
      );
    }
    sealed.plaintextKept(plaintext);
  }
  if (readOnly) return;
  for (const k of toSeal) {
    // Compare-and-swap through update: a value another replica changed meanwhile is re-judged as it is now.
    await inner.update(k, (cur) => (cur === undefined ? undefined : sealed.close(k, sealed.open(k, cur))));
  }
}
