// The workloads. Each gets a started, probed instance of a system and returns a flat object of
// metrics (numbers, plus a few strings and per-second series). Load runs on ctx.loadCpu; the
// server on ctx.serverCpu. Relay workloads (role 'relay') measure a forward listener in front
// of an upstream that also runs on ctx.loadCpu: the C echo server (upstream: 'echo', started by
// the harness with startUpstream before the relay) or iperf3 -s (upstream: 'iperf3', started
// by the bulk workloads themselves). Echo-listener workloads (role 'echo') measure the echo
// listener alone; they are the secondary table.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  comm,
  cpuDelta,
  cpuSnapshot,
  machineBusySeconds,
  pssKiB,
  rssKiB,
  sleep,
  spawnLogged,
  stopChild,
  timeWaitCount,
} from './proc.mjs';

/** Spawns a pinned load process whose stdout is JSON lines; resolves the last non-event line. */
function runJsonProcess(ctx, argv, { name, timeoutMs, onEvent, onResult, stdin = 'ignore' }) {
  const child = spawnLogged(argv, {
    logFile: ctx.logPath(name),
    cpu: ctx.loadCpu,
    pipeStdout: true,
    stdin,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  ctx.track(child);
  return new Promise((resolve) => {
    let result = null;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        return;
      }
      if (obj.event) onEvent?.(obj, child);
      else {
        result = obj;
        onResult?.(obj);
      }
    });
    child.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      ctx.untrack(child);
      rl.close();
      if (timedOut)
        resolve({ error: `${name} did not finish within ${timeoutMs / 1000} s (killed)` });
      else if (result) resolve(result);
      else resolve({ error: `${name} exited (code ${code}, signal ${signal}) without a result` });
    });
  });
}

/**
 * CPU accounting over a window: the server's processes (for a relay: the relay's), the
 * upstream's, the load's, and what the rest of the machine used meanwhile (other_cpu_pct:
 * noise from outside the benchmark). The load generator reports its own CPU over the same
 * window (it may have exited when the window closes); extraPids are further load processes
 * still alive at the end (the API hammer); upstreamPids the upstream's (C echo server, iperf3 -s).
 */
function cpuWindow(inst, { extraPids = () => [], upstreamPids = () => [] } = {}, ctx = null) {
  const wineserver = () => inst.winePids().filter((p) => /^wineserver/.test(comm(p) ?? ''));
  const snap = () => ({
    t: performance.now() / 1000,
    server: cpuSnapshot(inst.cpuPids()),
    ws: cpuSnapshot(wineserver()),
    extra: cpuSnapshot(extraPids()),
    up: cpuSnapshot(upstreamPids()),
    busy: machineBusySeconds(),
  });
  let a = null;
  let b = null;
  return {
    start() {
      a = snap();
    },
    stop() {
      if (a && !b) {
        b = snap();
        ctx?.windows.push([a.t, b.t]); // for --profile: which part of the profile to read
      }
    },
    /** loadCpuS: CPU seconds the load generator reported for the window. */
    result(loadCpuS = 0) {
      if (!a || !b) return {};
      const wall = b.t - a.t;
      const server = cpuDelta(a.server, b.server);
      const load = loadCpuS + cpuDelta(a.extra, b.extra);
      const up = cpuDelta(a.up, b.up);
      const other = Math.max(0, b.busy - a.busy - server - load - up);
      const hasUp = upstreamPids().length > 0 || a.up.size > 0;
      return {
        wall,
        server_cpu_s: server,
        server_cpu_pct: (100 * server) / wall,
        upstream_cpu_pct: hasUp ? (100 * up) / wall : null,
        // the load core: load generator + upstream (both pinned to ctx.loadCpu)
        load_core_pct: (100 * (load + up)) / wall,
        // under Wine: the part of server_cpu_pct spent in the wineserver (Wine's round trips)
        wineserver_cpu_pct: inst.winePids().length ? (100 * cpuDelta(a.ws, b.ws)) / wall : null,
        other_cpu_pct: (100 * other) / wall,
      };
    },
  };
}

const reportedCpu = (r) => (r.cpu ? r.cpu.user_s + r.cpu.sys_s : 0);

