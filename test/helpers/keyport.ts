// Starts keyport exactly as a user does (node bin/keyport.js …, i.e. through the launcher, which
// on Linux runs the Windows code path under Wine) and talks to it over real HTTP.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { childrenOf, reportIfSlow } from './slow-stop.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
/** Where tests write logs, configs and screenshots (git-ignored); exists once this module loads. */
export const OUT_DIR = join(ROOT, 'test-output');
mkdirSync(OUT_DIR, { recursive: true });

export interface Keyport {
  readonly api: string;
  readonly proc: ChildProcess;
  readonly output: () => string;
  get(path: string): Promise<{ status: number; body: unknown }>;
  /** SIGTERM, then the exit code (or signal). */
  stop(): Promise<number | string>;
  /** The process that runs the engine: the launcher itself natively, node.exe under Wine. */
  enginePid(): number;
  /** Resolves with the launcher's exit code (or signal). */
  readonly exited: Promise<number | string>;
}

let seq = 0;

/** The backend this run of the suite tests: npm test runs it once per backend. */
export const BACKEND = process.env.KEYPORT_TEST_BACKEND ?? 'iocp';

/**
 * The Wine release the iocp backend runs on in this pass (8 or 10; null natively): npm test runs
 * the iocp pass on both. Where the two releases behave differently a test says which and why,
 * through wineDiffers().
 */
export const WINE: '8' | '10' | null =
  BACKEND === 'iocp' && process.platform !== 'win32'
    ? ((process.env.KEYPORT_TEST_WINE ?? process.env.KEYPORT_WINE ?? '8') as '8' | '10')
    : null;

/** How a line about Wine's own faults starts in the test log (loud, and names the release). */
const WINE_TAG = `*** WINE ${WINE}`;

/**
 * Reports, loudly, a behaviour in which this pass's Wine differs from the other release (and so
 * from what a Windows host would be expected to do on at least one of them): on stderr, which
 * npm test repeats in its summary, and as a tap comment.
 */
export function wineDiffers(t: { comment(...m: unknown[]): void }, why: string): void {
  const line = `*** WINE ${WINE}: ${why}`;
  process.stderr.write(`\n${line}\n`);
  t.comment(line);
}

/** Where the backends must differ: the names of errors (Win32 on IOCP, errno on io_uring). */
export const ERR =
  BACKEND === 'uring'
    ? { reset: /ECONNRESET/, aborted: 'ECANCELED', refused: 'ECONNREFUSED' }
    : {
        // A reset completes a pending WSARecv with ERROR_NETNAME_DELETED; a WSARecv posted
        // after the RST arrived fails at once with WSAECONNRESET.
        reset: /ERROR_NETNAME_DELETED|WSAECONNRESET/,
        aborted: 'ERROR_OPERATION_ABORTED',
        refused: 'ERROR_CONNECTION_REFUSED',
      };

export async function startKeyport(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Keyport> {
  try {
    return await startOnce(args, opts);
  } catch (err) {
    // Wine now and then ends node.exe before it runs a line of keyport (the launcher says so):
    // an emulation fault, not keyport's; said loudly, and tried once more.
    const m = /keyport: node\.exe ended .* before writing anything[^\n]*/.exec(
      (err as Error).message,
    );
    if (!m) throw err;
    process.stderr.write(`${WINE_TAG}: ${m[0]} (starting it again)\n`);
    return startOnce(args, opts);
  }
}

async function startOnce(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<Keyport> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  mkdirSync(OUT_DIR, { recursive: true });
  const logFile = join(OUT_DIR, `keyport-${process.pid}-${++seq}.log`);
  const proc = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'keyport.js'),
      '--backend',
      BACKEND,
      ...(args.includes('--api') ? [] : ['--api', '127.0.0.1:0']),
      ...args,
    ],
    {
      cwd: ROOT,
      // Debug by default: tests read each connection's close line (and its reason), which keyport
      // logs at debug; engine/lifecycle checks that the default level leaves them out.
      env: {
        ...process.env,
        KEYPORT_LOG_LEVEL: 'debug',
        ...opts.env,
        KEYPORT_LOG_FILE: logFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | string>((res) =>
    proc.on('exit', (code, sig) => {
      // The launcher's watch over node.exe's end under Wine (src/launcher/exit-watch.ts) said
      // something: shown loudly, so that a CI log tells how often Wine leaves node.exe behind.
      for (const line of out.split('\n')) {
        if (/^keyport: node\.exe (asked to exit|did not end)/.test(line))
          process.stderr.write(`${WINE_TAG}: ${line}\n`);
      }
      res(code ?? sig ?? -1);
    }),
  );

  const api = await new Promise<string>((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`keyport did not start in ${timeoutMs} ms:\n${out}`)),
      timeoutMs,
    );
    const check = (): void => {
      const m = out.match(/"api":"([^"]+)"/);
      if (m?.[1]) {
        clearTimeout(timer);
        // Stop matching: a busy keyport logs for minutes, and this scans the whole output.
        proc.stdout?.off('data', check);
        res(`http://${m[1]}`);
      }
    };
    proc.stdout?.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`keyport exited (${code}) before its API was up:\n${out}`));
    });
  });

  return {
    api,
    proc,
    output: () => out,
    async get(path) {
      const r = await fetch(api + path);
      const text = await r.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {}
      return { status: r.status, body };
    },
    exited,
    enginePid() {
      const pid = proc.pid as number;
      if (BACKEND !== 'iocp') return pid;
      // The launcher's only child is `env`, which exec'd wine64 → node.exe: same pid (Wine
      // 10's wrapper execs too: unshare → sh → env → chroot → sh → wine64).
      return Number(childrenOf(pid)[0]);
    },
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return reportIfSlow(
        `keyport (${BACKEND})`,
        proc,
        exited,
        () => `  its last output:\n${out.slice(-1500)}`,
      );
    },
  };
}

/**
 * keyport's log records so far (its JSON log lines, parsed); other output is skipped, and so are
 * lines without `containing` (a busy keyport logs every connection it closes).
 */
export function logRecords(k: Keyport, containing = ''): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of k.output().split('\n')) {
    if (!line.startsWith('{') || !line.includes(containing)) continue;
    try {
      out.push(JSON.parse(line));
    } catch {}
  }
  return out;
}
