// The artifacts a user installs (issue 18), installed into empty folders and run until /healthz
// answers and a byte comes back through a listener:
//  - the npm package (`npm pack`), installed with `npm install -g --prefix DIR`, run natively;
//  - the Windows zip (`npm run package:windows`), unpacked by another zip implementation
//    (Python's) and run with the Windows Node under Wine, koffi's win32 binary from the zip.
// Both are made from the dist/ that `npm test` just built: `npm pack --ignore-scripts` and
// `package-windows --skip-build`, so that rebuilding (prepack) cannot pull dist/ away from the
// test files after this one; that prepack builds is checked on package.json.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runWindowsNode } from '../../src/launcher/wine.js';
import { ROOT } from '../helpers/keyport.js';
import { connect, readBytes } from '../helpers/tcp.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  scripts: Record<string, string>;
  files: string[];
};
const work = mkdtempSync(join(tmpdir(), 'keyport-package-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** Waits for the "keyport api on" line in `log()`; its address, or an error with the log. */
async function apiOf(log: () => string, exited: Promise<unknown>, ms = 90_000): Promise<string> {
  const end = Date.now() + ms;
  let gone = false;
  void exited.then(() => (gone = true));
  for (;;) {
    const m = log().match(/"api":"([^"]+)","backend":"(\w+)"/);
    if (m?.[1]) return m[1];
    if (gone || Date.now() > end) throw new Error(`keyport did not start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** /healthz answers, and bytes sent to the echo listener come back. */
async function serves(t: Test, api: string) {
  const health = await fetch(`http://${api}/healthz`);
  t.equal(health.status, 200, 'GET /healthz answers 200');
  const listeners = (await (await fetch(`http://${api}/listeners`)).json()) as {
    items: Array<{ address: string }>;
  };
  const port = Number(listeners.items[0]?.address.split(':').pop());
  const s = await connect(port);
  s.write('hello from an installed keyport');
  t.equal((await readBytes(s, 31)).toString(), 'hello from an installed keyport', 'echoed back');
  s.destroy();
}

function exitOf(p: ChildProcess): Promise<number | string> {
  return new Promise((res) => p.on('exit', (code, sig) => res(code ?? sig ?? -1)));
}

t.test('npm pack: the package installs into an empty prefix and runs', async (t) => {
  t.match(pkg.scripts.prepack, /npm run -s build/, 'prepack builds dist/ from a clean slate');
  const out = execFileSync(
    'npm',
    ['pack', '--ignore-scripts', '--json', '--pack-destination', work],
    { cwd: ROOT, encoding: 'utf8' },
  );
  const [packed] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const paths = new Set(packed?.files.map((f) => f.path));
  for (const f of [
    'bin/keyport.js',
    'dist/main/index.js',
    'dist/api/ui/page/index.html',
    'LICENSE',
  ])
    t.ok(paths.has(f), `the package holds ${f}`);
  t.notOk(
    [...paths].some((p) => p.startsWith('src/') || p.startsWith('test/') || p.startsWith('bench/')),
    'and no sources, tests or benchmarks',
  );
  const prefix = join(work, 'global');
  execFileSync(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--no-audit',
      '--no-fund',
      join(work, packed?.filename ?? ''),
    ],
    { cwd: work, stdio: 'ignore' },
  );
  const installed = join(prefix, 'lib', 'node_modules', 'keyport');
  t.notOk(existsSync(join(installed, 'node_modules', 'typescript')), 'no dev dependency installed');
  let log = '';
  const p = spawn(
    join(prefix, 'bin', 'keyport'),
    ['--api', '127.0.0.1:0', '--listener', '127.0.0.1:0=echo'],
    // Not the checkout's: from a folder of its own, with no KEYPORT_* of the test run.
    { cwd: work, env: { PATH: process.env.PATH, HOME: work }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  p.stdout?.on('data', (d) => (log += d));
  p.stderr?.on('data', (d) => (log += d));
  const exited = exitOf(p);
  const api = await apiOf(() => log, exited);
  await serves(t, api);
  p.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: drained, exit 0');
});

t.test(
  'npm run package:windows: the zip runs from an empty folder with the Windows Node',
  async (t) => {
    const out = execFileSync(
      process.execPath,
      [join(ROOT, 'scripts', 'package-windows.mjs'), '--skip-build', '--out', work],
      { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.comment(out.trim().split('\n').pop() ?? '');
    const name = `keyport-${pkg.version}-win-x64`;
    const unpacked = join(work, 'unzipped');
    execFileSync('python3', ['-m', 'zipfile', '-e', join(work, `${name}.zip`), unpacked]);
    const dir = join(unpacked, name);
    for (const f of [
      'keyport.cmd',
      'bin/keyport.js',
      'dist/main/index.js',
      'README.md',
      'LICENSE',
      'config/keyport.json',
      'service/keyport-service.xml',
      'tools/keyport-drain.mjs',
      'node_modules/fastify/package.json',
      'node_modules/@koromix/koffi-win32-x64/package.json',
    ])
      t.ok(existsSync(join(dir, f)), `the zip holds ${f}`);
    t.notOk(
      existsSync(join(dir, 'node_modules', '@koromix', 'koffi-linux-x64')),
      "koffi's binary is Windows', not this machine's",
    );
    t.notOk(existsSync(join(dir, 'node_modules', 'typescript')), 'no dev dependency');

    const logFile = join(work, 'zip-run.log');
    const p = runWindowsNode(
      join(dir, 'bin', 'keyport.js'),
      ['--api', '127.0.0.1:0', '--listener', '127.0.0.1:0=echo'],
      { logFile },
    );
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
    const exited = exitOf(p);
    const api = await apiOf(log, exited);
    t.match(log(), /"backend":"iocp"/, 'the iocp backend, on the zip’s own koffi');
    await serves(t, api);
    p.kill('SIGINT'); // Wine: Ctrl+C
    t.equal(await exited, 0, 'Ctrl+C: drained, exit 0');
  },
);
