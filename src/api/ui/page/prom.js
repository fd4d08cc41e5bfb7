// Prometheus text → histograms → percentiles. The page computes its latency percentiles from
// the /metrics buckets itself (no Prometheus needed), the way PromQL's histogram_quantile does.
// Pure functions: text in, numbers out.

function parseLabels(text) {
  const out = {};
  if (!text) return out;
  for (const m of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]] = m[2];
  return out;
}

export function parseMetrics(text) {
  const hist = {};
  let bytesIn = 0;
  let bytesOut = 0;
  const H = 'keyport_completion_latency_seconds';
  for (const line of text.split('\n')) {
    if (!line.startsWith('keyport_')) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const name = m[1];
    const labels = parseLabels(m[2]);
    const v = Number(m[3]);
    if (name.startsWith(H)) {
      const op = labels.op;
      if (!op || op === 'nop') continue;
      hist[op] ??= { buckets: [], count: 0, sum: 0 };
      if (name === `${H}_bucket`) {
        hist[op].buckets.push([labels.le === '+Inf' ? Infinity : Number(labels.le), v]);
      } else if (name === `${H}_count`) hist[op].count = v;
      else if (name === `${H}_sum`) hist[op].sum = v;
    } else if (name === 'keyport_bytes_total') {
      if (labels.direction === 'in') bytesIn += v;
      else if (labels.direction === 'out') bytesOut += v;
    }
  }
  for (const h of Object.values(hist)) h.buckets.sort((a, b) => a[0] - b[0]);
  return { at: Date.now(), hist, bytesIn, bytesOut };
}

/** Cumulative buckets of cur minus prev (a restart, i.e. a decrease, counts from zero). */
export function deltaBuckets(cur, prev) {
  if (!prev || prev.buckets.length !== cur.buckets.length) return cur.buckets;
  if (cur.count < prev.count) return cur.buckets;
  return cur.buckets.map(([le, c], i) => [le, c - prev.buckets[i][1]]);
}

/** histogram_quantile: linear within the bucket; in +Inf, the largest finite bound. */
export function quantile(q, buckets) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCum = 0;
  for (const [le, cum] of buckets) {
    if (cum >= rank) {
      if (le === Infinity) return { value: prevLe, over: true };
      const inBucket = cum - prevCum;
      const frac = inBucket > 0 ? (rank - prevCum) / inBucket : 1;
      return { value: prevLe + (le - prevLe) * frac, over: false };
    }
    prevLe = le;
    prevCum = cum;
  }
  return null;
}
