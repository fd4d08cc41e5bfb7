// The window of /metrics scrapes (WINDOW_MS and a bit): the latency table's rates and
// percentiles and the tiles' throughput are differences between its oldest and newest scrape,
// and each scrape adds one p99 point per op to the chart.

import { drawChart } from './chart.js';
import { deltaBuckets, quantile } from './prom.js';
import { CHART_POINTS, OP_COLORS, state, WINDOW_MS } from './state.js';

export function addSample(s) {
  const prev = state.samples[state.samples.length - 1];
  state.samples.push(s);
  while (state.samples.length > 2 && s.at - state.samples[1].at > WINDOW_MS) state.samples.shift();
  const c = state.chart;
  if (!c.ops.length) c.ops = Object.keys(s.hist).filter((op) => op in OP_COLORS);
  c.xs.push(s.at / 1000);
  for (const op of c.ops) {
    c.ys[op] ??= [];
    let y = null;
    if (prev?.hist[op] && s.hist[op]) {
      const q = quantile(0.99, deltaBuckets(s.hist[op], prev.hist[op]));
      if (q) y = q.value * 1000;
    }
    c.ys[op].push(y);
  }
  if (c.xs.length > CHART_POINTS) {
    c.xs.shift();
    for (const op of c.ops) c.ys[op].shift();
  }
  drawChart();
}

/** Per op over the window: rate and percentiles; and since start. */
export function latencyRows() {
  const n = state.samples.length;
  if (!n) return [];
  const cur = state.samples[n - 1];
  const old = n > 1 ? state.samples[0] : null;
  const secs = old ? (cur.at - old.at) / 1000 : 0;
  return Object.entries(cur.hist).map(([op, h]) => {
    const win = deltaBuckets(h, old?.hist[op]);
    const winCount = win.length ? win[win.length - 1][1] : 0;
    return {
      op,
      rate: secs > 0 ? (h.count - (old?.hist[op]?.count ?? 0)) / secs : null,
      p50: old ? quantile(0.5, win) : null,
      p90: old ? quantile(0.9, win) : null,
      p99: old ? quantile(0.99, win) : null,
      winCount,
      total: h.count,
      p99all: quantile(0.99, h.buckets),
    };
  });
}

export function throughput() {
  const n = state.samples.length;
  if (n < 2) return null;
  const a = state.samples[0];
  const b = state.samples[n - 1];
  const secs = (b.at - a.at) / 1000;
  if (secs <= 0) return null;
  let completions = 0;
  for (const [op, h] of Object.entries(b.hist)) completions += h.count - (a.hist[op]?.count ?? 0);
  return {
    in: Math.max(0, b.bytesIn - a.bytesIn) / secs,
    out: Math.max(0, b.bytesOut - a.bytesOut) / secs,
    completions: Math.max(0, completions) / secs,
  };
}
