// Where the Windows code path's runtime lives on a Linux machine: a git-ignored cache in the
// repository, overridable with KEYPORT_CACHE so several clones can share one download.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (package) root: dist/launcher/paths.js → ../.. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Windows Node major that the tests run and the project ships (22: 24 crashes under Wine 8). */
export const WINDOWS_NODE_VERSION = '22.23.3';

export const WINE_LOADER = '/usr/lib/wine/wine64';
export const WINESERVER = '/usr/lib/wine/wineserver64';

export function cacheDir(): string {
  return resolve(process.env.KEYPORT_CACHE ?? join(PACKAGE_ROOT, '.cache'));
}

export function wineDir(): string {
  return join(cacheDir(), 'wine');
}

/** The project's own Wine prefix: never the user's ~/.wine. */
export function winePrefix(): string {
  return join(wineDir(), 'prefix');
}

export function windowsNodeExe(): string {
  return join(wineDir(), `node-v${WINDOWS_NODE_VERSION}`, 'node.exe');
}

export function koffiVersion(): string {
  const pkg = join(PACKAGE_ROOT, 'node_modules', 'koffi', 'package.json');
  if (!existsSync(pkg)) throw new Error(`koffi is not installed (${pkg} missing): run npm ci`);
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

export function koffiWindowsBinaryDir(): string {
  return join(PACKAGE_ROOT, 'node_modules', '@koromix', 'koffi-win32-x64');
}

/** The environment every Wine process of ours runs with. */
export function wineEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    WINEPREFIX: winePrefix(),
    WINEDEBUG: '-all',
    WINEDLLOVERRIDES: 'mscoree,mshtml=',
  };
}
