// At most one log line per interval for an event that can repeat fast (a refusal, a connection
// closed over a cap); the line counts those left out since the last.

export class OncePer {
  private lastMs = -Infinity;
  private skipped = 0;

  constructor(private readonly intervalMs: number) {}

  log(write: (skippedSinceLastLine: number) => void): void {
    const now = Date.now();
    if (now - this.lastMs < this.intervalMs) {
      this.skipped++;
      return;
    }
    this.lastMs = now;
    const skipped = this.skipped;
    this.skipped = 0;
    write(skipped);
  }
}
