#!/usr/bin/env node
// keyport's benchmark: keyport's forward listener against HAProxy, socat and Node's net as relays
// in front of a C echo upstream / iperf3 -s (and iperf3 direct), side by side, on this machine;
// and, secondary, keyport's echo listener against Node's net and socat. `npm run bench` (or
// `node bench/run.mjs --help`). Method: bench/README.md.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { alive, freePort, have, probeEcho, tempEchoServer } from './lib/proc.mjs';
import { describeMachine, fmt, markdown, ratios, summarize, targets } from './lib/report.mjs';
import { makeSystems, StartError } from './lib/systems.mjs';
import {
  CONNRATE_INFLIGHT,
  ECHO_WORKLOADS,
  RELAY_WORKLOADS,
  startUpstream,
  WORKLOADS,
} from './lib/workloads.mjs';

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(benchDir, '..');

const names = (ws) => ws.map((w) => w.name).join(', ');
const USAGE = `usage: npm run bench -- [options]     (or: node bench/run.mjs [options])

  --quick              smoke run: 1 run, short durations, relay-connrate sustained 10 s,
                       2 000 idle connections, control at 1 000 and 5 000
  --runs N             runs per system and workload (default 3; --quick: 1)
  --only W,...         workloads: the relay's ${names(RELAY_WORKLOADS)} (the default),
                       the echo listener's ${names(ECHO_WORKLOADS)}
  --all                the relay workloads and the echo listener's
  --systems S,...      systems: keyport-iocp, node-net-wine, keyport-uring, node-net, socat,
                       haproxy, direct (default: all that can run here)
  --idle-conns N       connections for relay-idle and idle (default 10000; --quick: 2000);
                       shrunk to what the descriptor limit allows
  --duration S         seconds measured per relay-rtt / echo / connrate / bulk run and per
                       control slice (default 3; --quick: 1.5, bulk 2)
  --control-conns N,…  idle connections held during control, one measurement each (default
                       1000,10000,18000; --quick: 1000,5000); capped by the descriptor limit
  --sustain S          seconds measured per relay-connrate run (default 60; --quick: 10)
  --warmup S           seconds of warm-up before each echo / connrate window (default 1;
                       --quick: 0.5)
  --server-cpu N       core for the relays / servers (default 0)
  --load-cpu N         core for the load generators and the upstream (default 1)
  --nice N             nice value for everything the benchmark runs (default -10 as root, so
                       that other work on the machine disturbs the measurements less; 0: off)
  --no-build           do not run \`npm run build\` when dist/ is older than src/
  --no-install         do not apt-get install missing socat / haproxy / iperf3 / gcc
  --wine 8|10          which Wine runs keyport-iocp and node-net-wine (default 8: Debian's
                       Wine 8 with Windows Node 22; 10: Wine 10 from a Debian trixie root
                       with Windows Node 24, provisioned like npm run provision -- --wine 10)
  --wine-cache DIR     KEYPORT_CACHE for the Wine runs (default bench/out/wine-cache: a prefix
                       of the benchmark's own, so that a test run's wineserver is never shared)
  --keyport DIR        benchmark the keyport in DIR (a built checkout with node_modules, e.g.
                       an older commit) instead of this repository's
  --profile            also write a V8 CPU profile of every keyport and Node peer process
                       (bench/out/profiles/…) and print each one's heaviest functions; the
                       profiler costs throughput, so such a run is labelled -profile
  --render FILE.json   only rewrite FILE.md from FILE.json (after a change to the report)
  --dry-run            print the plan (every measurement, its estimated seconds) and stop
                       (builds nothing)
  --name NAME          results file name (default: the date, plus -quick / -partial / -profile)
`;

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    only: { type: 'string' },
    all: { type: 'boolean', default: false },
    sustain: { type: 'string' },
    warmup: { type: 'string' },
    systems: { type: 'string' },
    'idle-conns': { type: 'string' },
    'control-conns': { type: 'string' },
    duration: { type: 'string' },
    'server-cpu': { type: 'string', default: '0' },
    'load-cpu': { type: 'string', default: '1' },
    'no-build': { type: 'boolean', default: false },
    'no-install': { type: 'boolean', default: false },
    'wine-cache': { type: 'string' },
    wine: { type: 'string' },
    name: { type: 'string' },
    profile: { type: 'boolean', default: false },
    keyport: { type: 'string' },
    nice: { type: 'string' },
    render: { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const say = (line) => process.stderr.write(`${line}\n`);

if (opt.render) {
  // Recompute the summary from the samples and rewrite the markdown beside the JSON.
  const { readFileSync } = await import('node:fs');
  const file = resolve(opt.render);
  const res = JSON.parse(readFileSync(file, 'utf8'));
  const ws = WORKLOADS.filter((w) => res.config.workloads.includes(w.name));
  const ss = makeSystems({}).filter((x) => res.config.systems.includes(x.name));
  res.summary = summarize(res.samples, ws, ss);
  res.ratios = ratios(res.summary, ws, ss);
  res.targets = targets(res.summary, res.ratios);
  writeFileSync(file, `${JSON.stringify(res, null, 2)}\n`);
  const md = markdown(res, ws, ss);
  writeFileSync(file.replace(/\.json$/, '.md'), md);
  process.stdout.write(md);
  process.exit(0);
}
if (opt.wine !== undefined && !['8', '10'].includes(opt.wine)) {
  say(`bench: --wine ${opt.wine}: expected 8 or 10`);
  process.exit(2);
}
// The launcher of every Wine run reads KEYPORT_WINE (src/launcher/paths.ts).
if (opt.wine) process.env.KEYPORT_WINE = opt.wine;
const wineRelease = process.env.KEYPORT_WINE ?? '8';
const isRoot = process.getuid?.() === 0;
const startedAt = new Date();
const t0 = Date.now();
const loadavgAtStart = os.loadavg();
const warnings = [];

// ---- configuration -------------------------------------------------------------------------

const durations = opt.quick
  ? { echo: 1.5, connrate: 1.5, bulk: 2, control: 1.5, sustain: 10, warmup: 0.5, omit: 1 }
  : { echo: 3, connrate: 3, bulk: 3, control: 3, sustain: 60, warmup: 1, omit: 1 };
const positive = (name, v) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    say(`bench: --${name} ${v}: expected a positive number`);
    process.exit(2);
  }
  return n;
};
if (opt.duration)
  for (const k of ['echo', 'connrate', 'bulk', 'control'])
    durations[k] = positive('duration', opt.duration);
