// The latency chart: p99 per op over each poll interval, on a log scale, drawn by uPlot (the
// global `uPlot`, from the classic script index.html loads before this module). Made on the
// first data, then only given new data; #chart's data-points says how many points it holds.

import { $ } from './dom.js';
import { fmtLatency, fmtTick } from './format.js';
import { OP_COLORS, state } from './state.js';

let plot = null;

function chartData() {
  const c = state.chart;
  return [c.xs, ...c.ops.map((op) => c.ys[op])];
}

function makePlot(el) {
  const ops = state.chart.ops;
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const grid = { stroke: dark ? '#263041' : '#eef1f5', width: 1 };
  const axis = { stroke: dark ? '#8b95a7' : '#667085', grid, ticks: grid };
  return new uPlot(
    {
      width: Math.max(300, el.clientWidth),
      height: 220,
      // The latency table under the chart is its legend (same colours).
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least the last minute, so a new page does not stretch a few seconds wide.
        x: {
          time: true,
          range: (_u, min, max) => {
            const end = max ?? Date.now() / 1000;
            return [Math.min(min ?? end, end - 60), end];
          },
        },
        y: {
          distr: 3,
          log: 10,
          range: (_u, min, max) =>
            min == null || max == null || !(min > 0)
              ? [0.01, 100]
              : uPlot.rangeLog(Math.min(min, max / 10), max, 10, true),
        },
      },
      axes: [
        { ...axis, space: 90 },
        {
          ...axis,
          size: 64,
          values: (_u, vals) => vals.map((v) => (v == null ? '' : fmtTick(v))),
        },
      ],
      series: [
        {},
        ...ops.map((op) => ({
          label: `${op} p99`,
          stroke: OP_COLORS[op],
          width: 2,
          spanGaps: false,
          points: { size: 5 },
          value: (_u, v) => (v == null ? '–' : fmtLatency(v / 1000)),
        })),
      ],
    },
    chartData(),
    el,
  );
}

export function drawChart() {
  const el = $('#chart');
  if (typeof uPlot === 'undefined' || !state.chart.ops.length) return;
  if (!plot) {
    plot = makePlot(el);
    new ResizeObserver(() =>
      plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 }),
    ).observe(el);
  } else plot.setData(chartData());
  let points = 0;
  for (const op of state.chart.ops) for (const y of state.chart.ys[op]) if (y != null) points++;
  el.dataset.points = String(points);
}
