// The server's resolution pipeline run once, without serving: for `get`, `inspect`, `export-trust`.
// The identity pipeline, federation and the stores are imported where used: a command that needs
// none of them (token generate, a refused flag) starts without loading ~600 modules it never runs.
import { stat } from 'node:fs/promises';
import { resourcesOfKind } from '../api/types.js';
import type { FederatedView } from '../federation/mesh-trusts.js';
import { parseByteSize } from '../api/file-text.js';
import { fsErrorReason, pathForMessage } from '../api/secret-text.js';
import { writeStderr } from './stderr.js';
import type { ResourceStore, StateStore } from '../store/types.js';
import { openSealedState } from '../store/state-setup.js';

export interface StoreFlags extends StateKeyFlags {
  resources?: string;
  store?: string;
  stateDir: string;
  zone: string;
  /** `--max-file-size` as given (e.g. 4MiB). */
  maxFileSize?: string;
}

/** --state-key-file, --state-old-key-file, --insecure-plaintext-state (SPEC §6). */
export interface StateKeyFlags {
  stateKeyFile?: string;
  stateOldKeyFile?: string;
  insecurePlaintextState?: boolean;
}

/** The state key flags each open store was opened with, for computeView. */
const keyFlagsOf = new WeakMap<ResourceStore, StoreFlags>();

/**
 * Every command refuses a --resources directory that does not exist, naming it, where the
 * directory store would create it (a typo would otherwise print an empty, successful result, or
 * store what no server reads). `readOnly` (get, inspect, export-trust): likewise a Postgres schema
 * that does not exist, holds no tables or is at another version: nothing is created or migrated.
 */
export async function withStore<T>(flags: StoreFlags, fn: (store: ResourceStore) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
  // A --resources folder is never made here, for writes either: `apply` into a mistyped folder
  // would store what no server reads.
  if (!flags.store && flags.resources !== undefined) await mustBeDirectory('--resources', flags.resources);
  const maxFileSize = flags.maxFileSize === undefined ? undefined : parseByteSize(flags.maxFileSize);
  const { openStore } = await import('../store/open.js');
  const store = await openStore({ resourcesDir: flags.resources, store: flags.store, stateDir: flags.stateDir, maxFileSize, readOnly: opts.readOnly === true });
  try {
    keyFlagsOf.set(store, flags);
    await startWhole(store);
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * Starts a store for one command, refusing a first read that lacks a file because it kept changing
 * while read: what get/inspect/export-trust print, or what apply checks its duplicates against,
 * would silently be the store without it.
 */
export async function startWhole(store: ResourceStore): Promise<void> {
  await store.start();
  const incomplete = store.incompleteRead?.();
  if (incomplete) throw new Error(incomplete);
}

/**
 * Only the state store (token key, CAs): a directory store would scan the resource directory for
 * nothing. Postgres keeps state in the same database as resources.
 */
export async function withState<T>(
  flags: Pick<StoreFlags, 'store' | 'stateDir'> & StateKeyFlags,
  fn: (state: StateStore) => Promise<T>,
): Promise<T> {
  const sealed = (inner: StateStore) => openSealedState(inner, { ...flags, postgres: !!flags.store, refusal: 'refusing to go on' }, cliLog);
  if (flags.store) {
    const { PostgresStore } = await import('../store/postgres.js');
    const store = await PostgresStore.open(flags.store);
    try {
      return await fn(await sealed(store.state));
    } finally {
      await store.close();
    }
  }
  const { FileStateStore } = await import('../store/file-state.js');
  return fn(await sealed(await FileStateStore.open(flags.stateDir)));
}

export async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

export async function mustBeDirectory(flag: string, dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st) throw new Error(`${flag} ${pathForMessage(dir)}: no such directory`);
  if (!st.isDirectory()) throw new Error(`${flag} ${pathForMessage(dir)}: not a directory`);
}

/** Warnings of the state setup, for a command whose stdout is its result. */
const cliLog = {
  // Written as the CLI's own stderr is: a damaged state record's text is quoted in some of them.
  warn: (_: object, msg?: string) => writeStderr(`mesh-sds: warning: ${msg ?? ''}`),
  info: () => undefined,
};

/**
 * Resolves identities (CAs, status conditions, auto-created MeshTrusts) as `serve` does, but over a
 * read-only view of the state: get, inspect and export-trust never create a CA or write anything
 * (a CA `serve` has not made yet is reported as not created), plus the federated MeshTrusts from
 * the bundles a server persisted (no remote is contacted). Sealed values are opened with the
 * state key flags; one that cannot be opened refuses the command, naming its key id.
 */
export async function computeView(store: ResourceStore, zone: string): Promise<FederatedView> {
  const flags = keyFlagsOf.get(store);
  // A mistyped --state-dir is not a CA `serve` has yet to create: say the folder is missing.
  const absent = flags && !flags.store && !(await exists(flags.stateDir)) ? `the state folder --state-dir ${pathForMessage(flags.stateDir)} does not exist (is it the server's?)` : undefined;
  const state = await openSealedState(store.state, { ...flags, postgres: !!flags?.store, readOnly: true, absent }).catch((e: unknown) => {
    // A state dir that is a file or cannot be listed: node's message ("ENOTDIR: not a directory,
    // scandir '…'") named no flag and quoted the path, which may be a key given by mistake.
    if (flags && !flags.store && typeof (e as NodeJS.ErrnoException).syscall === 'string') {
      throw new Error(`--state-dir ${pathForMessage(flags.stateDir)} cannot be used as the state directory: ${fsErrorReason(e)}`);
    }
    throw e;
  });
  const [{ filter, firstValueFrom, timeout }, { IdentityAuthorities }, { loadFederationState }, { withFederatedTrusts }] = await Promise.all([
    import('rxjs'),
    import('../identity/authorities.js'),
    import('../federation/follower.js'),
    import('../federation/mesh-trusts.js'),
  ]);
  const authorities = new IdentityAuthorities({ zone, state });
  try {
    authorities.start(store.snapshots$);
    const view = await firstValueFrom(authorities.views$.pipe(filter(() => true), timeout(30_000)));
    const federation = await loadFederationState(state, resourcesOfKind(view.snapshot, 'ClusterFederatedTrustDomain'), (stateKey, problems) =>
      cliLog.warn({}, `federation: stored record ${stateKey} damaged (${problems.join('; ')}); using what is intact`),
    );
    return withFederatedTrusts(view, federation);
  } finally {
    authorities.stop();
  }
}