if (opt.sustain) durations.sustain = positive('sustain', opt.sustain);
if (opt.warmup) durations.warmup = positive('warmup', opt.warmup);
const runs = Math.round(positive('runs', opt.runs ?? (opt.quick ? 1 : 3)));
let idleConns = Math.round(positive('idle-conns', opt['idle-conns'] ?? (opt.quick ? 2000 : 10000)));
const controlConns = (opt['control-conns'] ?? (opt.quick ? '1000,5000' : '1000,10000,18000'))
  .split(',')
  .map((n) => Math.round(positive('control-conns', n)));
// a relayed idle connection costs the relay 2 descriptors (client and upstream side)
let relayIdleConns = idleConns;
const cores = os.cpus().length;
let serverCpu = Number(opt['server-cpu']);
let loadCpu = Number(opt['load-cpu']);
if (cores < 2) {
  warnings.push(
    'one core only: server and load share it (no pinning); numbers measure both together',
  );
  serverCpu = null;
  loadCpu = null;
}

const workloads = opt.only
  ? WORKLOADS.filter((w) => {
      // in the canonical order (relay first), whatever the order given
      const names = opt.only.split(',').map((n) => n.trim());
      for (const n of names)
        if (!WORKLOADS.some((x) => x.name === n)) {
          say(`bench: unknown workload ${n} (have: ${WORKLOADS.map((x) => x.name).join(', ')})`);
          process.exit(2);
        }
      return names.includes(w.name);
    })
  : opt.all
    ? WORKLOADS
    : RELAY_WORKLOADS;

