// Renders keyport's families and prom-client's default process metrics in the Prometheus text
// format or in OpenMetrics. Two registries, one per format, each holding its own thin views:
// prom-client 15's Registry.metrics() renames a registered counter in place when it renders
// OpenMetrics (it strips `_total`), which would corrupt the next text scrape if they shared one.
import {
  collectDefaultMetrics,
  type Metric,
  type OpenMetricsContentType,
  Registry,
} from 'prom-client';
import type { Family } from './families.js';

export interface Rendered {
  contentType: string;
  body: string;
}

/** The subset of a prom-client metric that Registry renders through get(). */
interface Source {
  name: string;
  help: string;
  type: string;
  get(): Promise<{ values: unknown[] }>;
}

/** A fresh object per registry: only its own `name` is mutated by an OpenMetrics render. */
function view(src: Source): Metric {
  return {
    name: src.name,
    help: src.help,
    type: src.type,
    aggregator: 'sum',
    async get(this: { name: string }) {
      const data = await src.get();
      return { ...data, name: this.name, help: src.help, type: src.type, aggregator: 'sum' };
    },
  } as unknown as Metric;
}

/**
 * Process metrics that are slow to read, reused for 1 s: process_open_fds lists /proc/self/fd
 * (30 000 entries at 15 000 relayed connections) and the status page's poll, a Prometheus
 * scrape and a second dashboard each ask within the same second. The others (heap, CPU, RSS)
 * are cheap, and tests read them right after a GC: those are always fresh.
 */
const SLOW_TO_READ = new Set(['process_open_fds', 'process_max_fds']);
const SLOW_METRICS_TTL_MS = 1000;

function cached(src: Source, ttlMs: number): Source {
  let at = Number.NEGATIVE_INFINITY;
  let last: Promise<{ values: unknown[] }> | null = null;
  return {
    name: src.name,
    help: src.help,
    type: src.type,
    get: () => {
      const now = performance.now();
      if (last === null || now - at >= ttlMs) {
        at = now;
        last = src.get();
      }
      return last;
    },
  };
}

function familySource(f: Family): Source {
  return { name: f.name, help: f.help, type: f.type, get: async () => ({ values: f.samples() }) };
}

export class Exposition {
  private readonly text = new Registry();
  private readonly openMetrics = new Registry<OpenMetricsContentType>();

  constructor(opts: { processMetrics?: boolean } = {}) {
    this.openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    if (opts.processMetrics ?? true) {
      const defaults = new Registry();
      // Unprefixed (process_*, nodejs_*), as every exporter names them: standard dashboards
      // and alerts (process_resident_memory_bytes, nodejs_eventloop_lag_p99_seconds) just work.
      collectDefaultMetrics({ register: defaults });
      for (const m of defaults.getMetricsAsArray() as unknown as Source[]) {
        // nodejs_active_{handles,requests,resources}_total are gauges named like counters
        // (promtool rejects them); the by-type gauges beside them carry the same numbers.
        if (m.type !== 'counter' && m.name.endsWith('_total')) continue;
        this.addSource(SLOW_TO_READ.has(m.name) ? cached(m, SLOW_METRICS_TTL_MS) : m);
      }
    }
  }

  add(f: Family): void {
    this.addSource(familySource(f));
  }

  private addSource(src: Source): void {
    this.text.registerMetric(view(src));
    this.openMetrics.registerMetric(view(src));
  }

  async render(accept?: string): Promise<Rendered> {
    const reg = wantsOpenMetrics(accept) ? this.openMetrics : this.text;
    return { contentType: reg.contentType, body: await reg.metrics() };
  }
}

/**
 * Content negotiation: OpenMetrics (1.0.0 or unversioned) when the Accept header ranks it at
 * least as high as the text format; Prometheus itself sends such a q-weighted list.
 */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  let om = 0;
  let text = 0;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    let version: string | undefined;
    for (const p of params) {
      if (p.startsWith('q=')) q = Number(p.slice(2)) || 0;
      else if (p.startsWith('version=')) version = p.slice(8);
    }
    if (type === 'application/openmetrics-text') {
      if (version === undefined || version === '1.0.0') om = Math.max(om, q);
    } else if (type === 'text/plain' || type === 'text/*' || type === '*/*') {
      text = Math.max(text, q);
    }
  }
  return om > 0 && om >= text;
}
