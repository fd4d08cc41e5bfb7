// Runs a script of ours with the Windows build of Node under Wine (the release and Node that
// KEYPORT_WINE / KEYPORT_WINE_LOADER / KEYPORT_WINDOWS_NODE choose: src/launcher/paths.ts).
// node.exe under Wine dies with `open EBADF` when its stdout/stderr is a pipe (Wine 8 and 10
// alike), so both always go to a file.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { wineEnv, wineSetup } from './paths.js';
import { provisionWine } from './provision.js';

export interface WineRunOptions {
  /** File that receives node.exe's stdout and stderr (appended). */
  logFile: string;
  /** Extra node.exe flags, e.g. --expose-gc. */
  nodeFlags?: string[];
  env?: NodeJS.ProcessEnv;
}

/** A Unix path as the Windows process sees it (Wine maps / to drive Z:). */
export function toWindowsPath(path: string): string {
  return path.startsWith('/') ? `Z:${path.replaceAll('/', '\\')}` : path;
}

export function runWindowsNode(script: string, args: string[], opts: WineRunOptions): ChildProcess {
  const setup = wineSetup();
  const { wineLoader, nodeExe } = provisionWine(undefined, setup);
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const out = openSync(opts.logFile, 'a');
  try {
    // NODE_OPTIONS of the Linux Node (test runners inject Linux paths into every child's) must
    // not reach the Windows Node: `env -u` drops it after any spawn hook has run. The Windows
    // Node takes its own from KEYPORT_WINDOWS_NODE_OPTIONS.
    const own = process.env.KEYPORT_WINDOWS_NODE_OPTIONS;
    const envArgs = ['-u', 'NODE_OPTIONS', ...(own ? [`NODE_OPTIONS=${own}`] : [])];
    return spawn(
      'env',
      [...envArgs, wineLoader, nodeExe, ...(opts.nodeFlags ?? []), toWindowsPath(script), ...args],
      {
        env: { ...wineEnv(setup), ...opts.env },
        stdio: ['ignore', out, out],
      },
    );
  } finally {
    closeSync(out); // the child holds its own copy of the descriptor
  }
}