const outDir = join(benchDir, 'out');
const stamp = startedAt.toISOString().replace(/[:.]/g, '-').slice(0, 19);
const logDir = join(outDir, 'logs', stamp);
if (!opt['dry-run']) mkdirSync(logDir, { recursive: true });
let seq = 0;
const tracked = new Set();
const ctx = {
  root,
  keyportRoot: resolve(opt.keyport ?? root),
  benchDir,
  outDir,
  logDir,
  serverCpu,
  loadCpu,
  durations,
  quick: opt.quick,
  idleConns,
  relayIdleConns,
  controlConns,
  loadgen: join(outDir, 'loadgen'),
  upstream: join(outDir, 'upstream'),
  logPath: (name) => join(logDir, `${String(++seq).padStart(4, '0')}-${name}.log`),
  track: (c) => tracked.add(c),
  untrack: (c) => tracked.delete(c),
  nofile: 1024,
  wineError: null,
  buildError: null,
  winePrefix: null,
  profileDir: opt.profile ? join(outDir, 'profiles', stamp) : null,
  current: null, // {workload, run} of the measurement being set up
  windows: [], // measured windows [from, to] (performance.now() seconds) of the current measurement
  profilePath(system, role) {
    const c = this.current ?? { workload: role, run: 0 };
    const dir = join(this.profileDir, `${c.workload}-${system}-run${c.run}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  },
};
if (opt.profile)
  warnings.push('run with --profile: the CPU profiler slows the Node processes, compare with care');

// ---- preparation ---------------------------------------------------------------------------

function raiseOwnNofile(want) {
  // Everything we spawn inherits this: servers, node.exe, the wineserver, the load generator.
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], {
    stdio: 'ignore',
  });
  const cur = execFileSync(
    'sh',
    ['-c', `prlimit --pid ${process.pid} --nofile -o SOFT --noheadings`],
    {
      encoding: 'utf8',
    },
  ).trim();
  const soft = Number(cur);
  ctx.nofile = soft;
  if (r.status !== 0 || soft < want) {
    // the server holds one descriptor per idle connection (a relay two), the load generator
    // and the upstream one each: every process has the same limit
    const room = Math.max(100, soft - 2000);
    const relayRoom = Math.max(50, Math.floor((soft - 2000) / 2));
    const uses = (w) => workloads.some((x) => x.name === w);
    if (room < idleConns && uses('idle')) {
      warnings.push(
        `descriptor limit ${soft} (cannot raise it): idle uses ${room} connections instead of ${idleConns}`,
      );
      idleConns = room;
      ctx.idleConns = room;
    }
    if (relayRoom < relayIdleConns && uses('relay-idle')) {
      warnings.push(
        `descriptor limit ${soft} (cannot raise it; a relayed connection costs the relay 2): relay-idle uses ${relayRoom} connections instead of ${relayIdleConns}`,
      );
      relayIdleConns = relayRoom;
      ctx.relayIdleConns = relayRoom;
    }
    // keyport holds every idle connection of control (the holders 5 000 each)
    const over = controlConns.filter((n) => n > soft - 1500);
    if (over.length && uses('control'))
      warnings.push(
        `descriptor limit ${soft} (cannot raise it): control holds at most ${soft - 1500} idle connections, not ${over.join(', ')}`,
      );
  }
}

function installMissing() {
  const want = [
    ['gcc', 'gcc'],
    ['socat', 'socat'],
    ['haproxy', 'haproxy'],
    ['iperf3', 'iperf3'],
  ].filter(([cmd]) => !have(cmd));
  if (!want.length) return;
  const pkgs = want.map(([, p]) => p);
  if (!isRoot || opt['no-install']) {
    say(
      `bench: not installed: ${pkgs.join(' ')} — the systems that need them are skipped (apt-get install -y ${pkgs.join(' ')})`,
    );
    return;
  }
  say(`bench: installing ${pkgs.join(' ')} (apt-get)…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
  if (r.status !== 0) say(`bench: apt-get install ${pkgs.join(' ')} failed (exit ${r.status})`);
}

function newest(dir) {
  let t = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** The load generator and the C echo upstream, each built from its one .c file with gcc -O2. */
function buildLoadgen() {
  for (const [name, out, what] of [
    ['loadgen.c', ctx.loadgen, 'the load generator'],
    ['upstream.c', ctx.upstream, 'the C echo upstream'],
  ]) {
    const src = join(benchDir, name);
    if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) continue;
    if (!have('gcc')) {
      say(`bench: gcc is needed to build ${what} (apt-get install gcc)`);
      process.exit(1);
    }
    say(`bench: building ${what} (gcc -O2 bench/${name})…`);
    execFileSync('gcc', ['-O2', '-Wall', '-o', out, src], { stdio: 'inherit' });
  }
}

function buildKeyport(dir = ctx.keyportRoot) {
  const entry = join(dir, 'dist', 'launcher', 'main.js');
  const stale = !existsSync(entry) || newest(join(dir, 'src')) > statSync(entry).mtimeMs;
  if (!stale || opt['no-build']) {
    if (stale)
      warnings.push(
        'dist/ is older than src/ and --no-build was given: keyport ran from the existing build',
      );
    return;
  }
  say('bench: building keyport (npm run build)…');
  const r = spawnSync('npm', ['run', '-s', 'build'], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) {
    ctx.buildError = `npm run build failed: ${`${r.stdout}${r.stderr}`.trim().split('\n').slice(0, 3).join(' / ')}`;
    say(`bench: ${ctx.buildError}`);
  }
}

async function prepareWine() {
  // A Wine prefix of the benchmark's own: a test run (npm test) waits for its prefix's
  // wineserver (wineserver -w), and must neither wait for ours nor share its pinning. What is
  // only read (the Windows Node, Wine 10's trixie root) is shared with the project's cache.
  const cache = resolve(opt['wine-cache'] ?? join(outDir, 'wine-cache'));
  const projectCache = resolve(process.env.KEYPORT_CACHE ?? join(root, '.cache'));
  process.env.KEYPORT_CACHE = cache;
  try {
    const paths = await import(join(root, 'dist', 'launcher', 'paths.js'));
    const setup = paths.wineSetup();
    ctx.wineSetup = setup;
    ctx.winePrefix = setup.prefix;
    ctx.windowsNode = setup.nodeVersion;
    const share = (sub) => {
      const shared = join(projectCache, sub);
      const mine = join(cache, sub);
      mkdirSync(dirname(mine), { recursive: true });
      if (cache !== projectCache && existsSync(shared) && !existsSync(mine))
        symlinkSync(shared, mine);
    };
    share(join('wine', `node-v${setup.nodeVersion}`));
    if (setup.release === '10' && !setup.configured) share(join('wine10', 'root'));
    const { provisionWine } = await import(join(root, 'dist', 'launcher', 'provision.js'));
    provisionWine((l) => say(`bench: ${l}`), setup);
    ctx.wineVersion = wineVersion(setup);
  } catch (err) {
    ctx.wineError = `the Windows code path could not be provisioned: ${err.message.split('\n')[0]}`;
    say(`bench: ${ctx.wineError}`);
  }
}

/** `wine64 --version` of the Wine in use (Wine 10's runs inside its root, through the wrapper). */
function wineVersion(setup) {
  const r = spawnSync(setup.loader, ['--version'], {
    encoding: 'utf8',
    env: { ...process.env, WINEPREFIX: setup.prefix },
  });
  return r.status === 0 ? r.stdout.trim() : `Wine ${setup.release}`;
}

async function wineEnvOf() {
  const paths = await import(join(root, 'dist', 'launcher', 'paths.js'));
  return paths.wineEnv(ctx.wineSetup);
}

async function wineserverWait() {
  const setup = ctx.wineSetup;
  if (!setup || !existsSync(setup.wineserver)) return;
  const env = await wineEnvOf();
  const r = spawnSync(setup.wineserver, ['-w'], { env, stdio: 'ignore', timeout: 15000 });
  // our own prefix: if something of it still runs after 15 s, end it
  if (r.error) spawnSync(setup.wineserver, ['-k'], { env, stdio: 'ignore' });
}

function keyportCommit() {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      cwd: ctx.keyportRoot,
      encoding: 'utf8',
    }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--', 'src'], {
        stdio: ['ignore', 'pipe', 'ignore'],
        cwd: ctx.keyportRoot,
        encoding: 'utf8',
      }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: 'unknown', dirty: false };
  }
}

