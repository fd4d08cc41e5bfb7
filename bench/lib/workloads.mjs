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

const control = {
  name: 'control',
  title:
    'control-plane cost (echo 50 conns alone vs while /connections, /ops, /metrics are requested back to back)',
  role: 'echo',
  needsApi: true,
  key: 'cost_pct',
  unit: '% of echo round trips lost',
  higher: false,
  estimate: (ctx) => ctx.durations.control * 2 + (ctx.quick ? 2 : 4) * 0.6 + 2,
  async run(ctx, _sys, inst, { runIndex }) {
    // Slices alone (A) and under API load (B) alternate A B B A (B A A B on odd runs) within
    // one keyport process, so that drift and outside noise fall on both sides alike.
    const pairs = ctx.quick ? 1 : 2;
    const slice = ctx.durations.control / pairs;
    const first = runIndex % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
    const order = [];
    for (let i = 0; i < pairs; i++) order.push(...(i % 2 === 0 ? first : [...first].reverse()));
    const hammer = spawnLogged(
      [
        process.execPath,
        join(ctx.benchDir, 'lib', 'api-hammer.mjs'),
        '--port',
        String(inst.apiPort),
      ],
      {
        logFile: ctx.logPath('api-hammer'),
        cpu: ctx.loadCpu,
        pipeStdout: true,
        stdin: 'pipe',
        env: { ...process.env, NODE_OPTIONS: '' },
      },
    );
    ctx.track(hammer);
    const out = collectLines(hammer);
    const got = { A: [], B: [] };
    let failure = null;
    try {
      // the client first requests each route once (up to 30 s each), unmeasured
      if (!(await out.waitFor('ready', 100000)))
        return { error: 'the API did not answer its first requests (30 s per route)' };
      let prev = 'A'; // the client starts paused
      for (const cond of order) {
        const mark = out.lines.length;
        if (cond === prev) {
          // B B / A A: the client keeps doing what it does
        } else if (cond === 'B') {
          hammer.stdin.write('go\n');
          if (!(await out.waitFor('started', 30000, mark)))
            return { error: 'the API did not answer a request within 30 s' };
        } else {
          hammer.stdin.write('pause\n');
          await out.waitFor('paused', 10000, mark);
        }
        prev = cond;
        const r = await echoMeasure(ctx, inst, 50, {
          duration: slice,
          warmup: 0.5,
          extraPids: cond === 'B' ? () => [hammer.pid] : () => [],
        });
        if (r.error) {
          failure = `${cond === 'A' ? 'alone' : 'under API load'}: ${r.error}`;
          break;
        }
        got[cond].push(r);
      }
    } finally {
      hammer.stdin.end();
      const t = setTimeout(() => hammer.kill('SIGKILL'), 5000);
      await hammer.exited;
      clearTimeout(t);
      ctx.untrack(hammer);
    }
    if (failure) return { error: failure };
    const stats = out.lines.filter((l) => !l.event).pop() ?? null;
    const mean = (xs, k) => xs.reduce((a, x) => a + x[k], 0) / xs.length;
    const base = mean(got.A, 'rt_per_s');
    const loaded = mean(got.B, 'rt_per_s');
    const statuses = stats
      ? Object.entries(stats.routes)
          .map(
            ([p, r]) =>
              `${p} ${
                Object.entries(r.status)
                  .map(([c, n]) => `${c}×${n}`)
                  .join(' ') || 'no answer'
              }`,
          )
          .join('; ')
      : 'no result';
    return {
      cost_pct: 100 * (1 - loaded / base),
      base_rt_per_s: base,
      loaded_rt_per_s: loaded,
      base_p99_us: mean(got.A, 'p99_us'),
      loaded_p99_us: mean(got.B, 'p99_us'),
      api_req_per_s: stats?.req_per_s ?? null,
      api_errors: stats?.errors ?? null,
      api_statuses: statuses,
      hammer_cpu_pct: stats?.cpu_pct_of_active ?? null,
      loadgen_cpu_pct: mean(got.B, 'loadgen_cpu_pct'),
      server_cpu_pct: mean(got.B, 'server_cpu_pct'),
      wineserver_cpu_pct:
        got.B[0].wineserver_cpu_pct === null ? null : mean(got.B, 'wineserver_cpu_pct'),
      other_cpu_pct: mean([...got.A, ...got.B], 'other_cpu_pct'),
      slices: order.join(''),
    };
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
