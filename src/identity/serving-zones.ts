// Which --zone each server sharing the state serves (SPEC: trust domains derive from the zone).
// Two replicas of one state with different zones serve different trust domains for the same
// identities, and their proxies may not trust each other; nothing else would ever say so.
import type { StateStore } from '../store/types.js';

export const SERVING_ZONES_STATE_KEY = 'serving-zones';

/** A zone recorded longer ago than this is a past one (a deliberate change), not a running server's. */
export const ZONE_SEEN_RECENTLY_MS = 10 * 60_000;
/** How often a running server records its zone again (well within ZONE_SEEN_RECENTLY_MS). */
const REFRESH_MS = 60_000;

interface Log {
  warn: (o: object, m: string) => void;
}

/** `{ zone: last seen (ISO) }`; anything unreadable counts as empty (it is rewritten). */
function parseZones(raw: string | undefined): Record<string, string> {
  try {
    const v = JSON.parse(raw ?? '{}') as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
    return Object.fromEntries(Object.entries(v).filter(([, t]) => typeof t === 'string' && Number.isFinite(Date.parse(t))));
  } catch {
    return {};
  }
}

/**
 * Records this server's zone in the shared state at start and every minute, and warns (once per
 * zone) when a server of another zone was seen recently. It never refuses: a deliberate zone
 * change restarts the replicas with the new zone, and the old one ages out.
 */
export class ServingZones {
  private timer?: NodeJS.Timeout;
  private readonly warned = new Set<string>();

  constructor(
    private readonly opts: { state: StateStore; zone: string; log?: Log; now?: () => Date; refreshMs?: number },
  ) {}

  /** Records the zone once (awaited: the warning comes before "serving"), then keeps it fresh. */
  async start(): Promise<void> {
    await this.record();
    this.timer = setInterval(() => void this.record(), this.opts.refreshMs ?? REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Writes this zone's time; returns the other zones seen recently (and warns about new ones). */
  async record(): Promise<string[]> {
    const nowMs = (this.opts.now?.() ?? new Date()).getTime();
    const { zone } = this.opts;
    let others: string[] = [];
    try {
      await this.opts.state.update(SERVING_ZONES_STATE_KEY, (raw) => {
        const zones = parseZones(raw);
        const kept: Record<string, string> = {};
        // Zones not seen recently are forgotten: the record stays small.
        for (const [z, t] of Object.entries(zones)) if (z !== zone && nowMs - Date.parse(t) < ZONE_SEEN_RECENTLY_MS) kept[z] = t;
        others = Object.keys(kept);
        kept[zone] = new Date(nowMs).toISOString();
        return JSON.stringify(kept);
      });
    } catch (e) {
      // Only a warning is lost; serving does not depend on this record.
      this.opts.log?.warn({ stateKey: SERVING_ZONES_STATE_KEY, err: (e as Error).message }, 'could not record this server\'s zone in the state');
      return [];
    }
    for (const other of others) {
      if (this.warned.has(other)) continue;
      this.warned.add(other);
      this.opts.log?.warn(
        { zone, otherZone: other, stateKey: SERVING_ZONES_STATE_KEY },
        `another server sharing this state serves zone "${other}", this one zone "${zone}": proxies on the two get different trust domains (and CAs) for the same identities and may not trust each other; give every replica of one state the same --zone (after a deliberate zone change this warning stops once no server runs with the old zone for ${ZONE_SEEN_RECENTLY_MS / 60_000} minutes)`,
      );
    }
    return others;
  }
}