/** One loadgen echo run against inst. */
export async function echoMeasure(
  ctx,
  inst,
  conns,
  { duration, warmup, extraPids = () => [], upstream = null } = {},
) {
  const d = { ...ctx.durations, ...(warmup !== undefined ? { warmup } : {}) };
  const upstreamPids = () => (upstream ? [upstream.pid] : []);
  const win = cpuWindow(inst, { extraPids, upstreamPids }, ctx);
  const r = await runJsonProcess(
    ctx,
    [
      ctx.loadgen,
      'echo',
      '--port',
      String(inst.port),
      '--conns',
      String(conns),
      '--size',
      '64',
      '--duration',
      String(duration ?? d.echo),
      '--warmup',
      String(d.warmup),
      '--stall',
      '5',
    ],
    {
      name: 'loadgen',
      timeoutMs: ((duration ?? d.echo) + d.warmup + 40) * 1000,
      onEvent: (ev) => ev.event === 'measure' && win.start(),
      onResult: () => win.stop(),
    },
  );
  if (r.error) return { error: r.error };
  const w = win.result(reportedCpu(r));
  return {
    rt_per_s: r.rt_per_s,
    p50_us: r.lat_us.p50,
    p99_us: r.lat_us.p99,
    p999_us: r.lat_us.p999,
    loadgen_cpu_pct: r.cpu.pct,
    server_cpu_pct: w.server_cpu_pct,
    wineserver_cpu_pct: w.wineserver_cpu_pct,
    server_cpu_us_per_op: r.round_trips ? (w.server_cpu_s * 1e6) / (r.rt_per_s * w.wall) : null,
    upstream_cpu_pct: w.upstream_cpu_pct,
    load_core_pct: w.load_core_pct,
    other_cpu_pct: w.other_cpu_pct,
    ...errorMetrics(r),
    conns_alive: r.alive,
  };
}

/** errors: every failure the load generator counted (whole run), and which kinds they were. */
function errorMetrics(r) {
  const e = r.errors ?? {};
  const errors = Object.values(e).reduce((a, b) => a + b, 0);
  return {
    errors,
    errors_by_kind: Object.entries(e)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(', '),
  };
}

/**
 * Starts the C echo upstream (bench/out/upstream) on 127.0.0.1:port, pinned to the load core.
 * Resolves {pid, port, stop()} once it listens; stop() resolves its counters (accepted,
 * resets, accept_errors, …) or null. Throws when it does not listen within 5 s.
 */
export async function startUpstream(ctx, port) {
  const child = spawnLogged([ctx.upstream, '--port', String(port)], {
    logFile: ctx.logPath('upstream'),
    cpu: ctx.loadCpu,
    pipeStdout: true,
  });
  ctx.track(child);
  const out = collectLines(child);
  if (!(await out.waitFor('listening', 5000))) {
    await stopChild(child, { graceMs: 500 });
    ctx.untrack(child);
    const err = out.lines.find((l) => l.error)?.error;
    throw new Error(
      `the C echo upstream did not listen on 127.0.0.1:${port}${err ? `: ${err}` : ''}`,
    );
  }
  return {
    pid: child.pid,
    port,
    async stop() {
      await stopChild(child, { signal: 'SIGTERM', graceMs: 2000 });
      ctx.untrack(child);
      await sleep(20); // the last line may still be in the pipe
      return out.lines.filter((l) => !l.event && l.mode === 'upstream').pop() ?? null;
    },
  };
}

function echoWorkload(conns) {
  return {
    name: `echo-${conns}`,
    title: `echo 64 B ping-pong, ${conns} connections`,
    role: 'echo',
    key: 'rt_per_s',
    unit: 'round trips/s',
    higher: true,
    estimate: (ctx) => ctx.durations.echo + ctx.durations.warmup + 1,
    run: (ctx, _sys, inst) => echoMeasure(ctx, inst, conns),
  };
}