// ---- the run -------------------------------------------------------------------------------

let current = null;
let currentUpstream = null;
let aborting = false;
async function cleanup() {
  for (const c of tracked) c.kill('SIGKILL');
  if (current) await current.stop().catch(() => {});
  if (currentUpstream) await currentUpstream.stop().catch(() => {});
  await wineserverWait();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    if (aborting) process.exit(130);
    aborting = true;
    say(`\nbench: ${sig}: stopping (no results are written)…`);
    await cleanup();
    process.exit(130);
  });
}

raiseOwnNofile(262144);
mkdirSync(outDir, { recursive: true });
// Everything we spawn inherits our nice value (the main thread's, which spawns them).
ctx.nice = Number(opt.nice ?? (isRoot ? -10 : 0));
if (ctx.nice) {
  const r = spawnSync('renice', ['-n', String(ctx.nice), '-p', String(process.pid)], {
    stdio: 'ignore',
  });
  if (r.status !== 0) {
    warnings.push(`could not set nice ${ctx.nice} (not root?): ran at the default priority`);
    ctx.nice = 0;
  }
}
installMissing();
buildLoadgen();

const allSystems = makeSystems(ctx);
const selected = opt.systems
  ? opt.systems.split(',').map((n) => {
      const s = allSystems.find((x) => x.name === n.trim());
      if (!s) {
        say(`bench: unknown system ${n} (have: ${allSystems.map((x) => x.name).join(', ')})`);
        process.exit(2);
      }
      return s;
    })
  : allSystems;
