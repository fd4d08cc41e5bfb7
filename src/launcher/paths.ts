// Where the Windows code path's runtime lives on a Linux machine, and which Wine runs it.
//
// Two emulations are supported side by side, chosen with KEYPORT_WINE:
//   8  (default) Debian bookworm's Wine 8.0 on the host, with Windows Node 22 (Node 24's
//      node.exe crashes at start under Wine 8);
//   10 Debian trixie's Wine 10.0 in a root of its own under the cache (built by provisioning,
//      entered through two generated wrappers), with Windows Node 24.
// KEYPORT_WINE_LOADER / KEYPORT_WINESERVER point at another Wine (then nothing is installed),
// KEYPORT_WINDOWS_NODE picks the Windows Node (a major, 22 or 24, or an exact version).
// Everything is kept in a git-ignored cache in the repository (an installed package: the user's
// ~/.cache/keyport), overridable with KEYPORT_CACHE so several clones can share one download.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (package) root: dist/launcher/paths.js → ../.. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The Windows Node each major means, pinned. 22 is what the project ships (Dockerfile.windows)
 * and what runs under Wine 8; 24 (the current LTS) runs under Wine 10.
 */
export const WINDOWS_NODE_VERSIONS: Readonly<Record<string, string>> = {
  '22': '22.23.3',
  '24': '24.21.0',
};

/** The Windows Node the project ships (Dockerfile.windows) and the default pass tests. */
export const WINDOWS_NODE_VERSION = WINDOWS_NODE_VERSIONS['22'] as string;

/** The Wine releases keyport knows how to provision, and the Windows Node major each runs. */
export const WINE_RELEASES = {
  '8': { nodeMajor: '22', what: "Debian bookworm's Wine 8.0 on the host" },
  '10': { nodeMajor: '24', what: "Debian trixie's Wine 10.0 in a root under the cache" },
} as const;
export type WineRelease = keyof typeof WINE_RELEASES;

/** Debian's Wine 8 on the host (package wine64). */
export const HOST_WINE_LOADER = '/usr/lib/wine/wine64';
export const HOST_WINESERVER = '/usr/lib/wine/wineserver64';

export class WineConfigError extends Error {}

export function cacheDir(): string {
  if (process.env.KEYPORT_CACHE) return resolve(process.env.KEYPORT_CACHE);
  // An installed package (npm install -g) may sit where its user cannot write: the user's cache.
  if (PACKAGE_ROOT.split(sep).includes('node_modules')) {
    return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'keyport');
  }
  return join(PACKAGE_ROOT, '.cache');
}

/** Shared by every emulation: the Windows Node downloads, and Wine 8's prefix. */
export function wineDir(): string {
  return join(cacheDir(), 'wine');
}

/** Wine 10's own folder: the trixie root, the wrappers that enter it, its prefix. */
export function wine10Dir(): string {
  return join(cacheDir(), 'wine10');
}

export function wine10Root(): string {
  return join(wine10Dir(), 'root');
}

/** The Wine release in use: KEYPORT_WINE (8 or 10; default 8). */
export function wineRelease(env: NodeJS.ProcessEnv = process.env): WineRelease {
  const v = (env.KEYPORT_WINE ?? '8').trim() || '8';
  if (v === '8' || v === '10') return v;
  throw new WineConfigError(`KEYPORT_WINE=${v}: expected 8 or 10`);
}

/** The exact Windows Node version: KEYPORT_WINDOWS_NODE (major or x.y.z), else the release's. */
export function windowsNodeVersion(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.KEYPORT_WINDOWS_NODE?.trim() || WINE_RELEASES[wineRelease(env)].nodeMajor;
  if (/^\d+\.\d+\.\d+$/.test(v)) return v;
  const pinned = WINDOWS_NODE_VERSIONS[v];
  if (!pinned)
    throw new WineConfigError(
      `KEYPORT_WINDOWS_NODE=${v}: expected ${Object.keys(WINDOWS_NODE_VERSIONS).join(' or ')}, or an exact version such as ${WINDOWS_NODE_VERSION}`,
    );
  return pinned;
}

