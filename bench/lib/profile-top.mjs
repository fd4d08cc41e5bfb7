#!/usr/bin/env node
// Summarizes V8 .cpuprofile files (node --cpu-prof): self time per function, heaviest first.
//   node bench/lib/profile-top.mjs FILE_OR_DIR... [--top N] [--whole]
// By default only the measured windows count (measured-windows.json, written by the harness).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * [{name, where, selfMs, pct}] for one profile, heaviest first; plus the total sampled ms.
 * `windows`: [[fromS, toS], …] in seconds before the profile's end — only samples inside them
 * count (the harness writes them to measured-windows.json beside the profile).
 */
export function topFunctions(file, n = 15, windows = null) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((x) => [x.id, x]));
  const self = new Map(); // node id → µs
  const deltas = prof.timeDeltas ?? [];
  const ranges = windows?.map(([a, b]) => [prof.endTime - a * 1e6, prof.endTime - b * 1e6]);
  let t = prof.startTime;
  for (let i = 0; i < prof.samples.length; i++) {
    t += deltas[i] ?? 0;
    if (ranges && !ranges.some(([from, to]) => t >= from && t <= to)) continue;
    const id = prof.samples[i];
    const dt = deltas[i + 1] ?? deltas[i] ?? 0; // the time until the next sample belongs to this one
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const agg = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)?.callFrame ?? {};
    const name = cf.functionName || '(anonymous)';
    const url = (cf.url ?? '')
      .replace(/^file:\/\/\/?/, '')
      .replace(/^.*\/(dist|node_modules)\//, '$1/');
    const where = url ? `${url}:${(cf.lineNumber ?? 0) + 1}` : '';
    if (name === '(idle)') continue; // waiting for I/O: not CPU
    const key = `${name}\u0000${where}`;
    agg.set(key, (agg.get(key) ?? 0) + us);
    total += us;
  }
  const rows = [...agg.entries()]
    .map(([k, us]) => {
      const [name, where] = k.split('\u0000');
      return { name, where, selfMs: us / 1000, pct: total ? (100 * us) / total : 0 };
    })
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, n);
  return { totalMs: total / 1000, rows };
}

export function profileFiles(paths) {
  const out = [];
  for (const p of paths) {
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...profileFiles(readdirSync(p).map((f) => join(p, f))));
    else if (p.endsWith('.cpuprofile')) out.push(p);
  }
  return out;
}

/** The measured windows the harness recorded beside a profile, or null (whole profile). */
export function windowsFor(file) {
  try {
    return JSON.parse(readFileSync(join(dirname(file), 'measured-windows.json'), 'utf8'))
      .windows_before_exit_s;
  } catch {
    return null;
  }
}

export function formatTop(file, n = 15, { whole = false } = {}) {
  const windows = whole ? null : windowsFor(file);
  const { totalMs, rows } = topFunctions(file, n, windows);
  const what = windows ? 'during the measured window(s)' : 'over the whole process life';
  const lines = [
    `${basename(file)}: ${(totalMs / 1000).toFixed(2)} s of CPU sampled ${what} ((idle) left out); self time:`,
  ];
  for (const r of rows)
    lines.push(
      `  ${r.pct.toFixed(1).padStart(5)}%  ${r.selfMs.toFixed(0).padStart(7)} ms  ${r.name}  ${r.where}`,
    );
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--top');
  const n = i >= 0 ? Number(args.splice(i, 2)[1]) : 15;
  const w = args.indexOf('--whole');
  const whole = w >= 0 && args.splice(w, 1).length > 0;
  const files = profileFiles(args);
  if (!files.length) {
    process.stderr.write('usage: profile-top.mjs FILE_OR_DIR... [--top N] [--whole]\n');
    process.exit(2);
  }
  for (const f of files) process.stdout.write(`${formatTop(f, n, { whole })}\n\n`);
}
