// An SvidManager fed by real IdentityAuthorities from in-memory snapshots, with inline issuance:
// the harness of the SvidManager tests (svids, prepared SVIDs).
import { Subject, filter, firstValueFrom, timeout } from 'rxjs';
import { resourceKey, type Resource, type ResourceSnapshot } from '../../src/api/types.js';
import { IdentityAuthorities, type AuthorityView } from '../../src/identity/authorities.js';
import { SvidManager, type Issuer, type ProxyIdentity, type SvidManagerOptions } from '../../src/identity/svids.js';
import { SvidIssuer } from '../../src/pki/issuer.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';

let revision = 0;

export type SvidLog = { warn: (o: object, m: string) => void; info: (o: object, m: string) => void };

export interface HarnessOptions extends Pick<SvidManagerOptions, 'detachGraceMs' | 'random' | 'now' | 'retryBaseMs' | 'clockCheckMs' | 'prepareLimit' | 'onPrepareFull'> {
  log?: SvidLog;
  /** Wraps the real (inline) issuer, e.g. to count or hold issuances. */
  issuer?: (real: Issuer) => Issuer;
  /** The authorities' clock (they judge CA validity by it); the real one when unset. */
  authoritiesNow?: () => Date;
}

export async function setup(opts: HarnessOptions = {}) {
  const snaps = new Subject<ResourceSnapshot>();
  const authorities = new IdentityAuthorities({ zone: 'default', state: new MemoryStateStore(), now: opts.authoritiesNow });
  authorities.start(snaps);
  const issuer = new SvidIssuer({ workers: 0 });
  const svids = new SvidManager({
    issuer: opts.issuer ? opts.issuer(issuer) : issuer,
    detachGraceMs: opts.detachGraceMs,
    random: opts.random,
    now: opts.now,
    log: opts.log,
    retryBaseMs: opts.retryBaseMs,
    clockCheckMs: opts.clockCheckMs,
    prepareLimit: opts.prepareLimit,
    onPrepareFull: opts.onPrepareFull,
  });
  authorities.views$.subscribe((v) => svids.setView(v));
  const push = async (...resources: Resource[]): Promise<AuthorityView> => {
    const s: ResourceSnapshot = { revision: ++revision, resources: new Map(resources.map((r) => [resourceKey(r), r])), errors: [] };
    const next = firstValueFrom(authorities.views$.pipe(filter((v) => v.snapshot === s), timeout(5000)));
    snaps.next(s);
    return next;
  };
  const until = (key: string, pred: (p: ProxyIdentity) => boolean, ms = 5000): Promise<ProxyIdentity> => {
    const now = svids.get(key);
    if (now && pred(now)) return Promise.resolve(now);
    return firstValueFrom(svids.changes$.pipe(filter((k) => k === key && pred(svids.get(k)!)), timeout(ms))).then(() => svids.get(key)!);
  };
  const close = async () => {
    authorities.stop();
    svids.close();
    await issuer.close();
  };
  return { svids, push, until, close };
}
