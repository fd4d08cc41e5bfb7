// Turns the samples into medians, ratios keyport/peer, the issue's targets, and a markdown page.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function firstLine(cmd, args) {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || null;
  } catch {
    return null;
  }
}

export function describeMachine({ windowsNode, wine, loadavgAtStart } = {}) {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  let distro = null;
  try {
    distro = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]+)"?/m)?.[1];
  } catch {}
  const hypervisor = firstLine('sh', ['-c', "lscpu | sed -n 's/^Hypervisor vendor: *//p'"]);
  return {
    cpu: model,
    cores: os.cpus().length,
    hypervisor: hypervisor || null,
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    os: distro,
    node: process.version,
    windows_node: windowsNode ?? null,
    wine: wine ?? null,
    gcc: firstLine('gcc', ['--version']),
    socat: firstLine('sh', ['-c', 'socat -V 2>/dev/null | sed -n 2p']),
    haproxy: firstLine('sh', ['-c', 'haproxy -v 2>/dev/null | head -1']),
    iperf3: firstLine('sh', ['-c', 'iperf3 --version 2>/dev/null | head -1']),
    loadavg_at_start: (loadavgAtStart ?? os.loadavg()).map((x) => Math.round(x * 100) / 100),
    loadavg_at_end: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/**
 * summary[workload][system] = {runs, ok, median: {metric: value}, errors: [...], skipped,
 * errors_total, errors_per_run}. errors (the harness's: a run that failed) are messages;
 * errors_total is the sum over the runs that produced a result of the failures the load
 * generator counted (refused, reset, short echo, timeouts…), errors_per_run each run's count.
 */
export function summarize(samples, workloads, systems) {
  const out = {};
  for (const w of workloads) {
    out[w.name] = {};
    for (const s of systems) {
      const mine = samples.filter((x) => x.workload === w.name && x.system === s.name);
      if (!mine.length) continue;
      const ok = mine.filter((x) => x.ok);
      const med = {};
      const keys = new Set(ok.flatMap((x) => Object.keys(x.metrics)));
      for (const k of keys) {
        const vals = ok.map((x) => x.metrics[k]);
        if (vals.some((v) => v !== null && typeof v === 'object')) continue; // series: in the JSON
        if (vals.every((v) => typeof v === 'number' || v === null || v === undefined))
          med[k] = median(vals);
        else med[k] = vals.find((v) => v !== undefined && v !== null && v !== '') ?? null; // strings: first
      }
      const perRun = ok.map((x) => x.metrics.errors).filter((v) => typeof v === 'number');
      const kinds = [...new Set(ok.map((x) => x.metrics.errors_by_kind).filter(Boolean))];
      out[w.name][s.name] = {
        runs: mine.length,
        ok: ok.length,
        median: ok.length ? med : null,
        errors: [...new Set(mine.filter((x) => !x.ok && !x.skipped).map((x) => x.error))],
        skipped: mine.find((x) => x.skipped)?.reason ?? null,
        errors_total: perRun.length ? perRun.reduce((a, b) => a + b, 0) : null,
        errors_per_run: perRun,
        error_kinds: kinds.join('; '),
      };
    }
  }
  return out;
}

// ---- the relay: headline rows, ratios, the issue's goals -------------------------------------

/** Native relay columns, then the Wine pair (each compared only with its own platform). */
export const RELAY_NATIVE = ['haproxy', 'socat', 'node-net', 'keyport-uring', 'direct'];
export const RELAY_WINE = ['node-net-wine', 'keyport-iocp'];

// [workload, metric, label, unit, lower is better]; 'errors' rows show the sum over the runs
const RELAY_ROWS = [
  ['relay-rtt', 'rt_per_s', 'round trips/s', '', false],
  ['relay-rtt', 'p50_us', 'p50 µs', 'us', true],
  ['relay-rtt', 'p99_us', 'p99 µs', 'us', true],
  ['relay-rtt', 'p999_us', 'p999 µs', 'us', true],
  ['relay-rtt', 'server_cpu_us_per_op', 'relay CPU µs per round trip', 'us', true],
  ['relay-rtt', 'errors', 'errors, all runs', 'errors', true],
  ['relay-connrate', 'conn_per_s', 'connections/s, sustained', '', false],
  ['relay-connrate', 'first_last', 'connections/s, first → last seconds', 'firstlast', false],
  ['relay-connrate', 'p50_us', 'p50 µs per cycle', 'us', true],
  ['relay-connrate', 'p99_us', 'p99 µs per cycle', 'us', true],
  ['relay-connrate', 'p999_us', 'p999 µs per cycle', 'us', true],
  ['relay-connrate', 'server_cpu_us_per_op', 'relay CPU µs per connection', 'us', true],
  ['relay-connrate', 'errors', 'failed connections, all runs', 'errors', true],
  ['bulk', 'gbit_per_s', 'Gbit/s, 1 stream', 'Gbit/s', false],
  ['bulk', 'relay_ms_per_gb', 'relay CPU ms per GB', '', true],
  ['bulk-4', 'gbit_per_s', 'Gbit/s, 4 streams', 'Gbit/s', false],
  ['bulk-4', 'relay_ms_per_gb', 'relay CPU ms per GB', '', true],
  ['relay-idle', 'bytes_per_conn', 'relay RSS bytes per idle connection', '', true],
  ['relay-idle', 'conns', 'idle connections held', 'int', false],
];

// the ratio rows: [workload, metric, label, lower is better]
const RATIO_ROWS = [
  ['relay-rtt', 'rt_per_s', 'round trips/s', false],
  ['relay-rtt', 'p999_us', 'p999 latency', true],
  ['relay-rtt', 'server_cpu_us_per_op', 'relay CPU per round trip', true],
  ['relay-connrate', 'conn_per_s', 'connections/s sustained', false],
  ['relay-connrate', 'p999_us', 'p999 per cycle', true],
  ['relay-connrate', 'server_cpu_us_per_op', 'relay CPU per connection', true],
  ['bulk', 'gbit_per_s', 'Gbit/s', false],
  ['bulk', 'relay_ms_per_gb', 'relay CPU per GB', true],
  ['bulk-4', 'gbit_per_s', 'Gbit/s', false],
  ['bulk-4', 'relay_ms_per_gb', 'relay CPU per GB', true],
  ['relay-idle', 'bytes_per_conn', 'RSS per idle connection', true],
];
export const RELAY_PAIRS = [
  'keyport-uring/haproxy',
  'keyport-uring/node-net',
  'keyport-iocp/node-net-wine',
  'keyport-uring/direct',
  'haproxy/direct',
];

const isRelay = (w) => w.role === 'relay';

/**
 * {relay: [{workload, key, label, lower, values: {'a/b': ratio}}], echo: {workload: {'a/b': ratio}}}
 * — ratios of medians. Relay: the pairs above (÷ direct for the bulk throughputs only). Echo
 * listener: each keyport backend ÷ every peer on its own platform.
 */
export function ratios(summary, workloads, systems) {
  const med = (w, s, k) => summary[w]?.[s]?.median?.[k];
  const relay = [];
  for (const [w, key, label, lower] of RATIO_ROWS) {
    if (!workloads.some((x) => x.name === w)) continue;
    const values = {};
    for (const pair of RELAY_PAIRS) {
      const [a, b] = pair.split('/');
      if (b === 'direct' && key !== 'gbit_per_s') continue;
      const av = med(w, a, key);
      const bv = med(w, b, key);
      if (typeof av === 'number' && typeof bv === 'number' && bv !== 0) values[pair] = av / bv;
    }
    relay.push({ workload: w, key, label, lower, values });
  }
  const keyports = systems.filter((s) => s.isKeyport);
  const peers = systems.filter((s) => !s.isKeyport);
  const echo = {};
  for (const w of workloads) {
    if (w.needsApi || isRelay(w)) continue;
    for (const k of keyports) {
      const kv = summary[w.name]?.[k.name]?.median?.[w.key];
      if (typeof kv !== 'number') continue;
      for (const p of peers) {
        // only systems on the same platform: Wine's cost is not keyport's
        if (p.platform !== k.platform) continue;
        const pv = summary[w.name]?.[p.name]?.median?.[w.key];
        if (typeof pv !== 'number' || pv === 0) continue;
        echo[w.name] ??= {};
        echo[w.name][`${k.name}/${p.name}`] = kv / pv;
      }
    }
  }
  return { relay, echo };
}

const x2 = (v) => `${v.toFixed(2)}×`;

/**
 * The goals of issue 14 (the relay, keyport-uring against HAProxy) and the targets of issue 7
 * (the echo listener), each {issue, target, value, met (null: not measured), shown}.
 */
export function targets(summary, rat) {
  const sum = (w, s) => summary[w]?.[s];
  const med = (w, s, k) => summary[w]?.[s]?.median?.[k];
  const ratio = (w, k, a, b) => {
    const av = med(w, a, k);
    const bv = med(w, b, k);
    return typeof av === 'number' && typeof bv === 'number' && bv !== 0 ? av / bv : null;
  };
  const t = [];
  const add = (issue, text, value, met, shown) =>
    t.push({
      issue,
      target: text,
      value: value ?? null,
      met: value === null || value === undefined ? null : met,
      shown,
    });
  const K = 'keyport-uring';
  const H = 'haproxy';
  const both = (w, k, unit) =>
    `${K} ${fmt(med(w, K, k), unit)}, HAProxy ${fmt(med(w, H, k), unit)}`;

  // issue 14: the relay
  {
    const w = 'relay-connrate';
    const v = ratio(w, 'conn_per_s', K, H);
    const s = sum(w, K);
    const errs = s?.errors_total;
    const allOk = s && s.ok === s.runs;
    add(
      14,
      'relay-connrate: forwarded connections/s sustained ≥ 1.0× HAProxy, with 0 errors',
      v,
      v >= 1 && errs === 0 && allOk,
      v !== null &&
        `${x2(v)} (${both(w, 'conn_per_s')} conn/s); keyport errors ${errs ?? '?'}` +
          `${allOk ? '' : `, ${s.runs - s.ok} run(s) failed`}`,
    );
    const c = ratio(w, 'server_cpu_us_per_op', K, H);
    add(
      14,
      'relay-connrate: relay CPU per forwarded connection ≤ 1.2× HAProxy',
      c,
      c <= 1.2,
      c !== null && `${x2(c)} (${both(w, 'server_cpu_us_per_op', 'us')} µs)`,
    );
  }
  {
    const w = 'relay-rtt';
    const v = ratio(w, 'rt_per_s', K, H);
    add(
      14,
      'relay-rtt: round trips/s ≥ 1.0× HAProxy',
      v,
      v >= 1,
      v !== null && `${x2(v)} (${both(w, 'rt_per_s')})`,
    );
    const p = ratio(w, 'p999_us', K, H);
    add(
      14,
      "relay-rtt: p999 latency ≤ 2× HAProxy's",
      p,
      p <= 2,
      p !== null && `${x2(p)} (${both(w, 'p999_us', 'us')} µs)`,
    );
  }
  for (const [w, n] of [
    ['bulk', '1 stream'],
    ['bulk-4', '4 streams'],
  ]) {
    const v = ratio(w, 'gbit_per_s', K, H);
    add(
      14,
      `${w} (${n}): ≥ 1.0× HAProxy`,
      v,
      v >= 1,
      v !== null && `${x2(v)} (${both(w, 'gbit_per_s', 'Gbit/s')} Gbit/s)`,
    );
    const d = ratio(w, 'gbit_per_s', K, 'direct');
    add(
      14,
      `${w} (${n}): ≥ 70% of direct`,
      d,
      d >= 0.7,
      d !== null &&
        `${(d * 100).toFixed(0)}% (${K} ${fmt(med(w, K, 'gbit_per_s'), 'Gbit/s')}, direct ${fmt(med(w, 'direct', 'gbit_per_s'), 'Gbit/s')} Gbit/s)`,
    );
  }
  {
    const w = 'relay-idle';
    const v = ratio(w, 'bytes_per_conn', K, H);
    add(
      14,
      "relay-idle: RSS per idle relayed connection ≤ HAProxy's",
      v,
      v <= 1,
      v !== null && `${x2(v)} (${both(w, 'bytes_per_conn')} bytes)`,
    );
    const b = med(w, K, 'bytes_per_conn');
    add(
      14,
      'relay-idle: RSS per idle relayed connection ≤ 4 KiB',
      b,
      b <= 4096,
      typeof b === 'number' && `${(b / 1024).toFixed(2)} KiB`,
    );
  }

  // issue 7: the echo listener (its bulk targets are superseded by issue 14's)
  const r = (w, pair) => rat.echo?.[w]?.[pair];
  for (const w of ['echo-50', 'echo-500']) {
    const v = r(w, 'keyport-uring/node-net');
    add(7, `uring ${w}: round trips ≥ 1.5× Node net`, v, v >= 1.5, v && x2(v));
  }
  {
    const v = med('idle', 'keyport-uring', 'bytes_per_conn');
    add(
      7,
      'uring memory ≤ 4 KiB per idle connection',
      v,
      v <= 4096,
      v && `${(v / 1024).toFixed(2)} KiB`,
    );
  }
  for (const w of ['echo-50', 'echo-500', 'connrate']) {
    const v = r(w, 'keyport-iocp/node-net-wine');
    add(7, `iocp under Wine ${w}: ≥ 2× Node net under the same Wine`, v, v >= 2, v && x2(v));
  }
  // (issue 7's control-plane target, < 5%, is superseded by issue 15's goals)

  // issue 15: the control plane at scale, per keyport system that ran control
  const systems = Object.keys(summary.control ?? {});
  for (const s of systems.length ? systems : [K]) {
    const m = (k) => med('control', s, k);
    const counts = String(m('conns_list') ?? '')
      .split(',')
      .filter(Boolean)
      .map(Number);
    // at 10 000 and 18 000 (or at the most a run held, when it held fewer)
    const at = counts.filter((n) => n >= 10000);
    if (!at.length && counts.length) at.push(counts.at(-1));
    if (!counts.length) at.push(10000, 18000);
    for (const [cond, what, maxCost, maxP99] of [
      ['page', 'status page open + scrape every 5 s', 2, 1.2],
      ['loop', 'two clients looping over the views', 20, 3],
    ])
      for (const n of at) {
        const c = m(`at${n}_${cond}_cost_pct`);
        const r = m(`at${n}_${cond}_p99_ratio`);
        const where = `${s}, ${what}, ${group(n)} idle connections`;
        add(
          15,
          `${where}: throughput cost < ${maxCost}%`,
          c,
          c < maxCost,
          c != null && `${c.toFixed(1)}%`,
        );
        add(
          15,
          `${where}: p99 ≤ ${maxP99}× quiet`,
          r,
          r <= maxP99,
          r != null &&
            `${x2(r)} (${fmt(m(`at${n}_quiet_p99_us`), 'us')} → ${fmt(m(`at${n}_${cond}_p99_us`), 'us')} µs)`,
        );
      }
    const [lo, hi] = [counts[0], counts.at(-1)];
    for (const v of ['connections', 'ops', 'keys']) {
      const a = m(`at${lo}_single_ms_${v}`);
      const b = m(`at${hi}_single_ms_${v}`);
      const r = counts.length > 1 && a && b ? b / a : null;
      add(
        15,
        `${s}: one page of /${v}?limit=1000 (one request, median of 20), within 2× from ${group(lo ?? 1000)} to ${group(hi ?? 18000)} idle connections`,
        r,
        r <= 2,
        r !== null && `${x2(r)} (${a.toFixed(1)} → ${b.toFixed(1)} ms)`,
      );
    }
  }
  return t;
}

// ---- formatting ----------------------------------------------------------------------------

function group(n) {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
}

export function fmt(v, unit) {
  if (v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v))) return '—';
  if (typeof v !== 'number') return String(v);
  switch (unit) {
    case 'Gbit/s':
      return v.toFixed(2);
    case 'pct':
      return v.toFixed(1);
    case 'ratio':
      return `${v.toFixed(2)}×`;
    case 'int':
      return group(v);
    case 'us':
      return v >= 100 ? group(v) : v.toFixed(1);
    default:
      return Math.abs(v) >= 100 ? group(v) : v.toFixed(1);
  }
}

