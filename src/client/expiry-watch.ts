// --watch: says when the certificate on disk nears its end (the last 10 % of its lifetime) or has
// expired while no new one arrived: the server is not rotating it (unreachable, refusing our token,
// or pushing what we NACK), and peers will soon refuse it. Said once per state change: each state
// has its own timer, and a new certificate written resets both.
export type ExpiryLog = (level: 'warn' | 'info', message: string) => void;

/** setTimeout fires at once past 2^31-1 ms (24.8 days): a longer wait is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ExpiryWatch {
  private timers: NodeJS.Timeout[] = [];
  private serial = '';
  private warned = false;

  constructor(private readonly log: ExpiryLog) {}

  /** The certificate now on disk; a new serial clears the warnings of the old one. */
  watch(notBeforeMs: number, notAfterMs: number, serial: string, nowMs = Date.now()): void {
    if (serial === this.serial) return;
    this.stop();
    if (this.warned) this.log('info', `a new certificate (serial ${serial}, valid until ${new Date(notAfterMs).toISOString()}) replaced the one that was expiring`);
    this.warned = false;
    this.serial = serial;
    const nearMs = notAfterMs - (notAfterMs - notBeforeMs) / 10;
    this.at(nearMs, nowMs, () => {
      if (Date.now() >= notAfterMs) return; // the expiry warning says it
      this.warned = true;
      this.log('warn', `cert.pem (serial ${serial}) expires at ${new Date(notAfterMs).toISOString()}, in the last 10 % of its lifetime, and no new certificate has arrived from the server`);
    });
    this.at(notAfterMs, nowMs, () => {
      this.warned = true;
      this.log('warn', `cert.pem (serial ${serial}) expired at ${new Date(notAfterMs).toISOString()} and no new certificate has arrived from the server: peers will refuse it`);
    });
  }

  private at(whenMs: number, nowMs: number, fire: () => void): void {
    const wait = Math.max(0, whenMs - nowMs);
    const t = setTimeout(() => {
      if (wait > MAX_TIMER_MS) this.at(whenMs, Date.now(), fire);
      else fire();
    }, Math.min(wait, MAX_TIMER_MS));
    t.unref(); // the stream keeps a watching agent alive, not these
    this.timers.push(t);
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }
}