export interface WineSetup {
  release: WineRelease;
  /** The loader (wine64) and the wineserver to run: the host's, Wine 10's wrappers, or configured. */
  loader: string;
  wineserver: string;
  /** Whether they come from KEYPORT_WINE_LOADER / KEYPORT_WINESERVER (then nothing is installed). */
  configured: boolean;
  prefix: string;
  nodeVersion: string;
}

/** Which Wine runs the Windows code path, from the environment. */
export function wineSetup(env: NodeJS.ProcessEnv = process.env): WineSetup {
  const release = wineRelease(env);
  const loader = env.KEYPORT_WINE_LOADER?.trim();
  const server = env.KEYPORT_WINESERVER?.trim();
  if (Boolean(loader) !== Boolean(server))
    throw new WineConfigError(
      'KEYPORT_WINE_LOADER and KEYPORT_WINESERVER go together: set both (the same Wine) or neither',
    );
  const wrappers = join(wine10Dir(), 'bin');
  const defaults =
    release === '10'
      ? { loader: join(wrappers, 'wine64'), wineserver: join(wrappers, 'wineserver') }
      : { loader: HOST_WINE_LOADER, wineserver: HOST_WINESERVER };
  return {
    release,
    loader: loader ? resolve(loader) : defaults.loader,
    wineserver: server ? resolve(server) : defaults.wineserver,
    configured: Boolean(loader),
    // One prefix per release: a prefix that one Wine release has updated is not for another.
    prefix: release === '10' ? join(wine10Dir(), 'prefix') : join(wineDir(), 'prefix'),
    nodeVersion: windowsNodeVersion(env),
  };
}

/** The project's own Wine prefix (the release's): never the user's ~/.wine. */
export function winePrefix(): string {
  return wineSetup().prefix;
}

export function windowsNodeExe(version = windowsNodeVersion()): string {
  return join(wineDir(), `node-v${version}`, 'node.exe');
}

export function koffiVersion(): string {
  const pkg = join(PACKAGE_ROOT, 'node_modules', 'koffi', 'package.json');
  if (!existsSync(pkg)) throw new Error(`koffi is not installed (${pkg} missing): run npm ci`);
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

export function koffiWindowsBinaryDir(): string {
  return join(PACKAGE_ROOT, 'node_modules', '@koromix', 'koffi-win32-x64');
}

const SYSTEM_DIR = /^\/(?:|var|run|(?:usr|etc|bin|sbin|lib\w*|proc|sys|dev|boot)(?:\/.*)?)$/;

/**
 * Host folders the Wine 10 root shows at the same path (so Unix paths, Z:\ paths and the
 * working directory agree on both sides): the project, the cache, /tmp (temporary files and
 * configuration files that tests and users pass by path) and the working directory.
 */
export function wineBindDirs(withCwd = true): string[] {
  const dirs = [PACKAGE_ROOT, cacheDir(), '/tmp', ...(withCwd ? [process.cwd()] : [])]
    .map((d) => resolve(d))
    .filter((d) => !SYSTEM_DIR.test(d)); // never over the root's own system
  // Parents first, each once; a folder inside another bound one comes with it.
  const sorted = [...new Set(dirs)].sort((a, b) => a.length - b.length);
  return sorted.filter((d, i) => !sorted.slice(0, i).some((p) => d.startsWith(`${p}/`)));
}

/** The environment every Wine process of ours runs with. */
export function wineEnv(setup: WineSetup = wineSetup()): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WINEPREFIX: setup.prefix,
    // Quiet unless asked: WINEDEBUG=err+all shows why Wine failed to start a program.
    WINEDEBUG: process.env.WINEDEBUG ?? '-all',
    // winewayland.drv: Wine 10 would try Wayland first and print "XDG_RUNTIME_DIR is invalid".
    WINEDLLOVERRIDES: 'mscoree,mshtml,winewayland.drv=',
    KEYPORT_WINE_BIND: wineBindDirs().join(':'),
  };
  // Wine 10 aborts every Windows program at start when TMPDIR is set, even empty (the wrappers
  // drop it too; this keeps a configured Wine 10 loader working).
  if (setup.release === '10') delete env.TMPDIR;
  return env;
}