/** One loadgen connrate run (connect, 64 B echo, close; 64 in flight) against inst. */
async function connrateMeasure(ctx, inst, { duration, upstream = null }) {
  const d = ctx.durations;
  const upstreamPids = () => (upstream ? [upstream.pid] : []);
  const win = cpuWindow(inst, { upstreamPids }, ctx);
  let tw0 = null;
  let tw1 = null;
  const r = await runJsonProcess(
    ctx,
    [
      ctx.loadgen,
      'connrate',
      '--port',
      String(inst.port),
      '--inflight',
      String(CONNRATE_INFLIGHT),
      '--size',
      '64',
      '--duration',
      String(duration),
      '--warmup',
      String(d.warmup),
      '--stall',
      '5',
    ],
    {
      name: 'loadgen',
      timeoutMs: (duration + d.warmup + 40) * 1000,
      onEvent: (ev) => {
        if (ev.event !== 'measure') return;
        win.start();
        tw0 = timeWaitCount();
      },
      onResult: () => {
        win.stop();
        tw1 = timeWaitCount();
      },
    },
  );
  if (r.error) return { error: r.error };
  const w = win.result(reportedCpu(r));
  // the rate over the first and the last seconds of the window: a relay that collapses as
  // TIME_WAIT builds up (ports, memory) shows a last rate well below its first
  const per = r.per_s ?? [];
  const span = Math.max(1, Math.min(10, Math.floor(per.length / 3)));
  const avg = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  return {
    conn_per_s: r.conn_per_s,
    first_conn_per_s: per.length >= 2 ? avg(per.slice(0, span)) : null,
    last_conn_per_s: per.length >= 2 ? avg(per.slice(-span)) : null,
    rate_span_s: span,
    cycles: r.cycles,
    p50_us: r.lat_us.p50,
    p99_us: r.lat_us.p99,
    p999_us: r.lat_us.p999,
    loadgen_cpu_pct: r.cpu.pct,
    server_cpu_pct: w.server_cpu_pct,
    wineserver_cpu_pct: w.wineserver_cpu_pct,
    server_cpu_us_per_op: r.cycles ? (w.server_cpu_s * 1e6) / r.cycles : null,
    upstream_cpu_pct: w.upstream_cpu_pct,
    load_core_pct: w.load_core_pct,
    other_cpu_pct: w.other_cpu_pct,
    ...errorMetrics(r),
    errors_in_window: r.errors_in_window,
    max_gap_s: r.max_gap_s,
    inflight_at_end: r.inflight_at_end,
    time_wait_start: tw0,
    time_wait_end: tw1,
    per_s: per,
    err_per_s: r.err_per_s ?? [],
  };
}

export const CONNRATE_INFLIGHT = 64;

const connrate = {
  name: 'connrate',
  title: 'connection set-up rate at the echo listener (connect, 64 B echo, close; 64 in flight)',
  role: 'echo',
  key: 'conn_per_s',
  unit: 'connections/s',
  higher: true,
  estimate: (ctx) => ctx.durations.connrate + ctx.durations.warmup + 1,
  run: (ctx, _sys, inst) => connrateMeasure(ctx, inst, { duration: ctx.durations.connrate }),
};

function memKiB(inst) {
  const pids = inst.memPids();
  const f = inst.memKind === 'pss-tree' ? pssKiB : rssKiB;
  return pids.reduce((a, p) => a + (f(p) ?? 0), 0);
}

function wineserverKiB(inst) {
  const ws = inst.winePids().find((p) => /^wineserver/.test(comm(p) ?? ''));
  return ws ? rssKiB(ws) : null;
}

