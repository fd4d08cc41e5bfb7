// Now and then Wine 10 does not end a process that called exit(): seen about once in three CI
// runs, after a complete drain ("stopped") and after a fatal error ("fatal error: exiting"). The
// engine is done by then, so the launcher ends node.exe for it, and, should even SIGKILL not end
// it, stops waiting and exits with the code node.exe asked for, saying what state the process
// was left in.
import { readdirSync, readFileSync } from 'node:fs';

/** node.exe's last lines, and the exit code each asks for (src/main/index.ts). */
const LAST_WORDS: Array<[RegExp, (m: RegExpExecArray) => number]> = [
  // Stopped, drained (0) or after aborting what was left (3).
  [/"drained":(true|false)[^\n]*"msg":"stopped/, (m) => (m[1] === 'true' ? 0 : 3)],
  // A fatal (internal) error: FATAL_EXIT_CODE.
  [/"msg":"fatal error: exiting"/, () => 70],
];

export interface ExitWatchOptions {
  /** How long node.exe may take to end after its last line. */
  exitGraceMs: number;
  /** How long it may take to end after SIGKILL, before the launcher stops waiting. */
  killGraceMs: number;
  kill: () => void;
  /** Gives up on node.exe ending: the launcher exits with `code`. */
  giveUp: (code: number) => void;
  warn: (message: string) => void;
  /** node.exe's pid (for the report of a process that would not end). */
  pid: () => number | undefined;
  /** Each whole line of node.exe's output, for whatever else the launcher reads from it. */
  onLine?: (line: string) => void;
}

export class StoppedExitWatch {
  /** The exit code node.exe asked for, once it has logged its last line. */
  askedCode: number | null = null;
  private partial = '';
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ExitWatchOptions) {}

  /** node.exe's output as read, in chunks that may end inside a line. */
  feed(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      this.opts.onLine?.(line);
      if (this.askedCode === null) this.lastWords(line);
    }
  }

  private lastWords(line: string): void {
    for (const [pattern, code] of LAST_WORDS) {
      const m = pattern.exec(line);
      if (!m) continue;
      this.askedCode = code(m);
      this.timer = setTimeout(() => this.end(), this.opts.exitGraceMs);
      return;
    }
  }

  private end(): void {
    const code = this.askedCode ?? 1;
    this.opts.warn(`node.exe asked to exit (${code}) but did not under Wine: ending it`);
    this.opts.kill();
    this.timer = setTimeout(() => {
      const pid = this.opts.pid();
      this.opts.warn(
        `node.exe did not end even on SIGKILL (${pid === undefined ? 'no pid' : describeProcess(pid)}): leaving it, exiting with ${code}`,
      );
      this.opts.giveUp(code);
    }, this.opts.killGraceMs);
  }

  /** node.exe has ended. */
  exited(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** A process's state and each thread's, as /proc tells (what a hang looks like, for a report). */
export function describeProcess(pid: number): string {
  const field = (path: string, n: number) => {
    try {
      // The command name (field 2) is in parentheses and may hold spaces: count after it.
      const stat = readFileSync(path, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[n - 3] ?? '?';
    } catch {
      return '?';
    }
  };
  const wchan = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim() || '-';
    } catch {
      return '?';
    }
  };
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return `pid ${pid}: no such process in /proc`;
  }
  const threads = tasks.map(
    (t) =>
      `${t}:${field(`/proc/${pid}/task/${t}/stat`, 3)}/${wchan(`/proc/${pid}/task/${t}/wchan`)}`,
  );
  return `pid ${pid} state ${field(`/proc/${pid}/stat`, 3)}, threads ${threads.join(' ')}`;
}
