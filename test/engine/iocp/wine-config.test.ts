// Which Wine runs the Windows code path comes from configuration (src/launcher/paths.ts):
// KEYPORT_WINE, KEYPORT_WINDOWS_NODE, KEYPORT_WINE_LOADER + KEYPORT_WINESERVER. Bad values are
// refused with the variable named, before anything starts. On the Wine 10 pass: the wrappers
// enter the trixie root the way the launcher relies on, and leave nothing mounted on the host.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT, WINE } from '../../helpers/keyport.js';

const paths = await import('../../../dist/launcher/paths.js');
const bin = join(ROOT, 'bin', 'keyport.js');

t.test('KEYPORT_WINE picks the release, its Windows Node and its own prefix', async (t) => {
  const w8 = paths.wineSetup({});
  t.match(w8, {
    release: '8',
    loader: paths.HOST_WINE_LOADER,
    wineserver: paths.HOST_WINESERVER,
    configured: false,
    nodeVersion: paths.WINDOWS_NODE_VERSIONS['22'],
  });
  const w10 = paths.wineSetup({ KEYPORT_WINE: '10' });
  t.match(w10, {
    release: '10',
    loader: join(paths.wine10Dir(), 'bin', 'wine64'),
    wineserver: join(paths.wine10Dir(), 'bin', 'wineserver'),
    nodeVersion: paths.WINDOWS_NODE_VERSIONS['24'],
  });
  t.not(w8.prefix, w10.prefix, 'one prefix per release');
  t.match(paths.WINDOWS_NODE_VERSIONS['24'], /^24\.\d+\.\d+$/);
});

t.test('KEYPORT_WINDOWS_NODE: a pinned major or an exact version', async (t) => {
  const node = (v: string, wine = '10') =>
    paths.wineSetup({ KEYPORT_WINE: wine, KEYPORT_WINDOWS_NODE: v }).nodeVersion;
  t.equal(node('22'), paths.WINDOWS_NODE_VERSION, 'Node 22 under Wine 10 (what the image ships)');
  t.equal(node('24.1.0', '8'), '24.1.0');
  t.throws(() => node('23'), /KEYPORT_WINDOWS_NODE=23/);
});

t.test('KEYPORT_WINE_LOADER and KEYPORT_WINESERVER: another Wine, both or neither', async (t) => {
  const custom = paths.wineSetup({
    KEYPORT_WINE: '10',
    KEYPORT_WINE_LOADER: '/opt/wine/bin/wine64',
    KEYPORT_WINESERVER: '/opt/wine/bin/wineserver',
  });
  t.match(custom, {
    configured: true,
    loader: '/opt/wine/bin/wine64',
    wineserver: '/opt/wine/bin/wineserver',
  });
  t.throws(
    () => paths.wineSetup({ KEYPORT_WINE_LOADER: '/opt/wine/bin/wine64' }),
    /KEYPORT_WINE_LOADER and KEYPORT_WINESERVER go together/,
  );
  t.throws(() => paths.wineSetup({ KEYPORT_WINE: '9' }), /KEYPORT_WINE=9: expected 8 or 10/);
});

t.test('the environment of Wine processes', async (t) => {
  const env10 = paths.wineEnv(paths.wineSetup({ KEYPORT_WINE: '10' }));
  t.notOk('TMPDIR' in env10, 'no TMPDIR for Wine 10 (it aborts every program when set)');
  t.match(env10.WINEDLLOVERRIDES, /winewayland\.drv/);
  const binds = (env10.KEYPORT_WINE_BIND ?? '').split(':');
  t.ok(binds.includes(ROOT) || binds.some((b) => ROOT.startsWith(`${b}/`)), 'the project');
  t.ok(binds.includes('/tmp'), '/tmp');
  for (const b of binds) t.notMatch(b, /^\/(usr|etc|proc|sys|dev)?$/, `${b}: not a system folder`);
});

t.test('a bad KEYPORT_WINE stops the launcher before anything starts', async (t) => {
  const r = spawnSync(process.execPath, [bin, '--backend', 'iocp'], {
    encoding: 'utf8',
    env: { ...process.env, KEYPORT_WINE: '9' },
    timeout: 30_000,
  });
  t.equal(r.status, 1);
  t.match(r.stderr, /KEYPORT_WINE=9: expected 8 or 10/);
});

t.test("this pass's Wine runs a program, and leaves nothing mounted on the host", async (t) => {
  const setup = paths.wineSetup();
  t.equal(setup.release, WINE ?? '8', `the pass runs Wine ${setup.release}`);
  if (setup.release === '10') {
    for (const w of [setup.loader, setup.wineserver]) {
      const text = readFileSync(w, 'utf8');
      t.match(text, /exec unshare -m --propagation private/, `${w}: a mount namespace of its own`);
      t.match(text, /exec env -u TMPDIR chroot/, `${w}: TMPDIR dropped, chroot, exec all the way`);
    }
  } else t.equal(setup.loader, paths.HOST_WINE_LOADER, "Debian's Wine 8, run directly");
  const { runWindowsNode } = await import('../../../dist/launcher/wine.js');
  const log = join(ROOT, 'test-output', `wine-config-${process.pid}.log`);
  const child = runWindowsNode(join(ROOT, 'test', 'fixtures', 'hello.mjs'), [], { logFile: log });
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  t.equal(code, 0);
  t.match(readFileSync(log, 'utf8'), /hello from win32/);
  const wine10 = paths.wine10Dir();
  const mounted = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter((l) => (l.split(' ')[1] ?? '').startsWith(wine10));
  t.same(mounted, [], 'nothing under the Wine 10 folder is mounted in the host namespace');
});