/** Opens n connections to inst (each proven by one 64 B echo), measures inst's memory growth. */
async function idleMeasure(ctx, inst, n, { upstream = null } = {}) {
  await sleep(500);
  const mem0 = memKiB(inst);
  const ws0 = wineserverKiB(inst);
  const up0 = upstream ? rssKiB(upstream.pid) : null;
  let mem1 = null;
  let ws1 = null;
  let up1 = null;
  const r = await runJsonProcess(
    ctx,
    [
      ctx.loadgen,
      'idle',
      '--port',
      String(inst.port),
      '--conns',
      String(n),
      '--inflight',
      '100',
      '--size',
      '64',
      '--hold',
      '600',
      '--stall',
      '10',
      '--connect-timeout',
      '60',
    ],
    {
      name: 'loadgen',
      stdin: 'pipe',
      timeoutMs: (120 + n / 100) * 1000,
      onEvent: async (ev, child) => {
        if (ev.event !== 'ready') return;
        await sleep(1000); // let the server settle (allocations after the first echo)
        mem1 = memKiB(inst);
        ws1 = wineserverKiB(inst);
        up1 = upstream ? rssKiB(upstream.pid) : null;
        child.stdin.end(); // tells the load generator to close them all
      },
    },
  );
  if (r.error) return { error: r.error };
  if (mem1 === null) return { error: 'the connections never all came up' };
  return {
    bytes_per_conn: ((mem1 - mem0) * 1024) / n,
    conns: n,
    mem_before_kib: mem0,
    mem_after_kib: mem1,
    mem_kind: inst.memKind === 'pss-tree' ? 'PSS of the process tree' : 'VmRSS',
    wineserver_bytes_per_conn: ws0 !== null && ws1 !== null ? ((ws1 - ws0) * 1024) / n : null,
    upstream_bytes_per_conn: up0 !== null && up1 !== null ? ((up1 - up0) * 1024) / n : null,
    open_per_s: r.open_s > 0 ? n / r.open_s : null,
    loadgen_cpu_pct: r.cpu?.pct,
    dropped_by_server: r.dropped_by_server,
    ...errorMetrics(r),
  };
}

const idle = {
  name: 'idle',
  title: 'memory per idle connection at the echo listener (server RSS growth)',
  role: 'echo',
  key: 'bytes_per_conn',
  unit: 'bytes/connection',
  higher: false,
  estimate: (ctx, sys) => 6 + ctx.idleConns / (sys?.platform === 'wine' ? 1000 : 2000),
  run: (ctx, sys, inst) =>
    idleMeasure(ctx, inst, Math.min(ctx.idleConns, sys.idleConnsCap ?? Number.POSITIVE_INFINITY)),
};

/** Whether something listens on 127.0.0.1:port (from /proc/net/tcp, without connecting). */
function listening(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
        const c = line.trim().split(/\s+/);
        if (c[1]?.endsWith(`:${hex}`) && c[3] === '0A') return true;
      }
    } catch {}
  }
  return false;
}

function bulkWorkload(streams) {
  return {
    name: streams === 1 ? 'bulk' : `bulk-${streams}`,
    title: `bulk relay throughput (iperf3 through the relay to iperf3 -s, ${streams} stream${streams === 1 ? '' : 's'})`,
    role: 'relay',
    upstream: 'iperf3',
    key: 'gbit_per_s',
    unit: 'Gbit/s',
    higher: true,
    estimate: (ctx) => ctx.durations.bulk + ctx.durations.omit + 2,
    run: (ctx, _sys, inst, { target }) => bulkMeasure(ctx, inst, target, streams),
  };
}

