// A child that does not end soon after it was told to stop leaves nothing in a CI log but tap's
// "timeout!" 300 s later. This says, on stderr and at once, which process it is, and in what
// state /proc shows it and its children, while it still hangs.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describeProcess } from '../../src/launcher/exit-watch.js';

/** The pids `pid` started (its children), from /proc; throws when it is gone. */
export function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number);
}

/** The pids below `pid` (children, grandchildren…). */
function descendants(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = childrenOf(pid);
  } catch {}
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

/** Waits for `exited`; if it takes over `ms`, reports `what` once (and goes on waiting). */
export async function reportIfSlow<T>(
  what: string,
  proc: ChildProcess,
  exited: Promise<T>,
  detail: () => string,
  ms = 20_000,
): Promise<T> {
  const timer = setTimeout(() => {
    const pid = proc.pid as number;
    const tree = [pid, ...descendants(pid)].map((p) => `  ${describeProcess(p)}`).join('\n');
    process.stderr.write(
      `\n*** ${what} has not exited ${ms / 1000} s after it was told to stop:\n${tree}\n${detail()}\n`,
    );
  }, ms);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}
