#!/usr/bin/env node
// Part of `npm test` (its pretest, after Wine): the Debian packages some tests drive, installed
// when missing so that the README's test command works on a fresh machine:
//   chromium + fonts-liberation  the status page and the browser-attack test (playwright-core
//                                drives /usr/bin/chromium; no browser download)
//   prometheus                   promtool, which checks the exposition and deploy/ (metrics test)
//   haproxy                      the reference relay of the differential test
// As root with apt-get it installs them (waiting up to 5 min for a dpkg lock another install
// holds); otherwise it prints the command and goes on: those tests then fail, naming it.
// KEYPORT_TEST_TOOLS_FORCE=NAME,… treats those as missing (to test this script).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const force = new Set((process.env.KEYPORT_TEST_TOOLS_FORCE ?? '').split(',').filter(Boolean));
const onPath = (cmd) =>
  spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

const tools = [
  {
    name: 'chromium',
    present: () => existsSync('/usr/bin/chromium'),
    packages: ['chromium', 'fonts-liberation'],
  },
  { name: 'promtool', present: () => onPath('promtool'), packages: ['prometheus'] },
  {
    name: 'haproxy',
    present: () => onPath('haproxy') || existsSync('/usr/sbin/haproxy'),
    packages: ['haproxy'],
  },
];

if (process.platform !== 'linux') process.exit(0);
const missing = tools.filter((t) => force.has(t.name) || !t.present());
if (missing.length === 0) process.exit(0);
const packages = missing.flatMap((t) => t.packages);
const names = missing.map((t) => t.name).join(', ');
const install = ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '--no-install-recommends'];
if (process.getuid?.() !== 0 || !onPath('apt-get')) {
  process.stderr.write(
    `keyport: ${names} missing; the tests that use them will fail. Install: apt-get ${install.slice(2).join(' ')} ${packages.join(' ')}\n`,
  );
  process.exit(0);
}
process.stderr.write(`keyport: installing ${packages.join(' ')} for the tests (${names})…\n`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const run = (args) => spawnSync('apt-get', args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
run(['-o', 'DPkg::Lock::Timeout=300', 'update', '-qq']);
const r = run([...install, ...packages]);
if (r.status !== 0) {
  process.stderr.write(
    `keyport: apt-get install ${packages.join(' ')} failed (exit ${r.status})\n`,
  );
  process.exit(1);
}
