// Process plumbing for the benchmark: spawning pinned processes, reading their CPU time and
// memory from /proc, finding process trees, waiting for ports, stopping cleanly.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {}

export function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Wraps argv so that it runs on `cpu` (taskset; exec, so the pid stays the command's). */
export function pinnedArgv(argv, { cpu } = {}) {
  return cpu !== undefined && cpu !== null ? ['taskset', '-c', String(cpu), ...argv] : argv;
}

/** Spawns argv with stdout+stderr appended to logFile (or piped stdout when pipeStdout). */
export function spawnLogged(argv, { logFile, env, cwd, cpu, pipeStdout, stdin } = {}) {
  const full = pinnedArgv(argv, { cpu });
  mkdirSync(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(full[0], full.slice(1), {
      env: env ?? process.env,
      cwd,
      stdio: [stdin ?? 'ignore', pipeStdout ? 'pipe' : fd, fd],
    });
    child.exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
    child.on('error', () => {});
    return child;
  } finally {
    closeSync(fd);
  }
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops a child: signal, wait up to graceMs, then SIGKILL; resolves when it has exited. */
export async function stopChild(child, { signal = 'SIGTERM', graceMs = 3000 } = {}) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = child.exited ?? new Promise((r) => child.on('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Kills pids (not ours to wait for, e.g. forked socat children) and waits until they are gone. */
export async function killPids(pids, graceMs = 2000) {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {}
  }
  const end = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < end) await sleep(50);
  for (const p of pids.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {}
  }
  // a process holding thousands of sockets takes a moment to die: wait up to 3 s more
  const end2 = Date.now() + 3000;
  while (pids.some(alive) && Date.now() < end2) await sleep(50);
}

function readProc(pid, file) {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
}

/** {pid, ppid, comm, ticks (utime+stime), childTicks (cutime+cstime)} or null. */
export function procStat(pid) {
  const s = readProc(pid, 'stat');
  if (!s) return null;
  const close = s.lastIndexOf(')');
  const comm = s.slice(s.indexOf('(') + 1, close);
  const f = s.slice(close + 2).split(' ');
  // f[0] = state (field 3); utime = field 14 → f[11]
  return {
    pid,
    ppid: Number(f[1]),
    comm,
    ticks: Number(f[11]) + Number(f[12]),
    childTicks: Number(f[13]) + Number(f[14]),
    start: f[19], // starttime (field 22): tells a reused pid apart
  };
}

export function allPids() {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** pid and every descendant (scanned from /proc). */
export function processTree(root) {
  const kids = new Map();
  for (const pid of allPids()) {
    const st = procStat(pid);
    if (!st) continue;
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(pid);
  }
  const out = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop();
    if (!alive(p)) continue;
    out.push(p);
    for (const k of kids.get(p) ?? []) stack.push(k);
  }
  return out;
}

/** Processes whose environment has WINEPREFIX=prefix (node.exe, wineserver, winedevice…). */
export function winePrefixPids(prefix) {
  const want = `WINEPREFIX=${prefix}`;
  const out = [];
  for (const pid of allPids()) {
    const env = readProc(pid, 'environ');
    if (env?.split('\0').includes(want)) out.push(pid);
  }
  return out;
}

/** The wineserver of a prefix (found by its WINEPREFIX environment entry). */
export function wineserverPid(prefix) {
  for (const pid of winePrefixPids(prefix)) {
    const st = procStat(pid);
    if (st && /^wineserver/.test(st.comm)) return pid;
  }
  return null;
}

export function comm(pid) {
  return procStat(pid)?.comm ?? null;
}

export function exe(pid) {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

/** CPU seconds a process's live threads have run (schedstat, exact to the ns; else ticks). */
function ownSeconds(p, st) {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${p}/task`)) {
      const v = readProc(p, `task/${tid}/schedstat`);
      if (v) ns += Number(v.split(' ')[0]);
    }
    return ns / 1e9;
  } catch {
    return st.ticks / clkTck;
  }
}

/**
 * A CPU snapshot of a set of processes: per process, its threads' run time from
 * /proc/PID/task/TID/schedstat (the tick counts of /proc/PID/stat round a short-lived socat
 * child down to 0) and its reaped children's time (cutime+cstime, ticks). Compare two with
 * cpuDelta().
 */
export function cpuSnapshot(pids) {
  const procs = new Map();
  for (const p of new Set(pids)) {
    if (!p) continue;
    const st = procStat(p);
    if (!st) continue;
    procs.set(p, { start: st.start, own: ownSeconds(p, st), reaped: st.childTicks / clkTck });
  }
  return procs;
}

/**
 * CPU seconds used between two snapshots: what processes alive at both ends ran, plus all of
 * what new ones ran, plus what their children reaped meanwhile ran — less the part that
 * processes gone since the first snapshot had already run by then (a gone child's whole time
 * lands in its parent's reaped time). Never negative.
 */
export function cpuDelta(a, b) {
  let both = 0;
  let reaped = 0;
  let goneBefore = 0;
  for (const [p, y] of b) {
    const x = a.get(p);
    if (x && x.start === y.start) {
      both += Math.max(0, y.own - x.own);
      reaped += Math.max(0, y.reaped - x.reaped);
    } else both += y.own + y.reaped;
  }
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y || y.start !== x.start) goneBefore += x.own;
  }
  return both + Math.max(0, reaped - goneBefore);
}

/** Busy CPU seconds of the whole machine (all cores) so far, from /proc/stat. */
export function machineBusySeconds() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / clkTck;
}

/** TCP sockets in TIME_WAIT in this network namespace (/proc/net/sockstat), or null. */
export function timeWaitCount() {
  try {
    const m = readFileSync('/proc/net/sockstat', 'utf8').match(/^TCP:.*\btw (\d+)/m);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** VmRSS in KiB, or null. */
export function rssKiB(pid) {
  const s = readProc(pid, 'status');
  const m = s?.match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) : null;
}

/** Proportional set size in KiB (shared pages split among sharers), or null. */
export function pssKiB(pid) {
  const s = readProc(pid, 'smaps_rollup');
  const m = s?.match(/^Pss:\s+(\d+) kB/m);
  return m ? Number(m[1]) : null;
}

/** Pins every thread of each pid to `cpu` (taskset -a -p). Returns how many it pinned. */
export function pinPids(pids, cpu) {
  let n = 0;
  for (const p of pids) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(p)], { stdio: 'ignore' });
    if (r.status === 0) n++;
  }
  return n;
}

/** Sets the nice value of every thread of each pid (setpriority is per thread on Linux). */
export function renicePids(pids, nice) {
  for (const p of pids) {
    let tids = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    if (tids.length) spawnSync('renice', ['-n', String(nice), '-p', ...tids], { stdio: 'ignore' });
  }
}

/** Runs fn with this process's main thread pinned to cpu, so that what it spawns starts there. */
export function withAffinity(cpu, fn) {
  const prev = execFileSync('taskset', ['-p', '-c', String(process.pid)], { encoding: 'utf8' })
    .split(':')
    .pop()
    .trim();
  spawnSync('taskset', ['-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
  try {
    return fn();
  } finally {
    spawnSync('taskset', ['-p', '-c', prev, String(process.pid)], { stdio: 'ignore' });
  }
}

/** Local ports of every TCP socket of this network namespace, in any state (TIME_WAIT too). */
function portsInUse() {
  const used = new Set();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local) used.add(Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16));
    }
  }
  return used;
}

function ephemeralRange() {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    return [lo, hi];
  } catch {
    return [32768, 60999];
  }
}

const handedOut = new Set();

/** Binds 127.0.0.1:port (Node sets SO_REUSEADDR) and closes it: resolves the port, or null. */
function tryBind(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(null));
    s.listen({ host: '127.0.0.1', port }, () => {
      const got = s.address().port;
      s.close(() => resolve(got));
    });
  });
}

/**
 * A port for a listener: one no socket of this namespace uses in any state and that this run
 * has not handed out before, taken below the ephemeral range (10 000 up to it). A port from
 * the ephemeral range could be taken meanwhile by any outgoing connection — the sustained
 * connection rate leaves tens of thousands of them in TIME_WAIT there — and a listener that
 * binds without SO_REUSEADDR (keyport under Wine: Windows semantics) fails on a port that a
 * TIME_WAIT socket still holds. Falls back to a port the kernel picks.
 */
export async function freePort() {
  const [lo] = ephemeralRange();
  const first = 10000;
  if (lo - first >= 1000) {
    const used = portsInUse();
    for (let i = 0; i < 200; i++) {
      const port = first + Math.floor(Math.random() * (lo - first));
      if (used.has(port) || handedOut.has(port)) continue;
      if ((await tryBind(port)) === port) {
        handedOut.add(port);
        return port;
      }
    }
  }
  for (;;) {
    const port = await tryBind(0);
    if (port && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Resolves true once a TCP connect to host:port succeeds, false after timeoutMs or if gone() says so. */
export async function waitPort(port, { host = '127.0.0.1', timeoutMs = 10000, gone } = {}) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (gone?.()) return false;
    const ok = await new Promise((res) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
      s.setTimeout(500, () => {
        s.destroy();
        res(false);
      });
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

/**
 * One echo round trip of `size` bytes through host:port. Resolves {ok:true, us} or
 * {ok:false, reason} — never hangs longer than timeoutMs.
 */
export function probeEcho(port, { host = '127.0.0.1', size = 64, timeoutMs = 3000 } = {}) {
  return new Promise((resolve) => {
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) payload[i] = (i * 7 + 13) & 0xff;
    const t0 = process.hrtime.bigint();
    let got = Buffer.alloc(0);
    let connected = false;
    let done = false;
    const s = net.connect({ host, port });
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () =>
        finish({
          ok: false,
          reason: connected
            ? `connected, but no ${size} B echo came back within ${timeoutMs / 1000} s (got ${got.length} B)`
            : `no TCP connection within ${timeoutMs / 1000} s`,
        }),
      timeoutMs,
    );
    s.on('connect', () => {
      connected = true;
      s.write(payload);
    });
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= size) {
        finish(
          got.subarray(0, size).equals(payload)
            ? { ok: true, us: Number(process.hrtime.bigint() - t0) / 1000 }
            : { ok: false, reason: 'the echo came back with different bytes' },
        );
      }
    });
    s.on('end', () =>
      finish({ ok: false, reason: `the server closed the connection after ${got.length} B` }),
    );
    s.on('error', (e) => finish({ ok: false, reason: `${e.code ?? e.message}` }));
  });
}

/** A throwaway in-process echo server (the upstream for probing a relay before iperf3 takes the port). */
export function tempEchoServer(port) {
  return new Promise((resolve, reject) => {
    const sockets = new Set();
    const srv = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port }, () =>
      resolve({
        close: () =>
          new Promise((r) => {
            for (const s of sockets) s.destroy();
            srv.close(() => r());
          }),
      }),
    );
  });
}

/** Last n lines of a file, for error messages. */
export function tail(file, n = 5) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}
