// Log lines about proxy identities (SPEC §7): "proxy identity changed" when a proxy gets its first
// or a different SPIFFE ID / MeshIdentity, and a rate-limited "proxy gets no identity" with why.
import type { ProxyIdentity } from '../identity/svids.js';
import { limitedWarn, type Logger } from './logger.js';

export class IdentityChangeLog {
  /** proxy → "kri spiffeId" it was last logged with. */
  private readonly last = new Map<string, string>();

  constructor(private readonly log: Logger) {}

  changed(proxy: string, id: ProxyIdentity | undefined): void {
    if (!id) return;
    if (id.state === 'issued') {
      const now = `${id.identity.kri} ${id.spiffeId}`;
      const before = this.last.get(proxy);
      if (before === now) return; // a rotation: same identity, new certificate
      this.last.set(proxy, now);
      this.log.info({ proxy, identity: id.identity.kri, spiffeId: id.spiffeId, previous: before?.split(' ')[1] }, 'proxy identity changed');
      return;
    }
    if (id.state !== 'pending' && id.state !== 'rejected') return;
    if (this.last.delete(proxy)) this.log.info({ proxy, state: id.state }, 'proxy identity changed');
    limitedWarn(this.log, proxy, { proxy, state: id.state, reason: id.reason }, 'proxy gets no identity');
  }

  gone(proxy: string): void {
    this.last.delete(proxy);
  }
}
