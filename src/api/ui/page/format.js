// Numbers, times and text for the page: bytes, durations, latencies, rates, and HTML escaping
// (every value from the API goes through esc before it reaches innerHTML). Pure functions.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);

export function fmtBytes(n) {
  if (n == null) return '–';
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`;
}

export function fmtMs(ms) {
  if (ms == null) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Three significant digits at most: 12 µs, 1.25 ms, 35.1 ms, 220 ms, 5.24 s. */
export function fmtLatency(sec) {
  if (sec == null || Number.isNaN(sec)) return '–';
  const [v, unit] = sec < 1e-3 ? [sec * 1e6, 'µs'] : sec < 1 ? [sec * 1e3, 'ms'] : [sec, 's'];
  const digits = v >= 100 || unit === 'µs' ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${unit}`;
}

/** Axis ticks of the log scale: powers of ten, no decimals. */
export function fmtTick(ms) {
  const sec = ms / 1000;
  if (sec < 1e-3) return `${+(sec * 1e6).toPrecision(3)} µs`;
  if (sec < 1) return `${+(sec * 1e3).toPrecision(3)} ms`;
  return `${+sec.toPrecision(3)} s`;
}

export function fmtQuantile(q) {
  if (!q) return '–';
  return q.over ? `> ${fmtLatency(q.value)}` : fmtLatency(q.value);
}

export function fmtRate(perSec, bytes) {
  if (perSec == null) return '–';
  if (bytes) return `${fmtBytes(Math.round(perSec))}/s`;
  return perSec < 10 ? perSec.toFixed(1) : String(Math.round(perSec));
}

export function fmtClock(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

export function idNum(id) {
  const n = Number.parseInt(String(id).replace(/^\D+/, ''), 10);
  return Number.isNaN(n) ? 0 : n;
}

export function ownerText(o) {
  if (!o) return '–';
  if (o.kind === 'engine') return `engine ${o.id}`;
  if (o.kind === 'listener') return `listener ${o.id}`;
  return `${o.id}${o.side ? ` ${o.side}` : ''}`;
}