/** A markdown table: the first `left` columns left-aligned (labels), the rest right (numbers). */
function table(head, rows, left = 1) {
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i >= left ? '---:' : '---')).join('|')}|`,
  ];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}

/** The goals (or targets) of one issue: what was measured and whether it is met. */
function goalsTable(targets, issue, head) {
  return table(
    [head, 'measured', 'met'],
    targets
      .filter((t) => t.issue === issue)
      .map((t) => [
        t.target,
        t.shown || 'not measured',
        t.met === null ? '—' : t.met ? 'met' : 'not met',
      ]),
    2,
  );
}

function cell(sum, key, unit) {
  if (!sum) return '';
  if (sum.median) return fmt(sum.median[key], unit);
  if (sum.skipped) return 'skipped';
  return 'failed';
}

/** A headline cell: the median, or for 'errors' the sum over the runs (+ failed runs). */
function relayCell(sum, key, unit) {
  if (!sum) return '';
  if (!sum.median) return sum.skipped ? 'skipped' : 'failed';
  const failed = sum.runs - sum.ok;
  if (unit === 'errors') {
    const t = sum.errors_total;
    return `${t === null ? '—' : group(t)}${failed ? ` (+${failed} failed run${failed > 1 ? 's' : ''})` : ''}`;
  }
  if (unit === 'firstlast') {
    const m = sum.median;
    if (m.first_conn_per_s == null) return '—';
    return `${fmt(m.first_conn_per_s)} → ${fmt(m.last_conn_per_s)} (${m.rate_span_s} s each)`;
  }
  return fmt(sum.median[key], unit);
}

/** Errors over all runs: "0", or "12 (0, 0, 12): reset 12". */
function errorsText(sum) {
  if (!sum?.median) return '—';
  const t = sum.errors_total;
  if (t === null) return '—';
  if (!t) return '0';
  const per = sum.errors_per_run.length > 1 ? ` (${sum.errors_per_run.join(', ')})` : '';
  return `${group(t)}${per}${sum.error_kinds ? `: ${sum.error_kinds}` : ''}`;
}

function relaySection(L, res, workloads, names, title) {
  const { summary } = res;
  const cols = names.filter((n) => workloads.some((w) => isRelay(w) && summary[w.name]?.[n]));
  if (!cols.length) return false;
  const rows = RELAY_ROWS.filter(([w]) => workloads.some((x) => x.name === w)).filter(([w]) =>
    cols.some((c) => summary[w]?.[c]),
  );
  L.push(title);
  L.push('');
  L.push(
    table(
      ['workload', 'metric', ...cols],
      rows.map(([w, key, label, unit, lower]) => [
        w,
        `${label}${lower && unit !== 'errors' ? ' (lower is better)' : ''}`,
        ...cols.map((c) => relayCell(summary[w]?.[c], key, unit)),
      ]),
      2,
    ),
  );
  L.push('');
  return true;
}

/** The measured windows of the workloads that ran, for the method line. */
function windows(config, workloads) {
  const d = config.durations;
  const ran = (n) => workloads.some((w) => w.name === n);
  const bits = [];
  if (ran('relay-rtt') || ran('echo-50') || ran('echo-500'))
    bits.push(`round trips ${d.echo} s after ${d.warmup} s of warm-up`);
  if (ran('relay-connrate'))
    bits.push(
      `relay-connrate sustained ${d.sustain} s (${config.connrateInflight ?? 64} in flight)`,
    );
  if (ran('connrate')) bits.push(`connrate ${d.connrate} s`);
  if (ran('bulk') || ran('bulk-4')) bits.push(`bulk ${d.bulk} s after ${d.omit} s omitted`);
  if (ran('relay-idle')) bits.push(`relay-idle ${config.relayIdleConns} connections`);
  if (ran('idle')) bits.push(`idle ${config.idleConns} connections`);
  if (ran('control'))
    bits.push(
      `control ${d.control} s per slice, 6 slices per idle-connection count (${(config.controlConns ?? []).join(', ')})`,
    );
  return upperFirst(bits.join('; '));
}

const upperFirst = (t) => (t ? t[0].toUpperCase() + t.slice(1) : t);

const CONTROL_CONDITIONS = [
  ['quiet', 'quiet'],
  ['page', 'status page + scrape'],
  ['loop', 'two clients looping'],
];
const CONTROL_VIEWS = ['connections', 'ops', 'keys', 'metrics'];
const countsOf = (m) =>
  String(m.conns_list ?? '')
    .split(',')
    .filter(Boolean);

/** control: per system, idle connections and condition, the ping-pong and the API's latency. */
function controlDetails(L, systems, S) {
  const rows = [];
  const views = [];
  const routes = [];
  for (const s of systems) {
    const m = S(s).median ?? {};
    for (const n of countsOf(m)) {
      const k = (c, x) => m[`at${n}_${c}_${x}`];
      for (const [c, label] of CONTROL_CONDITIONS)
        rows.push([
          s.name,
          group(Number(n)),
          label,
          fmt(k(c, 'rt_per_s')),
          fmt(k(c, 'p99_us'), 'us'),
          fmt(k(c, 'p999_us'), 'us'),
          c === 'quiet' ? '' : fmt(k(c, 'cost_pct'), 'pct'),
          c === 'quiet' ? '' : fmt(k(c, 'p99_ratio'), 'ratio'),
          c === 'quiet' ? '' : fmt(k(c, 'api_requests'), 'int'),
          c === 'quiet' ? '' : fmt(k(c, 'api_mean_ms')),
          c === 'quiet' ? '' : fmt(k(c, 'api_p99_ms')),
          c === 'quiet' ? '' : (k(c, 'api_statuses') ?? '—'),
          fmt(k(c, 'server_cpu_pct'), 'pct'),
          fmt(k(c, 'load_core_pct'), 'pct'),
          fmt(k(c, 'other_cpu_pct'), 'pct'),
        ]);
      views.push([
        s.name,
        group(Number(n)),
        ...CONTROL_VIEWS.map((v) => fmt(m[`at${n}_single_ms_${v}`])),
        ...CONTROL_VIEWS.map((v) => fmt(m[`at${n}_bytes_${v}`], 'int')),
      ]);
      for (const [c, label] of CONTROL_CONDITIONS.slice(1))
        if (k(c, 'api_routes'))
          routes.push(`- ${s.name}, ${group(Number(n))}, ${label}: ${k(c, 'api_routes')}`);
    }
  }
  L.push(
    table(
      [
        'system',
        'idle conns',
        'condition',
        'round trips/s',
        'p99 µs',
        'p999 µs',
        'throughput cost %',
        'p99 ÷ quiet',
        'API requests',
        'API mean ms',
        'API p99 ms',
        'API answers',
        'server CPU %',
        'load core %',
        'other CPU %',
      ],
      rows,
      3,
    ),
  );
  L.push('');
  L.push(
    'One request at a time with nothing else looping (median of 20, ms) and the size of its answer (bytes):',
  );
  L.push('');
  L.push(
    table(
      [
        'system',
        'idle conns',
        ...CONTROL_VIEWS.map((v) => `/${v}${v === 'metrics' ? '' : '?limit=1000'} ms`),
        ...CONTROL_VIEWS.map((v) => `${v} bytes`),
      ],
      views,
      2,
    ),
  );
  if (routes.length) {
    L.push('');
    L.push('The API per route under each load (mean / p99 ms, requests):');
    L.push('');
    L.push(...routes);
  }
}

export function markdown(res, workloads, systems) {
  const { machine, config, summary } = res;
  const rat = res.ratios;
  const L = [];
  const relayW = workloads.filter(isRelay);
  const echoW = workloads.filter((w) => !isRelay(w));
  L.push(`# keyport benchmark — ${res.date}${config.quick ? ' (quick smoke run)' : ''}`);
  L.push('');
  L.push(
    `Machine: ${machine.cpu}, ${machine.cores} cores${machine.hypervisor ? ` (${machine.hypervisor} VM)` : ''}, ` +
      `${machine.memory_gib} GiB, ${machine.os ?? ''} ${machine.kernel}; Node ${machine.node}` +
      `${machine.windows_node ? `, Windows Node ${machine.windows_node} under ${machine.wine}` : ''}. ` +
      `keyport ${res.keyport.commit}${res.keyport.dirty ? ' (uncommitted changes in src/)' : ''}. ` +
      `Load average at start ${machine.loadavg_at_start?.[0] ?? '?'}.`,
  );
  L.push('');
  L.push(
    `Method: relays and servers on CPU ${config.serverCpu} (for Wine also node.exe's wineserver); load generator and upstream (C echo server, iperf3 -s) on CPU ${config.loadCpu}` +
      `${config.nice ? `, all at nice ${config.nice}` : ''}; ` +
      `${config.runs} run(s) per system and workload, systems interleaved; medians shown. ` +
      `${windows(config, workloads)}. ` +
      `Total ${Math.round(res.elapsed_s)} s. Details and the method: bench/README.md.`,
  );
  L.push('');

  // ---- the relay: headline
  if (relayW.length) {
    relaySection(
      L,
      res,
      relayW,
      RELAY_NATIVE,
      '## The relay: forward listener → C echo upstream / iperf3 -s (medians)',
    );
    relaySection(L, res, relayW, RELAY_WINE, '### The relay under Wine (medians)');
    const pairs = RELAY_PAIRS.filter((p) => rat.relay.some((r) => r.values[p] !== undefined));
    L.push('## Relay ratios (of medians) and the goals of issue 14');
    L.push('');
    if (pairs.length) {
      L.push(
        table(
          ['workload', 'metric', ...pairs.map((p) => p.replace('/', ' ÷ '))],
          rat.relay
            .filter((r) => pairs.some((p) => r.values[p] !== undefined))
            .map((r) => [
              r.workload,
              `${r.label}${r.lower ? ' (lower is better)' : ''}`,
              ...pairs.map((p) => fmt(r.values[p], 'ratio')),
            ]),
          2,
        ),
      );
      L.push('');
      L.push(
        'keyport-uring is compared with the native relays, keyport-iocp with Node net under the same Wine (node-net-wine); ÷ direct only for bulk throughput. Above 1× is ahead, except where lower is better.',
      );
    } else {
      L.push('No ratios: no pair of systems produced a relay measurement.');
    }
    L.push('');
    L.push(goalsTable(res.targets, 14, 'goal (issue 14, keyport-uring vs HAProxy)'));
    L.push('');
  }

  // ---- the echo listener: secondary
  const shownEcho = systems.filter((s) => echoW.some((w) => summary[w.name]?.[s.name]));
  if (echoW.length && shownEcho.length) {
    L.push('## The echo listener (secondary; medians)');
    L.push('');
    L.push(
      table(
        ['workload', ...shownEcho.map((s) => s.name)],
        echoW
          .filter((w) => shownEcho.some((s) => summary[w.name]?.[s.name]))
          .map((w) => [
            `${w.name} (${w.unit}${w.higher ? '' : ', lower is better'})`,
            ...shownEcho.map((s) => cell(summary[w.name]?.[s.name], w.key, w.unit)),
          ]),
      ),
    );
    L.push('');
    const pairs = [...new Set(Object.values(rat.echo).flatMap((o) => Object.keys(o)))];
    if (pairs.length) {
      L.push('### keyport ÷ peer at the echo listener (ratio of medians)');
      L.push('');
      L.push(
        table(
          ['workload', ...pairs.map((p) => p.replace('/', ' ÷ '))],
          echoW
            .filter((w) => rat.echo[w.name])
            .map((w) => [
              `${w.name}${w.higher ? '' : ' (lower is better)'}`,
              ...pairs.map((p) => fmt(rat.echo[w.name][p], 'ratio')),
            ]),
        ),
      );
      L.push('');
    }
    L.push('### Targets of issue 7 (the echo listener) — reported, not asserted');
    L.push('');
    L.push(goalsTable(res.targets, 7, 'target'));
    L.push('');
  }

  if (summary.control && Object.keys(summary.control).length) {
    L.push('## The control plane at scale: the goals of issue 15 — reported, not asserted');
    L.push('');
    L.push(
      'Throughput cost and p99 are the 50-connection ping-pong under each condition ÷ quiet, in the same keyport process; the figures per connection count are under Details.',
    );
    L.push('');
    L.push(goalsTable(res.targets, 15, 'goal (issue 15)'));
    L.push('');
  }

  L.push('## Details');
  for (const w of workloads) {
    const rows = systems.filter((s) => summary[w.name]?.[s.name]);
    if (!rows.length) continue;
    L.push('');
    L.push(`### ${w.name}: ${w.title}`);
    L.push('');
    const S = (s) => summary[w.name][s.name];
    const runs = (s) => `${S(s).ok}/${S(s).runs}`;
    const m = (s) => S(s).median ?? {};
    const who = isRelay(w) ? 'relay' : 'server';
    const up = isRelay(w);
    if (w.name.startsWith('bulk')) {
      L.push(
        table(
          [
            'system',
            'Gbit/s',
            'relay CPU %',
            'of it wineserver %',
            'relay CPU ms/GB',
            'iperf3 client CPU %',
            'iperf3 server (upstream) CPU %',
            'retransmits',
            'other CPU %',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(S(s), 'gbit_per_s', 'Gbit/s'),
            fmt(m(s).server_cpu_pct, 'pct'),
            fmt(m(s).wineserver_cpu_pct, 'pct'),
            fmt(m(s).relay_ms_per_gb),
            fmt(m(s).loadgen_cpu_pct, 'pct'),
            fmt(m(s).upstream_cpu_pct ?? m(s).iperf3_server_cpu_pct, 'pct'),
            fmt(m(s).retransmits, 'int'),
            fmt(m(s).other_cpu_pct, 'pct'),
            runs(s),
          ]),
        ),
      );
    } else if (w.key === 'bytes_per_conn') {
      L.push(
        table(
          [
            'system',
            'bytes/conn',
            'connections',
            'memory before → after (KiB)',
            'measured',
            'wineserver bytes/conn',
            ...(up ? ['upstream bytes/conn'] : []),
            'opened/s',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(S(s), 'bytes_per_conn'),
            fmt(m(s).conns, 'int'),
            m(s).mem_before_kib !== undefined
              ? `${fmt(m(s).mem_before_kib)} → ${fmt(m(s).mem_after_kib)}`
              : '—',
            m(s).mem_kind ?? '—',
            fmt(m(s).wineserver_bytes_per_conn),
            ...(up ? [fmt(m(s).upstream_bytes_per_conn)] : []),
            fmt(m(s).open_per_s),
            runs(s),
          ]),
        ),
      );
    } else if (w.name === 'control') {
      controlDetails(L, rows, S);
    } else if (w.key === 'conn_per_s') {
      L.push(
        table(
          [
            'system',
            'connections/s',
            'first → last s',
            'p50 µs',
            'p99 µs',
            'p999 µs',
            'failed connections (all runs)',
            `${who} CPU %`,
            'of it wineserver %',
            `${who} CPU µs/conn`,
            'loadgen CPU %',
            ...(up ? ['upstream CPU %'] : []),
            'TIME_WAIT start → end',
            'other CPU %',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(S(s), 'conn_per_s'),
            relayCell(S(s), null, 'firstlast'),
            fmt(m(s).p50_us, 'us'),
            fmt(m(s).p99_us, 'us'),
            fmt(m(s).p999_us, 'us'),
            errorsText(S(s)),
            fmt(m(s).server_cpu_pct, 'pct'),
            fmt(m(s).wineserver_cpu_pct, 'pct'),
            fmt(m(s).server_cpu_us_per_op, 'us'),
            fmt(m(s).loadgen_cpu_pct, 'pct'),
            ...(up ? [fmt(m(s).upstream_cpu_pct, 'pct')] : []),
            m(s).time_wait_end != null
              ? `${fmt(m(s).time_wait_start, 'int')} → ${fmt(m(s).time_wait_end, 'int')}`
              : '—',
            fmt(m(s).other_cpu_pct, 'pct'),
            runs(s),
          ]),
        ),
      );
    } else {
      L.push(
        table(
          [
            'system',
            w.unit,
            'p50 µs',
            'p99 µs',
            'p999 µs',
            'errors (all runs)',
            `${who} CPU %`,
            'of it wineserver %',
            `${who} CPU µs/rt`,
            'loadgen CPU %',
            ...(up ? ['upstream CPU %'] : []),
            'other CPU %',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(S(s), w.key, w.unit),
            fmt(m(s).p50_us, 'us'),
            fmt(m(s).p99_us, 'us'),
            fmt(m(s).p999_us, 'us'),
            errorsText(S(s)),
            fmt(m(s).server_cpu_pct, 'pct'),
            fmt(m(s).wineserver_cpu_pct, 'pct'),
            fmt(m(s).server_cpu_us_per_op, 'us'),
            fmt(m(s).loadgen_cpu_pct, 'pct'),
            ...(up ? [fmt(m(s).upstream_cpu_pct, 'pct')] : []),
            fmt(m(s).other_cpu_pct, 'pct'),
            runs(s),
          ]),
        ),
      );
    }
  }
  const notes = [];
  for (const [name, s] of Object.entries(res.systems))
    if (!s.available) notes.push(`- ${name}: not run — ${s.reason}`);
  for (const sys of systems) {
    const per = workloads.map((w) => [w.name, summary[w.name]?.[sys.name]]).filter(([, s]) => s);
    const reasons = new Set(per.map(([, s]) => s.skipped));
    if (per.length > 1 && reasons.size === 1 && per.every(([, s]) => s.skipped && !s.ok)) {
      notes.push(`- ${sys.name}: skipped in every workload — ${per[0][1].skipped}`);
      continue;
    }
    for (const [wname, s] of per) {
      if (s.skipped) notes.push(`- ${sys.name} × ${wname}: skipped — ${s.skipped}`);
      for (const e of s.errors) notes.push(`- ${sys.name} × ${wname}: failed — ${e}`);
    }
  }
  if (notes.length) {
    L.push('');
    L.push('## Not measured');
    L.push('');
    L.push(...[...new Set(notes)]);
  }
  if (res.warnings.length) {
    L.push('');
    L.push('## Warnings');
    L.push('');
    L.push(...res.warnings.map((w) => `- ${w}`));
  }
  L.push('');
  return L.join('\n');
}
