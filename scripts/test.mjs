#!/usr/bin/env node
// Runs the tap suite, then prints one plain closing line ("tests: N passed, N failed, N skipped")
// and waits for the Wine prefix's wineserver to exit, so nothing of the run outlives it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tap = join(root, 'node_modules', '.bin', 'tap');
const child = spawn(tap, process.argv.slice(2), {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});

let tail = '';
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  tail = (tail + d.toString()).slice(-4096);
});

const code = await new Promise((res) => child.on('exit', (c, s) => res(c ?? (s ? 1 : 0))));

// tap's base reporter ends with "# { total: N, pass: N, fail: N, skip: N }".
const m = tail.match(/# \{ ([^}]*) \}/);
const counts = { total: 0, pass: 0, fail: 0, skip: 0, todo: 0 };
if (m) for (const [, k, v] of m[1].matchAll(/(\w+): (\d+)/g)) counts[k] = Number(v);

const { winePrefix, WINESERVER } = await import(join(root, 'dist', 'launcher', 'paths.js'));
if (process.platform !== 'win32' && existsSync(WINESERVER)) {
  spawnSync(WINESERVER, ['-w'], {
    env: { ...process.env, WINEPREFIX: winePrefix() },
    stdio: 'ignore',
  });
}

const failed = counts.fail + (code !== 0 && counts.fail === 0 ? 1 : 0);
console.log(`tests: ${counts.pass} passed, ${failed} failed, ${counts.skip} skipped`);
process.exit(code);
