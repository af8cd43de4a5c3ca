// Readiness (SPEC §6): /readyz is 200 only when every registered check passes; /readyz?verbose
// lists each one. Components report through `health()`; the server registers one check per concern.

export interface Health {
  ok: boolean;
  /** Why not (or what is fine), one line, for /readyz?verbose and logs. */
  detail?: string;
}

/** A component that can say whether it is fit to serve (stores, authorities, token revocations). */
export interface HasHealth {
  health(): Health;
}

export interface CheckResult extends Health {
  name: string;
}

export interface ReadinessReport {
  ready: boolean;
  checks: CheckResult[];
}

export class Readiness {
  private readonly checks: { name: string; check: () => Health }[] = [];

  /** Registers a check; its name appears in /readyz?verbose. A check that throws counts as failed. */
  add(name: string, check: () => Health): this {
    this.checks.push({ name, check });
    return this;
  }

  evaluate(): ReadinessReport {
    const checks = this.checks.map(({ name, check }): CheckResult => {
      try {
        const h = check();
        return { name, ok: h.ok, detail: h.detail };
      } catch (e) {
        return { name, ok: false, detail: `check failed: ${(e as Error).message}` };
      }
    });
    return { ready: checks.every((c) => c.ok), checks };
  }
}

/** `health()` of a component when it has one (duck-typed, so components can add it independently). */
export function healthOf(component: unknown): (() => Health) | undefined {
  const h = (component as Partial<HasHealth> | undefined)?.health;
  return typeof h === 'function' ? () => h.call(component) : undefined;
}

/** Kubernetes-style text: `[+]name ok` / `[-]name failed: detail`, then the verdict. */
export function formatReadiness(report: ReadinessReport, verbose: boolean): string {
  if (!verbose) return report.ready ? 'ready\n' : 'not ready\n';
  const lines = report.checks.map((c) => (c.ok ? `[+]${c.name} ok${c.detail ? `: ${c.detail}` : ''}` : `[-]${c.name} failed: ${c.detail ?? 'not ready'}`));
  lines.push(report.ready ? 'ready' : 'not ready');
  return lines.join('\n') + '\n';
}
