// The checks /readyz runs for a serving replica (SPEC §6). A component that has `health()` answers
// for itself; otherwise the check uses what the server can see from outside.
import type { AuthorityView } from '../identity/authorities.js';
import type { ResourceStore } from '../store/types.js';
import { healthOf, Readiness, type Health } from './readiness.js';

export interface ServerReadinessSources {
  store: ResourceStore;
  /** True once the first snapshot has been turned into secrets. */
  loaded: () => boolean;
  authorities: { readonly current: AuthorityView | undefined };
  /** The token authority (absent with --auth none). */
  tokens?: object;
  /** The (sealed) state store: it reports values sealed under a key this replica lacks. */
  state?: object;
  draining: () => boolean;
}

/** Bundled identities the last view could not give a CA (the reason from their conditions). */
function identitiesWithoutCa(view: AuthorityView): string[] {
  const out: string[] = [];
  for (const st of view.identities.values()) {
    if (st.identity.spec.provider.type !== 'Bundled' || st.ca) continue;
    const why = st.conditions.find((c) => c.status === 'False' && c.message)?.message;
    out.push(why ? `${st.kri} (${why})` : st.kri);
  }
  return out;
}

export function serverReadiness(src: ServerReadinessSources): Readiness {
  const r = new Readiness();
  const storeHealth = healthOf(src.store);
  r.add('store', (): Health => {
    if (!src.loaded()) return { ok: false, detail: 'first resource snapshot not loaded yet' };
    if (storeHealth) return storeHealth();
    // Postgres: the LISTEN connection is the change feed; without it changes do not arrive.
    const feed = src.store as { listenerPid?: number };
    if ('listenerPid' in feed && feed.listenerPid === undefined) return { ok: false, detail: 'change feed (LISTEN) down, reconnecting' };
    return { ok: true };
  });
  const authHealth = healthOf(src.authorities);
  r.add('identities', (): Health => {
    if (authHealth) return authHealth();
    const view = src.authorities.current;
    if (!view) return { ok: false, detail: 'identities not computed yet' };
    const missing = identitiesWithoutCa(view);
    if (missing.length > 0) return { ok: false, detail: `no CA for ${missing.join(', ')}` };
    return { ok: true, detail: `${view.identities.size} identities` };
  });
  const stateHealth = healthOf(src.state);
  if (stateHealth) r.add('state-key', stateHealth);
  const tokens = src.tokens as { revocationsHealth?: () => Health } | undefined;
  if (tokens) {
    r.add('revocations', (): Health => (typeof tokens.revocationsHealth === 'function' ? tokens.revocationsHealth() : { ok: true, detail: 'read from the state store' }));
  }
  r.add('draining', (): Health => (src.draining() ? { ok: false, detail: 'shutting down: draining streams' } : { ok: true }));
  return r;
}