const applicable = (w, s) =>
  s.roles.includes(w.role) &&
  (!w.needsApi || s.hasApi) &&
  (!s.onlyWorkloads || s.onlyWorkloads.includes(w.name));
const used = selected.filter((s) => workloads.some((w) => applicable(w, s)));

if (used.some((s) => s.isKeyport) && !opt['dry-run']) buildKeyport(); // a plan builds nothing
if (used.some((s) => s.platform === 'wine')) {
  if (!existsSync(join(root, 'dist', 'launcher', 'provision.js'))) buildKeyport(root);
  await prepareWine();
}

const systemInfo = {};
for (const s of used) {
  const reason = await s.check();
  systemInfo[s.name] = { label: s.label, platform: s.platform, available: !reason, reason };
  say(`bench: ${s.name.padEnd(14)} ${reason ? `not run: ${reason}` : s.label}`);
}
const active = used.filter((s) => systemInfo[s.name].available);

const plan = [];
for (let r = 0; r < runs; r++)
  for (const w of workloads) {
    const list = active.filter((s) => applicable(w, s));
    const k = list.length ? r % list.length : 0;
    for (const s of [...list.slice(k), ...list.slice(0, k)]) plan.push({ run: r, w, s });
  }
// seconds one measurement takes: its windows, plus starting and stopping (Wine's take ~4 s)
const guess = (p) => p.w.estimate(ctx, p.s) + (p.s.platform === 'wine' ? 4 : 0.5);
const estimate = plan.reduce((a, p) => a + guess(p), 0);
say(
  `bench: ${plan.length} measurements (${runs} run(s) × ${workloads.length} workload(s)), about ${Math.ceil(estimate / 60)} min; ` +
    `servers on CPU ${serverCpu ?? '*'}, load on CPU ${loadCpu ?? '*'}; logs in ${relative(root, logDir)}`,
);

if (opt['dry-run']) {
  for (const p of plan)
    say(
      `  run ${p.run + 1} ${p.w.name.padEnd(14)} ${p.s.name.padEnd(14)} ~${Math.round(guess(p))} s`,
    );
  process.exit(0);
}

const samples = [];
const disabled = new Map(); // system → reason (cannot start)
const disabledRole = new Map(); // system:role → reason (started, but the listener does not answer)
let done = 0;

const spent = new Map(); // system:workload → seconds of the measurements done
function eta() {
  let left = 0;
  for (const q of plan.slice(done)) {
    const k = `${q.s.name}:${q.w.name}`;
    const had = spent.get(k);
    left += had ? had.sum / had.n : guess(q);
  }
  return left < 60 ? `${Math.round(left)} s` : `${Math.round(left / 60)} min`;
}

