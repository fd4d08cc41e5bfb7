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

/** summary[workload][system] = {runs, ok, median: {metric: value}, errors: [...], skipped} */
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
        if (vals.every((v) => typeof v === 'number' || v === null || v === undefined))
          med[k] = median(vals);
        else med[k] = vals.find((v) => v !== undefined && v !== null) ?? null; // strings: first
      }
      out[w.name][s.name] = {
        runs: mine.length,
        ok: ok.length,
        median: ok.length ? med : null,
        errors: [...new Set(mine.filter((x) => !x.ok && !x.skipped).map((x) => x.error))],
        skipped: mine.find((x) => x.skipped)?.reason ?? null,
      };
    }
  }
  return out;
}

export function ratios(summary, workloads, systems) {
  const keyports = systems.filter((s) => s.isKeyport);
  const peers = systems.filter((s) => !s.isKeyport);
  const out = {};
  for (const w of workloads) {
    if (w.needsApi) continue;
    for (const k of keyports) {
      const kv = summary[w.name]?.[k.name]?.median?.[w.key];
      if (typeof kv !== 'number') continue;
      for (const p of peers) {
        // only systems on the same platform: Wine's cost is not keyport's
        if (p.platform !== k.platform) continue;
        const pv = summary[w.name]?.[p.name]?.median?.[w.key];
        if (typeof pv !== 'number' || pv === 0) continue;
        out[w.name] ??= {};
        out[w.name][`${k.name}/${p.name}`] = kv / pv;
      }
    }
  }
  return out;
}

/** The issue's targets, each with the measured value and whether it is met (null: not measured). */
export function targets(summary, rat) {
  const med = (w, s, k) => summary[w]?.[s]?.median?.[k];
  const r = (w, pair) => rat[w]?.[pair];
  const t = [];
  const add = (text, value, met, shown) =>
    t.push({
      target: text,
      value: value ?? null,
      met: value === null || value === undefined ? null : met,
      shown,
    });
  for (const w of ['echo-50', 'echo-500']) {
    const v = r(w, 'keyport-uring/node-net');
    add(`uring ${w}: round trips ≥ 1.5× Node net`, v, v >= 1.5, v && `${v.toFixed(2)}×`);
  }
  {
    const v = r('bulk', 'keyport-uring/haproxy');
    add('uring bulk relay ≥ HAProxy', v, v >= 1, v && `${v.toFixed(2)}×`);
    const d = r('bulk', 'keyport-uring/direct');
    add('uring bulk relay ≥ 50% of direct iperf3', d, d >= 0.5, d && `${(d * 100).toFixed(0)}%`);
  }
  {
    const v = med('idle', 'keyport-uring', 'bytes_per_conn');
    add(
      'uring memory ≤ 4 KiB per idle connection',
      v,
      v <= 4096,
      v && `${(v / 1024).toFixed(2)} KiB`,
    );
  }
  for (const w of ['echo-50', 'echo-500', 'bulk', 'connrate']) {
    const v = r(w, 'keyport-iocp/node-net-wine');
    add(
      `iocp under Wine ${w}: ≥ 2× Node net under the same Wine`,
      v,
      v >= 2,
      v && `${v.toFixed(2)}×`,
    );
  }
  for (const s of ['keyport-iocp', 'keyport-uring']) {
    const v = med('control', s, 'cost_pct');
    add(
      `${s}: control-plane load costs < 5% of echo throughput`,
      v,
      v < 5,
      v !== undefined && v !== null ? `${v.toFixed(1)}%` : null,
    );
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
    case 'us':
      return v >= 100 ? group(v) : v.toFixed(1);
    default:
      return Math.abs(v) >= 100 ? group(v) : v.toFixed(1);
  }
}

