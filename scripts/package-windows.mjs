#!/usr/bin/env node
// `npm run package:windows`: the Windows x64 zip, for a machine that has Node but no build tools.
// It holds the built keyport (bin/, dist/), its production node_modules with koffi's win32
// binary (npm installs optional dependencies for another platform with --os/--cpu), the
// service definition, the drain tool, a default configuration and a README:
//
//   keyport-<version>-win-x64/
//     keyport.cmd, bin\keyport.js, dist\, node_modules\, package.json, README.md, LICENSE
//     config\keyport.json, service\keyport-service.xml, tools\keyport-drain.mjs
//
// Writes build/keyport-<version>-win-x64.zip (and leaves the unpacked folder beside it).
// Options: --out DIR (default build/), --skip-build (dist/ is current).
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  createWriteStream,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const outDir = resolve(
  args.includes('--out') ? (args[args.indexOf('--out') + 1] ?? '') : join(root, 'build'),
);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const name = `keyport-${pkg.version}-win-x64`;
const stage = join(outDir, name);
const zipPath = join(outDir, `${name}.zip`);

function run(cmd, cmdArgs, cwd) {
  const r = spawnSync(cmd, cmdArgs, {
    cwd,
    stdio: ['ignore', 'inherit', 'inherit'],
    shell: process.platform === 'win32',
  });
  if (r.status !== 0) {
    process.stderr.write(
      `package-windows: ${cmd} ${cmdArgs.join(' ')} failed (exit ${r.status})\n`,
    );
    process.exit(1);
  }
}

if (!args.includes('--skip-build')) run('npm', ['run', '-s', 'build'], root);

rmSync(stage, { recursive: true, force: true });
rmSync(zipPath, { force: true });
mkdirSync(stage, { recursive: true });
const copy = (from, to = from) => cpSync(join(root, from), join(stage, to), { recursive: true });
copy('bin');
copy('dist');
copy('package.json');
copy('package-lock.json');
copy('LICENSE');
copy('deploy/windows/README.md', 'README.md');
copy('deploy/keyport.json', 'config/keyport.json');
copy('deploy/windows-service', 'service');
copy('deploy/keyport-drain.mjs', 'tools/keyport-drain.mjs');
writeFileSync(join(stage, 'keyport.cmd'), '@node "%~dp0bin\\keyport.js" %*\r\n');

// Production dependencies as a Windows x64 install resolves them (koffi's win32 binary, not
// this machine's), exactly as the lock file says; no install scripts run.
run(
  'npm',
  ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--os=win32', '--cpu=x64'],
  stage,
);
rmSync(join(stage, 'package-lock.json'));
const koffiWin = join(stage, 'node_modules', '@koromix', 'koffi-win32-x64');
if (!statSync(koffiWin, { throwIfNoEntry: false })) {
  process.stderr.write(
    'package-windows: npm did not install @koromix/koffi-win32-x64 (npm 10.4 or later needed for --os/--cpu)\n',
  );
  process.exit(1);
}

/** Every file under `dir`, sorted, so the zip's order does not depend on the file system. */
function files(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...files(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

const zip = new yazl.ZipFile();
let bytes = 0;
const all = files(stage);
for (const file of all) {
  const inZip = `${name}/${relative(stage, file).split(sep).join('/')}`;
  zip.addFile(file, inZip);
  bytes += statSync(file).size;
}
zip.end();
await new Promise((done, fail) => {
  zip.outputStream.pipe(createWriteStream(zipPath)).on('close', done).on('error', fail);
});
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
process.stdout.write(
  `${relative(process.cwd(), zipPath) || zipPath}: ${all.length} files, ${mib(bytes)} unpacked, ${mib(statSync(zipPath).size)} zipped\n`,
);