function progressLine(p, sample, secs) {
  const k = `${p.s.name}:${p.w.name}`;
  const had = spent.get(k) ?? { sum: 0, n: 0 };
  spent.set(k, { sum: had.sum + secs, n: had.n + 1 });
  const head = `[${String(++done).padStart(3)}/${plan.length}] run ${p.run + 1} ${p.w.name.padEnd(14)} ${p.s.name.padEnd(14)}`;
  if (sample.skipped) return `${head} skipped: ${sample.reason}`;
  if (!sample.ok) return `${head} FAILED: ${sample.error}`;
  const m = sample.metrics;
  const main = `${fmt(m[p.w.key], p.w.unit)} ${p.w.unit}`;
  const bits = [];
  if (m.p99_us !== undefined)
    bits.push(
      `p50 ${fmt(m.p50_us, 'us')} µs, p99 ${fmt(m.p99_us, 'us')} µs${m.p999_us !== undefined ? `, p999 ${fmt(m.p999_us, 'us')} µs` : ''}`,
    );
  if (m.first_conn_per_s != null)
    bits.push(
      `first ${m.rate_span_s} s ${fmt(m.first_conn_per_s)} → last ${m.rate_span_s} s ${fmt(m.last_conn_per_s)} conn/s`,
    );
  if (m.errors) bits.push(`ERRORS ${m.errors} (${m.errors_by_kind})`);
  if (m.relay_ms_per_gb != null) bits.push(`relay ${fmt(m.relay_ms_per_gb)} ms CPU/GB`);
  if (m.conns_list !== undefined)
    for (const n of m.conns_list.split(','))
      bits.push(
        `${fmt(Number(n), 'int')} idle: ${fmt(m[`at${n}_quiet_rt_per_s`])} rt/s quiet, ` +
          `page ${fmt(m[`at${n}_page_cost_pct`], 'pct')}% p99 ${fmt(m[`at${n}_page_p99_ratio`], 'ratio')}, ` +
          `loop ${fmt(m[`at${n}_loop_cost_pct`], 'pct')}% p99 ${fmt(m[`at${n}_loop_p99_ratio`], 'ratio')} ` +
          `(API ${fmt(m[`at${n}_loop_api_req_per_s`])} req/s, p99 ${fmt(m[`at${n}_loop_api_p99_ms`])} ms)`,
      );
  if (m.conns !== undefined)
    bits.push(`${fmt(m.conns)} conns, ${fmt(m.mem_before_kib)} → ${fmt(m.mem_after_kib)} KiB`);
  if (m.server_cpu_pct !== undefined && m.server_cpu_pct !== null)
    bits.push(
      `server CPU ${fmt(m.server_cpu_pct, 'pct')}%${m.wineserver_cpu_pct != null ? ` (wineserver ${fmt(m.wineserver_cpu_pct, 'pct')}%)` : ''}`,
    );
  if (m.loadgen_cpu_pct !== undefined && m.loadgen_cpu_pct !== null)
    bits.push(`load CPU ${fmt(m.loadgen_cpu_pct, 'pct')}%`);
  if (m.upstream_cpu_pct != null) bits.push(`upstream CPU ${fmt(m.upstream_cpu_pct, 'pct')}%`);
  if (m.other_cpu_pct > 20) bits.push(`OTHER CPU ${fmt(m.other_cpu_pct, 'pct')}%`);
  return `${head} ${main}  (${bits.join('; ')}) ${secs.toFixed(0)} s, ~${eta()} left`;
}