function table(head, rows) {
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`,
  ];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}

function cell(sum, key, unit) {
  if (!sum) return '';
  if (sum.median) return fmt(sum.median[key], unit);
  if (sum.skipped) return 'skipped';
  return 'failed';
}

export function markdown(res, workloads, systems) {
  const { machine, config, summary } = res;
  const rat = res.ratios;
  const L = [];
  const shown = systems.filter((s) => workloads.some((w) => summary[w.name]?.[s.name]));
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
    `Method: servers on CPU ${config.serverCpu} (for Wine also node.exe's wineserver), load on CPU ${config.loadCpu}` +
      `${config.nice ? `, all at nice ${config.nice}` : ''}; ` +
      `${config.runs} run(s) per system and workload, systems interleaved; medians shown. ` +
      `Echo ${config.durations.echo} s, connection rate ${config.durations.connrate} s, bulk ${config.durations.bulk} s ` +
      `(after ${config.durations.warmup} s / ${config.durations.omit} s of warm-up); idle: ${config.idleConns} connections. ` +
      `Total ${Math.round(res.elapsed_s)} s. Details and the method: bench/README.md.`,
  );
  L.push('');
  L.push('## Medians');
  L.push('');
  L.push(
    table(
      ['workload', ...shown.map((s) => s.name)],
      workloads
        .filter((w) => shown.some((s) => summary[w.name]?.[s.name]))
        .map((w) => [
          `${w.name} (${w.unit}${w.higher ? '' : ', lower is better'})`,
          ...shown.map((s) => cell(summary[w.name]?.[s.name], w.key, w.unit)),
        ]),
    ),
  );
  L.push('');

  const pairs = [...new Set(Object.values(rat).flatMap((o) => Object.keys(o)))];
  L.push('## keyport ÷ peer (ratio of medians)');
  L.push('');
  if (pairs.length) {
    L.push(
      table(
        ['workload', ...pairs.map((p) => p.replace('/', ' ÷ '))],
        workloads
          .filter((w) => rat[w.name])
          .map((w) => [
            `${w.name}${w.higher ? '' : ' (lower is better)'}`,
            ...pairs.map((p) => fmt(rat[w.name][p], 'ratio')),
          ]),
      ),
    );
    L.push('');
    L.push(
      'Only systems on the same platform are compared: keyport-iocp with Node net under the same Wine (node-net-wine); keyport-uring with the native peers. Above 1× keyport is ahead, except where lower is better.',
    );
  } else {
    const why = systems
      .filter((s) => s.isKeyport)
      .map((s) => {
        const reasons = workloads.map((w) => summary[w.name]?.[s.name]).filter(Boolean);
        const r =
          reasons.find((x) => x.skipped)?.skipped ??
          reasons.find((x) => x.errors.length)?.errors[0];
        return `${s.name}: ${r ?? res.systems[s.name]?.reason ?? 'not selected'}`;
      });
    L.push(
      why.length
        ? `No ratios: no keyport system produced a measurement (${why.join('; ')}).`
        : 'No ratios: no keyport system was selected (--systems).',
    );
  }
  L.push('');

  L.push('## Details');
  for (const w of workloads) {
    const rows = shown.filter((s) => summary[w.name]?.[s.name]);
    if (!rows.length) continue;
    L.push('');
    L.push(`### ${w.name}: ${w.title}`);
    L.push('');
    const runs = (s) => `${summary[w.name][s.name].ok}/${summary[w.name][s.name].runs}`;
    const m = (s) => summary[w.name][s.name].median ?? {};
    if (w.name === 'bulk') {
      L.push(
        table(
          [
            'system',
            'Gbit/s',
            'relay CPU %',
            'of it wineserver %',
            'iperf3 client CPU %',
            'iperf3 server CPU %',
            'retransmits',
            'other CPU %',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(summary[w.name][s.name], 'gbit_per_s', 'Gbit/s'),
            fmt(m(s).server_cpu_pct, 'pct'),
            fmt(m(s).wineserver_cpu_pct, 'pct'),
            fmt(m(s).loadgen_cpu_pct, 'pct'),
            fmt(m(s).iperf3_server_cpu_pct, 'pct'),
            fmt(m(s).retransmits),
            fmt(m(s).other_cpu_pct, 'pct'),
            runs(s),
          ]),
        ),
      );
    } else if (w.name === 'idle') {
      L.push(
        table(
          [
            'system',
            'bytes/conn',
            'connections',
            'memory before → after (KiB)',
            'measured',
            'wineserver bytes/conn',
            'opened/s',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(summary[w.name][s.name], 'bytes_per_conn'),
            fmt(m(s).conns),
            m(s).mem_before_kib !== undefined
              ? `${fmt(m(s).mem_before_kib)} → ${fmt(m(s).mem_after_kib)}`
              : '—',
            m(s).mem_kind ?? '—',
            fmt(m(s).wineserver_bytes_per_conn),
            fmt(m(s).open_per_s),
            runs(s),
          ]),
        ),
      );
    } else if (w.name === 'control') {
      L.push(
        table(
          [
            'system',
            'cost %',
            'echo rt/s alone',
            'with API load',
            'p99 µs alone → loaded',
            'API req/s',
            'API answers',
            'API client CPU %',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(summary[w.name][s.name], 'cost_pct', 'pct'),
            fmt(m(s).base_rt_per_s),
            fmt(m(s).loaded_rt_per_s),
            m(s).base_p99_us !== undefined
              ? `${fmt(m(s).base_p99_us, 'us')} → ${fmt(m(s).loaded_p99_us, 'us')}`
              : '—',
            fmt(m(s).api_req_per_s),
            m(s).api_statuses ?? '—',
            fmt(m(s).hammer_cpu_pct, 'pct'),
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
            'server CPU %',
            'of it wineserver %',
            'server CPU µs/op',
            'loadgen CPU %',
            'other CPU %',
            'runs ok',
          ],
          rows.map((s) => [
            s.name,
            cell(summary[w.name][s.name], w.key, w.unit),
            fmt(m(s).p50_us, 'us'),
            fmt(m(s).p99_us, 'us'),
            fmt(m(s).server_cpu_pct, 'pct'),
            fmt(m(s).wineserver_cpu_pct, 'pct'),
            fmt(m(s).server_cpu_us_per_op, 'us'),
            fmt(m(s).loadgen_cpu_pct, 'pct'),
            fmt(m(s).other_cpu_pct, 'pct'),
            runs(s),
          ]),
        ),
      );
    }
  }
  L.push('');
  L.push('## Targets (issue 7) — reported, not asserted');
  L.push('');
  L.push(
    table(
      ['target', 'measured', 'met'],
      res.targets.map((t) => [
        t.target,
        t.shown ?? 'not measured',
        t.met === null ? '—' : t.met ? 'yes' : 'no',
      ]),
    ),
  );
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