async function bulkMeasure(ctx, inst, target, streams) {
  const d = ctx.durations;
  const tport = Number(target.split(':').pop());
  const server = spawnLogged(['iperf3', '-s', '-B', '127.0.0.1', '-p', String(tport)], {
    logFile: ctx.logPath('iperf3-server'),
    cpu: ctx.loadCpu,
  });
  ctx.track(server);
  try {
    const end = Date.now() + 5000;
    while (!listening(tport) && Date.now() < end) await sleep(20);
    if (!listening(tport)) return { error: `iperf3 -s did not listen on ${tport}` };
    const win = cpuWindow(inst, { upstreamPids: () => [server.pid] }, ctx);
    const argv = [
      'iperf3',
      '-c',
      '127.0.0.1',
      '-p',
      String(inst.port),
      '-t',
      String(d.bulk + d.omit),
      '-O',
      String(d.omit),
      ...(streams > 1 ? ['-P', String(streams)] : []),
      '-J',
      '--connect-timeout',
      '3000',
    ];
    const client = spawnLogged(argv, {
      logFile: ctx.logPath('iperf3-client'),
      cpu: ctx.loadCpu,
      pipeStdout: true,
    });
    ctx.track(client);
    let out = '';
    client.stdout.on('data', (b) => {
      out += b;
    });
    const startTimer = setTimeout(() => win.start(), d.omit * 1000 + 100);
    const killTimer = setTimeout(() => client.kill('SIGKILL'), (d.bulk + d.omit + 15) * 1000);
    const { code, signal } = await client.exited;
    win.stop();
    clearTimeout(startTimer);
    clearTimeout(killTimer);
    ctx.untrack(client);
    if (signal === 'SIGKILL')
      return { error: `iperf3 did not finish within ${d.bulk + d.omit + 15} s (killed)` };
    let j;
    try {
      j = JSON.parse(out);
    } catch {
      return { error: `iperf3 exited with code ${code} and no JSON` };
    }
    if (j.error) return { error: `iperf3: ${j.error}` };
    const cpuPct = j.end.cpu_utilization_percent ?? {};
    // the client has exited when the window closes: take its CPU from its own report
    const w0 = win.result(0);
    const w = win.result(((cpuPct.host_total ?? 0) / 100) * (w0.wall ?? 0));
    const gbit = j.end.sum_received.bits_per_second / 1e9;
    const relay = inst.port !== tport; // direct: the client goes straight to iperf3 -s
    return {
      gbit_per_s: gbit,
      streams,
      loadgen_cpu_pct: cpuPct.host_total,
      upstream_cpu_pct: w.upstream_cpu_pct,
      load_core_pct: w.load_core_pct,
      server_cpu_pct: relay ? w.server_cpu_pct : null,
      // relay CPU time per GB (1e9 bytes) carried: CPU seconds per second ÷ GB per second
      relay_ms_per_gb: relay && gbit > 0 ? ((w.server_cpu_pct / 100) * 1000) / (gbit / 8) : null,
      wineserver_cpu_pct: w.wineserver_cpu_pct,
      other_cpu_pct: w.other_cpu_pct,
      retransmits: j.end.sum_sent?.retransmits ?? null,
      errors: 0,
    };
  } finally {
    await stopChild(server, { graceMs: 1000 });
    ctx.untrack(server);
  }
}

/** Waits for a JSON line {"event": name} on a child's stdout (lines collected by collectLines). */
function collectLines(child) {
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    let obj;
    try {
      obj = JSON.parse(line);
    } catch {
      return;
    }
    lines.push(obj);
    for (const w of waiters.splice(0)) w();
  });
  return {
    lines,
    async waitFor(event, timeoutMs, from = 0) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        if (lines.slice(from).some((l) => l.event === event)) return true;
        if (Date.now() > end || child.exitCode !== null) return false;
        await Promise.race([new Promise((r) => waiters.push(r)), sleep(100)]);
      }
    },
  };
}

// ---- control: the control plane at scale (issue 15) -----------------------------------------

/** Connections one load-generator process holds (a process may hold 20 000 descriptors). */
const HOLDER_MAX = 5000;
/** The views' pages of 1 000 items, whose single-request latency and size are measured, and /metrics. */
const VIEWS = ['/connections?limit=1000', '/ops?limit=1000', '/keys?limit=1000', '/metrics'];
const viewName = (p) => p.slice(1).split('?')[0];
const CONDITIONS = { quiet: 'quiet', page: 'status page + scrape', loop: 'two clients looping' };

/** The idle-connection counts measured on sys: --control-conns, within its cap and the descriptors. */
function controlCounts(ctx, sys) {
  const cap = Math.min(sys?.controlConnsCap ?? Number.POSITIVE_INFINITY, ctx.nofile - 1500);
  return [...new Set(ctx.controlConns.map((n) => Math.min(n, cap)))].sort((a, b) => a - b);
}

/** A load-generator process holding n idle connections to port (each proven by one echo). */
async function holdIdle(ctx, port, n) {
  const argv = [ctx.loadgen, 'idle', '--port', String(port), '--conns', String(n), '--size', '64'];
  const opts = ['--inflight', '100', '--hold', '3600', '--stall', '10', '--connect-timeout', '60'];
  const child = spawnLogged([...argv, ...opts], {
    logFile: ctx.logPath('idle-holder'),
    cpu: ctx.loadCpu,
    pipeStdout: true,
    stdin: 'pipe',
  });
  ctx.track(child);
  const out = collectLines(child);
  const ok = await out.waitFor('ready', (60 + n / 100) * 1000);
  return {
    child,
    error: ok ? null : (out.lines.find((l) => l.error)?.error ?? 'not all connections came up'),
    async stop() {
      child.stdin.end(); // the load generator closes them all and exits
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      await child.exited;
      clearTimeout(t);
      ctx.untrack(child);
    },
  };
}