for (const p of plan) {
  if (aborting) break;
  const { w, s } = p;
  const t = Date.now();
  const base = { run: p.run + 1, workload: w.name, system: s.name };
  let sample;
  const roleKey = `${s.name}:${w.role}`;
  if (disabled.has(s.name))
    sample = { ...base, ok: false, skipped: true, reason: disabled.get(s.name) };
  else if (disabledRole.has(roleKey))
    sample = { ...base, ok: false, skipped: true, reason: disabledRole.get(roleKey) };
  else {
    const startOpts = {
      ...(w.role === 'relay' ? { target: `127.0.0.1:${await freePort()}` } : {}),
      ...w.startOpts?.(ctx, s),
    };
    ctx.current = { workload: w.name, run: p.run + 1 };
    // The C echo upstream, fresh for this measurement, listens before the relay starts.
    let upstream = null;
    if (w.upstream === 'echo' && s.name !== 'direct') {
      try {
        upstream = await startUpstream(ctx, Number(startOpts.target.split(':').pop()));
        currentUpstream = upstream;
        startOpts.upstream = upstream;
      } catch (err) {
        sample = { ...base, ok: false, error: err.message };
      }
    }
    // (when the upstream did not start, sample is already its error: no relay to measure)
    // A start that fails because a port was taken meanwhile (the machine is shared) is tried
    // once more with fresh ports; any other failure is the system's.
    for (let attempt = 0; !sample && !current; attempt++) {
      try {
        current = await s.start(w.role, startOpts);
      } catch (err) {
        if (attempt === 0 && /already in use|EADDRINUSE/.test(err.message ?? '')) {
          say(`bench: ${s.name}: a port was taken meanwhile (${err.message}); starting it again`);
          continue;
        }
        current = null;
        const reason =
          err instanceof StartError ? err.message : `start failed: ${err.message ?? err}`;
        if (!(err instanceof StartError)) say(`bench: ${s.name}: ${err.stack ?? err}`);
        if (!(err instanceof StartError) || err.systemWide) disabled.set(s.name, reason);
        sample = { ...base, ok: false, skipped: true, reason };
      }
    }
    if (current) {
      // Probe: one 64 B echo (through the relay to the C echo upstream, or to a throwaway echo
      // upstream before iperf3 -s takes the port), 3 s at most.
      let probe = { ok: true };
      if (w.role === 'echo' || upstream) probe = await probeEcho(current.port, { timeoutMs: 3000 });
      else if (s.name !== 'direct') {
        const tport = Number(startOpts.target.split(':').pop());
        const up = await tempEchoServer(tport).catch((err) => ({ err }));
        if (up.err) probe = { ok: false, harness: true, reason: `${up.err.code ?? up.err}` };
        else {
          probe = await probeEcho(current.port, { timeoutMs: 3000 });
          await up.close();
        }
      }
      if (probe.harness) {
        // the port for the throwaway upstream was taken meanwhile: this measurement only
        sample = {
          ...base,
          ok: false,
          error: `could not listen on the upstream port ${startOpts.target}: ${probe.reason}`,
        };
      } else if (!probe.ok) {
        const what =
          w.role === 'echo'
            ? 'echo listener'
            : `forward listener (to ${upstream ? 'the C echo upstream on ' : ''}${startOpts.target})`;
        const reason = `${what} 127.0.0.1:${current.port} did not answer: ${probe.reason}`;
        disabledRole.set(roleKey, reason);
        sample = { ...base, ok: false, skipped: true, reason };
      } else {
        let metrics;
        try {
          metrics = await w.run(ctx, s, current, { ...startOpts, runIndex: p.run });
        } catch (err) {
          metrics = { error: `harness error: ${err.stack ?? err}` };
        }
        if (current.sawApiLine === false) {
          const msg = `${s.name}: no log line with "api":"127.0.0.1:PORT" was seen (only /healthz told it was up)`;
          if (!warnings.includes(msg)) warnings.push(msg);
        }
        sample = metrics.error
          ? { ...base, ok: false, error: metrics.error }
          : { ...base, ok: true, metrics };
      }
      await current.stop().catch(() => {});
      if (ctx.profileDir && ctx.windows.length) {
        const exit = performance.now() / 1000;
        const windows = ctx.windows.map(([a, b]) => [exit - a, exit - b]);
        const dir = join(ctx.profileDir, `${w.name}-${s.name}-run${p.run + 1}`);
        if (existsSync(dir))
          writeFileSync(
            join(dir, 'measured-windows.json'),
            `${JSON.stringify({ windows_before_exit_s: windows })}\n`,
          );
      }
      ctx.windows = [];
      if (current.pid && alive(current.pid))
        warnings.push(`${s.name}: process ${current.pid} outlived its stop`);
      current = null;
    }
    if (upstream) {
      const st = await upstream.stop().catch(() => null);
      currentUpstream = null;
      if (sample.ok && st) {
        // descriptors or memory the upstream ran out of would make it a limit: counted
        sample.metrics.upstream_accept_errors = st.accept_errors;
        sample.metrics.upstream_accepted = st.accepted;
      }
    }
  }
  if (aborting) break; // this measurement was cut short: not a result
  samples.push(sample);
  say(progressLine(p, sample, (Date.now() - t) / 1000));
}
// interrupted: the signal handler cleans up and exits; no (partial) results are written
if (aborting) await new Promise(() => {});

if (used.some((s) => s.platform === 'wine')) await wineserverWait();

// ---- results -------------------------------------------------------------------------------

const noisy = samples.filter((x) => x.ok && x.metrics.other_cpu_pct > 20);
if (noisy.length)
  warnings.push(
    `${noisy.length} measurement(s) saw more than 20% of a core used by other processes on this machine ` +
      `(e.g. ${noisy[0].system} × ${noisy[0].workload}: ${fmt(noisy[0].metrics.other_cpu_pct, 'pct')}%): ` +
      'run again on a quiet machine before quoting them',
  );
// bulk is expected to fill the load core (direct is what the load core moves alone)
const isBulk = (x) => x.workload.startsWith('bulk');
const satLoad = samples.filter(
  (x) => x.ok && !isBulk(x) && (x.metrics.load_core_pct ?? x.metrics.loadgen_cpu_pct ?? 0) > 90,
);
if (satLoad.length)
  warnings.push(
    `the load core (load generator + upstream) was more than 90% busy in ${satLoad.length} measurement(s) ` +
      `(e.g. ${satLoad[0].system} × ${satLoad[0].workload}: ${fmt(satLoad[0].metrics.load_core_pct ?? satLoad[0].metrics.loadgen_cpu_pct, 'pct')}%): the load may have been the limit there`,
  );
