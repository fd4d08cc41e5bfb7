#!/usr/bin/env node
// Runs the tap suite once per backend — iocp (the Windows code path, node.exe under Wine) over
// every test, then uring (native io_uring) over the tests that drive the engine — then prints
// one plain closing line ("tests: N passed, N failed, N skipped") and waits for the Wine
// prefix's wineserver to exit, so nothing of the run outlives it.
// `npm test -- FILES…` runs only those files, on the iocp backend (KEYPORT_TEST_BACKEND overrides).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tap = join(root, 'node_modules', '.bin', 'tap');

/** Files that start keyport and so run once per backend. */
const engineTests = readdirSync(join(root, 'test'))
  .filter((f) => /^(engine-|commands|metrics|api-)/.test(f) && f.endsWith('.test.ts'))
  .map((f) => join('test', f));

function uringAvailable() {
  if (process.platform !== 'linux') return 'io_uring is Linux-only';
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      "import('./dist/engine/uring/backend.js').then(async (m) => { const b = new m.UringBackend(); await b.stop(); })",
    ],
    { cwd: root, encoding: 'utf8' },
  );
  return probe.status === 0
    ? null
    : (probe.stderr
        .trim()
        .split('\n')
        .find((l) => /Error/.test(l)) ?? 'probe failed');
}

function runTap(args, backend) {
  return new Promise((resolve) => {
    process.stdout.write(`\n===== tests on the ${backend} backend =====\n`);
    const child = spawn(tap, args, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, KEYPORT_TEST_BACKEND: backend },
    });
    let tail = '';
    let all = '';
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      tail = (tail + d.toString()).slice(-4096);
      all += d.toString().includes('no tests found') ? ' no tests found ' : '';
    });
    child.on('exit', (c, s) => {
      // tap's base reporter ends with "# { total: N, pass: N, fail: N, skip: N }".
      const counts = { total: 0, pass: 0, fail: 0, skip: 0 };
      const m = tail.match(/# \{ ([^}]*) \}/);
      if (m) for (const [, k, v] of m[1].matchAll(/(\w+): (\d+)/g)) counts[k] = Number(v);
      // A file that dies before its first test is reported by tap as "no tests found" (a
      // skip): count it as the failure it is.
      const crashed = all !== '';
      if (crashed) counts.fail += 1;
      const code = c ?? (s ? 1 : 0);
      resolve({ code: code || (crashed ? 1 : 0), counts });
    });
  });
}

const args = process.argv.slice(2);
const passes = args.length
  ? [{ backend: process.env.KEYPORT_TEST_BACKEND ?? 'iocp', files: args }]
  : [
      { backend: 'iocp', files: [] },
      { backend: 'uring', files: engineTests },
    ];

const total = { pass: 0, fail: 0, skip: 0 };
let code = 0;
for (const p of passes) {
  if (p.backend === 'uring') {
    const why = uringAvailable();
    if (why) {
      process.stdout.write(`\n*** SKIPPING the uring pass (${p.files.length} files): ${why}\n\n`);
      total.skip += p.files.length;
      continue;
    }
  }
  const r = await runTap(p.files, p.backend);
  total.pass += r.counts.pass;
  total.fail += r.counts.fail + (r.code !== 0 && r.counts.fail === 0 ? 1 : 0);
  total.skip += r.counts.skip;
  if (r.code !== 0) code = r.code;
}

const { winePrefix, WINESERVER } = await import(join(root, 'dist', 'launcher', 'paths.js'));
if (process.platform !== 'win32' && existsSync(WINESERVER)) {
  spawnSync(WINESERVER, ['-w'], {
    env: { ...process.env, WINEPREFIX: winePrefix() },
    stdio: 'ignore',
  });
}

console.log(`tests: ${total.pass} passed, ${total.fail} failed, ${total.skip} skipped`);
process.exit(code);
