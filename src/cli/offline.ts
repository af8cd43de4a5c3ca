// The server's resolution pipeline run once, without serving: for `get`, `inspect`, `export-trust`.
import { filter, firstValueFrom, timeout } from 'rxjs';
import { IdentityAuthorities, type AuthorityView } from '../identity/authorities.js';
import { openStore } from '../server/serve.js';
import type { ResourceStore, StateStore } from '../store/types.js';

export interface StoreFlags {
  resources?: string;
  store?: string;
  stateDir: string;
  zone: string;
}

export async function withStore<T>(flags: StoreFlags, fn: (store: ResourceStore) => Promise<T>): Promise<T> {
  const store = await openStore({ resourcesDir: flags.resources, store: flags.store, stateDir: flags.stateDir });
  try {
    await store.start();
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * Only the state store (token key, CAs): a directory store would scan the resource directory for
 * nothing. Postgres keeps state in the same database as resources.
 */
export async function withState<T>(flags: Pick<StoreFlags, 'store' | 'stateDir'>, fn: (state: StateStore) => Promise<T>): Promise<T> {
  if (flags.store) {
    const { PostgresStore } = await import('../store/postgres.js');
    const store = await PostgresStore.open(flags.store);
    try {
      return await fn(store.state);
    } finally {
      await store.close();
    }
  }
  const { FileStateStore } = await import('../store/file-state.js');
  return fn(await FileStateStore.open(flags.stateDir));
}

/** Resolves identities (CAs, status conditions, auto-created MeshTrusts) exactly as `serve` does. */
export async function computeView(store: ResourceStore, zone: string): Promise<AuthorityView> {
  const authorities = new IdentityAuthorities({ zone, state: store.state });
  try {
    authorities.start(store.snapshots$);
    return await firstValueFrom(authorities.views$.pipe(filter(() => true), timeout(30_000)));
  } finally {
    authorities.stop();
  }
}
