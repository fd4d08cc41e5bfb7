// Metric families whose children are created once and then updated in place. prom-client 15's
// own children rebuild a label hash and objects on every observe()/inc() (measured ~0.7 µs and
// steady GC per histogram observe); the completion path calls us per op, so these keep plain
// numbers and typed arrays and hand prom-client the usual `get()` shape only at scrape time.

export type Labels = Readonly<Record<string, string>>;
export type FamilyType = 'counter' | 'gauge' | 'histogram';

export interface Sample {
  value: number;
  labels: Labels;
  /** For histograms: the _bucket / _sum / _count series name. */
  metricName?: string;
}

/** What the exposition needs of a family: its metadata and its samples at scrape time. */
export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: FamilyType;
  samples(): Sample[];
}

export class CounterChild {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** A counter whose children are made on first use (a cold path) and then kept by the caller. */
export class CounterVec implements Family {
  readonly type = 'counter';
  private readonly children = new Map<string, CounterChild>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {}

  /** Allocates a key: call it once per label set, keep the child, inc() that on the hot path. */
  child(...values: string[]): CounterChild {
    const key = values.join('\u0000');
    let c = this.children.get(key);
    if (!c) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => {
        labels[n] = values[i] ?? '';
      });
      c = new CounterChild(labels);
      this.children.set(key, c);
    }
    return c;
  }

  get size(): number {
    return this.children.size;
  }

  samples(): Sample[] {
    return [...this.children.values()].map((c) => ({ value: c.value, labels: c.labels }));
  }
}

export class HistogramChild {
  /** Per-bucket (non-cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i] += 1;
    this.sum += v;
    this.count++;
  }
}

export class HistogramVec implements Family {
  readonly type = 'histogram';
  private readonly children: HistogramChild[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  child(labels: Labels = {}): HistogramChild {
    const c = new HistogramChild(labels, this.buckets);
    this.children.push(c);
    return c;
  }

  samples(): Sample[] {
    const out: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.children) {
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += c.counts[i];
        out.push({ metricName: bucket, labels: { ...c.labels, le: String(le) }, value: acc });
      });
      out.push({ metricName: bucket, labels: { ...c.labels, le: '+Inf' }, value: c.count });
      out.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum });
      out.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count });
    }
    return out;
  }
}

/** A family read from engine state when scraped (gauges, and counters derived from totals). */
export class CollectedFamily implements Family {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    readonly samples: () => Sample[],
  ) {}
}