/** A helper of lib/ (api-hammer.mjs, status-page.mjs) driven by go / pause on its stdin. */
function apiClient(ctx, script, args) {
  const child = spawnLogged([process.execPath, join(ctx.benchDir, 'lib', script), ...args], {
    logFile: ctx.logPath(script.replace(/\.mjs$/, '')),
    cpu: ctx.loadCpu,
    pipeStdout: true,
    stdin: 'pipe',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  ctx.track(child);
  const out = collectLines(child);
  return {
    pid: child.pid,
    ready: () => out.waitFor('ready', 100000),
    async send(cmd, event) {
      const mark = out.lines.length;
      child.stdin.write(`${cmd}\n`);
      return out.waitFor(event, 60000, mark);
    },
    /** Ends it; resolves its result line (or null). */
    async stop() {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      await child.exited;
      clearTimeout(t);
      ctx.untrack(child);
      return out.lines.filter((l) => !l.event).pop() ?? null;
    },
  };
}

const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const p99 = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length ? v[Math.ceil(v.length * 0.99) - 1] : null;
};
/** "route 12.3 / 40.1 ms" per route: mean / p99 of its requests. */
const perRoute = (routes) =>
  Object.entries(routes)
    .map(([p, lat]) => `${p} ${fmtMs(mean(lat))} / ${fmtMs(p99(lat))} ms (${lat.length})`)
    .join('; ');
const fmtMs = (v) => (v === null ? '—' : v.toFixed(1));
const statusText = (routes) =>
  Object.entries(routes)
    .map(
      ([p, s]) =>
        `${p} ${
          Object.entries(s)
            .map(([c, k]) => `${c}×${k}`)
            .join(' ') || 'no answer'
        }`,
    )
    .join('; ');

/**
 * The three conditions at n idle connections, in one keyport process, in slices ordered
 * quiet page loop loop page quiet (the reverse on odd runs): the 50-connection ping-pong alone;
 * with a status page polling every 1.5 s and a scrape every 5 s; with two clients looping over
 * the 1 000-item pages. Returns flat metrics at<n>_<condition>_<metric>, or {error}.
 */
async function conditions(ctx, inst, n, runIndex) {
  const api = ['--port', String(inst.apiPort)];
  const loopArgs = [...api, '--paths', VIEWS.slice(0, 3).join(','), '--timeout-ms', '60000'];
  const clients = {
    quiet: [],
    page: [apiClient(ctx, 'status-page.mjs', api)],
    loop: [apiClient(ctx, 'api-hammer.mjs', loopArgs), apiClient(ctx, 'api-hammer.mjs', loopArgs)],
  };
  const all = [...clients.page, ...clients.loop];
  const order = ['quiet', 'page', 'loop', 'loop', 'page', 'quiet'];
  if (runIndex % 2) order.reverse();
  const got = { quiet: [], page: [], loop: [] };
  const perSlice = []; // round trips/s of each slice, in order
  let failure = null;
  let results = [];
  try {
    if (!(await Promise.all(all.map((c) => c.ready()))).every(Boolean))
      return { error: 'the API did not answer its first requests (30 s per route)' };
    let active = 'quiet';
    for (const cond of order) {
      if (cond !== active) {
        for (const c of clients[active]) await c.send('pause', 'paused');
        for (const c of clients[cond])
          if (!(await c.send('go', 'started'))) failure = 'the API did not answer within 60 s';
        active = cond;
      }
      if (failure) break;
      const r = await echoMeasure(ctx, inst, 50, {
        duration: ctx.durations.control,
        warmup: 0.5,
        extraPids: () => clients[cond].map((c) => c.pid),
      });
      if (r.error) {
        failure = `${CONDITIONS[cond]}: ${r.error}`;
        break;
      }
      got[cond].push(r);
      perSlice.push(Math.round(r.rt_per_s));
    }
  } finally {
    results = await Promise.all(all.map((c) => c.stop()));
  }
  if (failure) return { error: failure };
  const [page, ...loops] = results;
  const m = {};
  const k = (cond, what) => `at${n}_${cond}_${what}`;
  const avg = (cond, key) => mean(got[cond].map((r) => r[key]));
  for (const cond of Object.keys(CONDITIONS)) {
    for (const key of ['rt_per_s', 'p99_us', 'p999_us', 'server_cpu_pct', 'load_core_pct'])
      m[k(cond, key)] = avg(cond, key);
    m[k(cond, 'other_cpu_pct')] = avg(cond, 'other_cpu_pct');
    m[k(cond, 'errors')] = got[cond].reduce((a, r) => a + r.errors, 0);
    if (cond === 'quiet') continue;
    m[k(cond, 'cost_pct')] = 100 * (1 - avg(cond, 'rt_per_s') / avg('quiet', 'rt_per_s'));
    m[k(cond, 'p99_ratio')] = avg(cond, 'p99_us') / avg('quiet', 'p99_us');
  }
  // the API as its clients saw it: every request's latency, per route
  const pageRoutes = Object.fromEntries(
    Object.entries(page?.routes ?? {}).map(([p, r]) => [p, r.lat_ms]),
  );
  const loopRoutes = {};
  const loopStatus = {};
  for (const h of loops)
    for (const [p, r] of Object.entries(h?.routes ?? {})) {
      loopRoutes[p] = [...(loopRoutes[p] ?? []), ...r.lat_ms];
      loopStatus[p] = loopStatus[p] ?? {};
      for (const [c, x] of Object.entries(r.status)) loopStatus[p][c] = (loopStatus[p][c] ?? 0) + x;
    }
  for (const [cond, routes] of [
    ['page', pageRoutes],
    ['loop', loopRoutes],
  ]) {
    const lat = Object.values(routes).flat();
    m[k(cond, 'api_requests')] = lat.length;
    m[k(cond, 'api_mean_ms')] = mean(lat);
    m[k(cond, 'api_p99_ms')] = p99(lat);
    m[k(cond, 'api_routes')] = perRoute(routes);
  }
  m[k('page', 'polls')] = page?.polls ?? null;
  m[k('page', 'scrapes')] = page?.scrapes ?? null;
  m[k('page', 'api_errors')] = page?.errors ?? null;
  m[k('page', 'api_statuses')] = page
    ? statusText(Object.fromEntries(Object.entries(page.routes).map(([p, r]) => [p, r.status])))
    : 'no result';
  m[k('loop', 'api_req_per_s')] = loops.reduce((a, h) => a + (h?.req_per_s ?? 0), 0);
  m[k('loop', 'api_errors')] = loops.reduce((a, h) => a + (h?.errors ?? 0), 0);
  m[k('loop', 'api_statuses')] = statusText(loopStatus);
  m[`at${n}_slices`] = order.join(' ');
  m[`at${n}_slices_rt_per_s`] = perSlice; // in the JSON only (an array is no median)
  return m;
}

const control = {
  name: 'control',
  title:
    'the control plane at scale: echo 50 conns, with 1 000 to 18 000 idle connections held, quiet vs a status page + scrape vs two clients looping over the views',
  role: 'echo',
  needsApi: true,
  key: 'page_cost_pct',
  unit: '% of round trips lost to a status page + scrape (most connections)',
  higher: false,
  startOpts: (ctx, sys) => ({ maxConnections: Math.max(...controlCounts(ctx, sys)) + 1000 }),
  estimate(ctx, sys) {
    const wine = sys?.platform === 'wine';
    let held = 0;
    let s = 0;
    for (const n of controlCounts(ctx, sys)) {
      s += (n - held) / (wine ? 800 : 3000); // opening them
      s += (wine ? 12 : 5) + 6 * (ctx.durations.control + 1); // probe, clients, 6 slices
      held = n;
    }
    return s;
  },
  async run(ctx, sys, inst, { runIndex }) {
    const counts = controlCounts(ctx, sys);
    const m = { conns_list: counts.join(',') };
    const holders = [];
    let held = 0;
    try {
      for (const n of counts) {
        for (; held < n; held += HOLDER_MAX) {
          const h = await holdIdle(ctx, inst.port, Math.min(HOLDER_MAX, n - held));
          holders.push(h);
          if (h.error) return { error: `opening ${n} idle connections: ${h.error}` };
        }
        held = n;
        await sleep(1000);
        // one request at a time, nothing else looping: 20 per view, the median
        const probe = await runJsonProcess(
          ctx,
          [
            process.execPath,
            join(ctx.benchDir, 'lib', 'api-probe.mjs'),
            '--port',
            String(inst.apiPort),
            '--paths',
            VIEWS.join(','),
            '--n',
            '20',
          ],
          { name: 'api-probe', timeoutMs: 600000 },
        );
        if (probe.error) return { error: `${n} connections: api-probe: ${probe.error}` };
        for (const [p, r] of Object.entries(probe.paths)) {
          m[`at${n}_single_ms_${viewName(p)}`] = r.median_ms;
          m[`at${n}_bytes_${viewName(p)}`] = r.bytes;
        }
        const r = await conditions(ctx, inst, n, runIndex);
        if (r.error) return { error: `${n} idle connections: ${r.error}` };
        Object.assign(m, r);
        if (holders.some((h) => h.child.exitCode !== null))
          return { error: `${n} idle connections: keyport dropped some (a holder exited)` };
      }
    } finally {
      await Promise.all(holders.map((h) => h.stop()));
    }
    const top = counts.at(-1);
    m.page_cost_pct = m[`at${top}_page_cost_pct`];
    m.loop_cost_pct = m[`at${top}_loop_cost_pct`];
    m.other_cpu_pct = mean(counts.map((n) => m[`at${n}_quiet_other_cpu_pct`]));
    m.load_core_pct = Math.max(...counts.map((n) => m[`at${n}_loop_load_core_pct`]));
    return m;
  },
};

// ---- relay workloads: a forward listener in front of the C echo upstream / iperf3 -s --------

const relayRtt = {
  name: 'relay-rtt',
  title: '64 B ping-pong through the relay to the C echo upstream, 50 connections',
  role: 'relay',
  upstream: 'echo',
  key: 'rt_per_s',
  unit: 'round trips/s',
  higher: true,
  estimate: (ctx) => ctx.durations.echo + ctx.durations.warmup + 1.5,
  run: (ctx, _sys, inst, { upstream }) => echoMeasure(ctx, inst, 50, { upstream }),
};

const relayConnrate = {
  name: 'relay-connrate',
  title: `sustained connection rate through the relay (connect, 64 B echo through the relay to the C echo upstream, close; ${CONNRATE_INFLIGHT} in flight)`,
  role: 'relay',
  upstream: 'echo',
  key: 'conn_per_s',
  unit: 'connections/s',
  higher: true,
  estimate: (ctx) => ctx.durations.sustain + ctx.durations.warmup + 1.5,
  run: (ctx, _sys, inst, { upstream }) =>
    connrateMeasure(ctx, inst, { duration: ctx.durations.sustain, upstream }),
};

const relayIdle = {
  name: 'relay-idle',
  title:
    'memory per idle relayed connection (relay RSS growth; each connection proven by one 64 B echo through the relay)',
  role: 'relay',
  upstream: 'echo',
  key: 'bytes_per_conn',
  unit: 'bytes/connection',
  higher: false,
  // under Wine a relay accepts and connects a few hundred connections per second
  estimate: (ctx, sys) => 3 + ctx.relayIdleConns / (sys?.platform === 'wine' ? 500 : 2500),
  run: (ctx, sys, inst, { upstream }) =>
    idleMeasure(
      ctx,
      inst,
      Math.min(ctx.relayIdleConns, sys.idleConnsCap ?? Number.POSITIVE_INFINITY),
      { upstream },
    ),
};

/** The relay workloads: the default of a run and the headline table. */
export const RELAY_WORKLOADS = [
  relayRtt,
  relayConnrate,
  bulkWorkload(1),
  bulkWorkload(4),
  relayIdle,
];
/** The echo listener's workloads: the secondary table (--all, or by name with --only). */
export const ECHO_WORKLOADS = [echoWorkload(50), echoWorkload(500), connrate, idle, control];
export const WORKLOADS = [...RELAY_WORKLOADS, ...ECHO_WORKLOADS];
