// Whether a pid recorded in a lock file still names the process that wrote it. A pid is reused
// (a restarted container's process is pid 1 again, a busy host wraps pids), so a live pid alone
// does not prove the lock's owner lives: its start time, recorded beside the pid, must match too.
import { readFileSync } from 'node:fs';

/**
 * When a process started (clock ticks since boot, /proc/<pid>/stat field 22), or undefined when
 * it is gone or /proc is not there (off Linux).
 */
export function processStartTime(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** This process's start time, or `-` where it cannot be read (then only the pid is compared). */
export const OWN_START_TIME = processStartTime('self') ?? '-';

/** Whether a process of that pid runs (as any user). */
export function processRuns(pid: number): boolean {
  // kill(0) signals our own process group and kill(-1) every process: a recorded pid ≤ 0 (or not
  // a whole number) names no process, however it came to be written.
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // runs, as another user
  }
}

/**
 * Whether the process that recorded `pid` and `startTime` (`-` or undefined: not recorded) still
 * runs: the pid runs and, where both start times are known, it started when the recorder did.
 */
export function recorderRuns(pid: number, startTime: string | undefined): boolean {
  if (!processRuns(pid)) return false;
  if (startTime === undefined || startTime === '-') return true;
  const now = processStartTime(pid);
  return now === undefined || now === startTime;
}
