// spiffe_sequence per trust domain, persisted in the shared state so that a restart or another
// replica never publishes a lower number, and the number changes exactly when the CA set does.
import { createHash } from 'node:crypto';
import type { StateStore } from '../store/types.js';

interface Stored {
  sequence: number;
  /** SHA-256 over the sorted CA fingerprints the sequence was given to. */
  digest: string;
}

const sequenceKey = (trustDomain: string) => `bundle-sequence/${trustDomain}`;

export function caSetDigest(fingerprints: readonly string[]): string {
  return createHash('sha256').update([...fingerprints].sort().join('\n')).digest('hex');
}

export class BundleSequences {
  private readonly served = new Map<string, Stored>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly state: StateStore,
    private readonly opts: { onDamaged?: (stateKey: string) => void } = {},
  ) {}

  /**
   * The sequence of this CA set: the stored one when the set is unchanged, otherwise one more
   * than the highest known (stored or served), written before it is returned. Calls run one at
   * a time. Two replicas that see the same change at once both write the same number.
   */
  sequenceFor(trustDomain: string, fingerprints: readonly string[]): Promise<number> {
    const run = this.queue.then(() => this.compute(trustDomain, caSetDigest(fingerprints)));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async compute(trustDomain: string, digest: string): Promise<number> {
    const key = sequenceKey(trustDomain);
    const raw = await this.state.get(key);
    let stored = parseStored(raw);
    if (raw && !stored) {
      // A damaged record (a truncated write, a hand edit) stopped this domain's bundle for good: its
      // number is unknown, so the next one is the time in seconds, above any count of CA changes, and
      // peers still never see it go down. The record is written again below.
      this.opts.onDamaged?.(key);
      stored = { sequence: Math.floor(Date.now() / 1000), digest: '' };
    }
    const mine = this.served.get(trustDomain);
    if (stored?.digest === digest && stored.sequence >= (mine?.sequence ?? 0)) {
      this.served.set(trustDomain, stored);
      return stored.sequence;
    }
    if (mine?.digest === digest && !stored) {
      // The state was lost (a new state store): keep the number already served.
      await this.state.put(key, JSON.stringify(mine));
      return mine.sequence;
    }
    const next: Stored = { sequence: Math.max(stored?.sequence ?? 0, mine?.sequence ?? 0) + 1, digest };
    await this.state.put(key, JSON.stringify(next));
    this.served.set(trustDomain, next);
    return next.sequence;
  }
}

/** The stored sequence when it was given to exactly this CA set; never writes (for read-only commands). */
export async function storedSequence(state: StateStore, trustDomain: string, fingerprints: readonly string[]): Promise<number | undefined> {
  const stored = parseStored(await state.get(sequenceKey(trustDomain)));
  return stored?.digest === caSetDigest(fingerprints) ? stored.sequence : undefined;
}

/** A stored record, or undefined when there is none or it is damaged (not JSON, or not a positive integer and a digest). */
function parseStored(raw: string | undefined): Stored | undefined {
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<Stored> | null;
    if (v && Number.isSafeInteger(v.sequence) && v.sequence! > 0 && typeof v.digest === 'string') return { sequence: v.sequence!, digest: v.digest };
  } catch {
    // damaged: as if absent, see compute
  }
  return undefined;
}