const satUp = samples.filter((x) => x.ok && !isBulk(x) && x.metrics.upstream_cpu_pct > 50);
if (satUp.length)
  warnings.push(
    `the C echo upstream used more than 50% of the load core in ${satUp.length} measurement(s) ` +
      `(e.g. ${satUp[0].system} × ${satUp[0].workload}: ${fmt(satUp[0].metrics.upstream_cpu_pct, 'pct')}%)`,
  );
const upErr = samples.filter((x) => x.ok && x.metrics.upstream_accept_errors > 0);
if (upErr.length)
  warnings.push(
    `the C echo upstream failed accepts (descriptors?) in ${upErr.length} measurement(s) ` +
      `(e.g. ${upErr[0].system} × ${upErr[0].workload}: ${upErr[0].metrics.upstream_accept_errors})`,
  );

const summary = summarize(samples, workloads, used);
const rat = ratios(summary, workloads, used);
const date = startedAt.toISOString().slice(0, 10);
const res = {
  date,
  started: startedAt.toISOString(),
  elapsed_s: (Date.now() - t0) / 1000,
  machine: describeMachine({
    windowsNode: ctx.windowsNode,
    wine: used.some((s) => s.platform === 'wine') ? (ctx.wineVersion ?? null) : null,
    loadavgAtStart,
  }),
  keyport: keyportCommit(),
  config: {
    quick: opt.quick,
    wine: wineRelease,
    runs,
    durations,
    idleConns,
    relayIdleConns,
    controlConns,
    connrateInflight: CONNRATE_INFLIGHT,
    serverCpu,
    loadCpu,
    nice: ctx.nice,
    workloads: workloads.map((w) => w.name),
    systems: used.map((s) => s.name),
  },
  systems: systemInfo,
  workloads: Object.fromEntries(
    workloads.map((w) => [
      w.name,
      { title: w.title, metric: w.key, unit: w.unit, higher_is_better: w.higher },
    ]),
  ),
  summary,
  ratios: rat,
  targets: targets(summary, rat),
  warnings,
  samples,
};
const md = markdown(res, workloads, used);
const partial =
  opt.only ||
  opt.systems ||
  opt.runs ||
  opt.duration ||
  opt.sustain ||
  opt.warmup ||
  opt['idle-conns'] ||
  opt['control-conns'];
const resultsDir = join(benchDir, 'results');
mkdirSync(resultsDir, { recursive: true });
const baseName = `${date}${wineRelease === '8' ? '' : `-wine${wineRelease}`}${opt.quick ? '-quick' : partial ? '-partial' : ''}${opt.profile ? '-profile' : ''}`;
// a second run of the same kind on the same day gets -2, -3…: never overwrite a result
let name = opt.name ?? baseName;
for (let i = 2; !opt.name && existsSync(join(resultsDir, `${name}.json`)); i++)
  name = `${baseName}-${i}`;
writeFileSync(join(resultsDir, `${name}.json`), `${JSON.stringify(res, null, 2)}\n`);
writeFileSync(join(resultsDir, `${name}.md`), md);
if (!opt.quick && !partial && !opt.name && !opt.profile && wineRelease === '8')
  copyFileSync(join(resultsDir, `${name}.md`), join(resultsDir, 'latest.md'));
process.stdout.write(`\n${md}\n`);
if (ctx.profileDir && existsSync(ctx.profileDir)) {
  const { formatTop, profileFiles } = await import('./lib/profile-top.mjs');
  for (const dir of readdirSync(ctx.profileDir).sort()) {
    const files = profileFiles([join(ctx.profileDir, dir)]);
    // the biggest profile of a directory is the engine's / server's process
    const main = files.sort((a, b) => statSync(b).size - statSync(a).size)[0];
    if (main) say(`\n${dir}: ${formatTop(main, 12)}`);
  }
  say(
    `\nbench: CPU profiles in ${relative(root, ctx.profileDir)} (open them in Chrome DevTools, or node bench/lib/profile-top.mjs DIR)`,
  );
}
say(
  `bench: wrote ${relative(root, join(resultsDir, `${name}.json`))} and .md (${Math.round(res.elapsed_s)} s)`,
);
