// keyport status page. Plain browser JavaScript, no framework and no build step: it reads the
// same JSON API as curl (snapshots every 1.5 s: counts from the summaries and one bounded page
// of each table, never a whole collection, so a poll costs the same at 100 or 18 000
// connections), follows GET /events for live changes, computes
// latency percentiles from the /metrics histogram buckets, and draws them with uPlot.
(() => {
  const REFRESH_MS = 1500;
  const WINDOW_MS = 10_000; // rates and percentiles in the latency table
  const CHART_POINTS = 160; // 4 min at 1.5 s
  const EVENTS_KEPT = 200;
  const ROWS_MAX = 500; // per table; the count says when more exist
  const PAGE = 100; // items per table asked of the API each poll
  const OLDEST_OPS = 20; // the oldest ops /ops/summary lists
  const TOP_CONNS = 20; // the busiest / oldest connections /connections/summary lists
  const TOKEN_KEY = 'keyport.token';
  const OP_COLORS = {
    accept: '#7c5cff',
    connect: '#e07b00',
    recv: '#2563eb',
    send: '#16a34a',
    disconnect: '#c0262d',
  };
  /** Ops that wait on a peer (a client that says nothing, a listener nobody connects to). */
  const WAITING_OPS = new Set(['recv', 'accept']);

  const $ = (sel) => document.querySelector(sel);
  const LOCKED = 'Enter the API token (top right) to see this.';
  /** What an empty table says: nothing there, or nothing readable yet. */
  const none = (msg) => (state.readDenied ? LOCKED : msg);
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);

  const state = {
    config: null,
    token: sessionStorage.getItem(TOKEN_KEY) ?? '',
    tokenBad: false,
    readDenied: false,
    down: null,
    listeners: [],
    conns: { total: 0, items: [] },
    keys: { total: 0, items: [] },
    ops: [], // the oldest ops and one page of /ops, merged
    opsSummary: null,
    ready: null,
    health: null,
    metricsOff: false,
    samples: [], // parsed /metrics scrapes, newest last, WINDOW_MS and a bit
    chart: { xs: [], ops: [], ys: {} },
    selected: null,
    detail: null,
    detailGone: false,
    closed: new Map(), // connection id → its connection-closed event
    sort: { key: 'id', dir: 1 },
    filter: '',
    listenerFilter: '',
    /** Which connections the table shows: 'page' (opening order, paged), 'busiest', 'oldest'. */
    connView: 'page',
    connOffset: 0,
    opKind: '',

    stuckMs: 5000,
    events: [],
    live: 'connecting',
    armed: null,
  };

  // ---- formatting --------------------------------------------------------------------------

  function fmtBytes(n) {
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

  function fmtMs(ms) {
    if (ms == null) return '–';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  /** Three significant digits at most: 12 µs, 1.25 ms, 35.1 ms, 220 ms, 5.24 s. */
  function fmtLatency(sec) {
    if (sec == null || Number.isNaN(sec)) return '–';
    const [v, unit] = sec < 1e-3 ? [sec * 1e6, 'µs'] : sec < 1 ? [sec * 1e3, 'ms'] : [sec, 's'];
    const digits = v >= 100 || unit === 'µs' ? 0 : v >= 10 ? 1 : 2;
    return `${v.toFixed(digits)} ${unit}`;
  }

  /** Axis ticks of the log scale: powers of ten, no decimals. */
  function fmtTick(ms) {
    const sec = ms / 1000;
    if (sec < 1e-3) return `${+(sec * 1e6).toPrecision(3)} µs`;
    if (sec < 1) return `${+(sec * 1e3).toPrecision(3)} ms`;
    return `${+sec.toPrecision(3)} s`;
  }

  function fmtQuantile(q) {
    if (!q) return '–';
    return q.over ? `> ${fmtLatency(q.value)}` : fmtLatency(q.value);
  }

  function fmtRate(perSec, bytes) {
    if (perSec == null) return '–';
    if (bytes) return `${fmtBytes(Math.round(perSec))}/s`;
    return perSec < 10 ? perSec.toFixed(1) : String(Math.round(perSec));
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  function idNum(id) {
    const n = Number.parseInt(String(id).replace(/^\D+/, ''), 10);
    return Number.isNaN(n) ? 0 : n;
  }

  function ownerText(o) {
    if (!o) return '–';
    if (o.kind === 'engine') return `engine ${o.id}`;
    if (o.kind === 'listener') return `listener ${o.id}`;
    return `${o.id}${o.side ? ` ${o.side}` : ''}`;
  }

  // ---- API ---------------------------------------------------------------------------------

  class AuthError extends Error {}

  function headers() {
    return state.token ? { authorization: `Bearer ${state.token}` } : {};
  }

  async function getJson(path, okStatuses = [200]) {
    const r = await fetch(path, { headers: headers(), cache: 'no-store' });
    if (r.status === 401) throw new AuthError(path);
    if (!okStatuses.includes(r.status)) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  async function getMetrics() {
    const r = await fetch('/metrics', { headers: headers(), cache: 'no-store' });
    if (r.status === 401) throw new AuthError('/metrics');
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(`/metrics: HTTP ${r.status}`);
    return r.text();
  }

  function commandsAllowed() {
    if (!state.config) return false;
    return !state.config.tokenRequired || (state.token !== '' && !state.tokenBad);
  }

  async function command(method, path, what, describe) {
    if (!commandsAllowed()) {
      toast(`${what}: enter the API token first`, true);
      return;
    }
    try {
      const r = await fetch(path, { method, headers: headers(), cache: 'no-store' });
      const body = await r.json().catch(() => null);
      if (r.status === 401) {
        state.tokenBad = true;
        renderMode();
        renderAll();
        toast(`${what}: ${body?.message ?? 'the token was refused'}`, true);
        return;
      }
      if (!r.ok) {
        toast(`${what}: ${body?.message ?? `HTTP ${r.status}`}`, true);
        return;
      }
      toast(describe ? describe(body) : `${what}: done`);
    } catch (err) {
      toast(`${what}: ${err.message}`, true);
    }
    scheduleRefresh(100);
  }

  // ---- snapshots ---------------------------------------------------------------------------

  let refreshTimer = null;
  let refreshDue = 0;
  let refreshing = false;
  let again = false;
  // The API shares its thread with the engine: snapshots are spaced by at least minGap, which
  // grows with how long the last one took (a big engine is polled less, events or not).
  let lastEnd = 0;
  let minGap = 400;

  function scheduleRefresh(ms) {
    const due = Math.max(Date.now() + ms, lastEnd + minGap);
    if (refreshTimer && refreshDue <= due) return;
    clearTimeout(refreshTimer);
    refreshDue = due;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      void refresh();
    }, due - Date.now());
  }

  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    const began = performance.now();
    try {
      const sel = state.selected;
      const connQ = new URLSearchParams({
        limit: String(PAGE),
        offset: String(state.connOffset),
      });
      if (state.listenerFilter) connQ.set('listener', state.listenerFilter);
      // The busiest and the oldest come from the summary's one pass, not from a page.
      const connsPath =
        state.connView === 'page'
          ? `/connections?${connQ}`
          : `/connections/summary?top=${TOP_CONNS}`;
      const opQ = new URLSearchParams({ limit: String(PAGE) });
      if (state.opKind) opQ.set('kind', state.opKind);
      const sumQ = new URLSearchParams({
        oldest: String(OLDEST_OPS),
        olderThanMs: String(Math.round(state.stuckMs)),
      });
      const [listeners, conns, keys, ops, opsSummary, ready, health, metrics, detail] =
        await Promise.all([
          getJson('/listeners'),
          getJson(connsPath),
          getJson(`/keys?limit=${PAGE}`),
          getJson(`/ops?${opQ}`),
          getJson(`/ops/summary?${sumQ}`),
          getJson('/readyz', [200, 503]),
          getJson('/healthz'),
          getMetrics(),
          sel
            ? fetch(`/connections/${encodeURIComponent(sel)}`, {
                headers: headers(),
                cache: 'no-store',
              }).then((r) => (r.ok ? r.json() : null))
            : null,
        ]);
      state.listeners = listeners.items;
      state.conns =
        state.connView === 'page'
          ? conns
          : { total: conns.total, offset: 0, items: conns[state.connView] };
      // Connections closed under the page: step back to the last page that has any.
      if (state.connView === 'page' && state.connOffset > 0 && state.connOffset >= conns.total)
        state.connOffset = Math.max(0, Math.floor((conns.total - 1) / PAGE) * PAGE);
      state.keys = keys;
      state.opsSummary = opsSummary;
      // The oldest ops (stuck ones among them) and one page; a record in both is shown once.
      const seen = new Set();
      state.ops = [...opsSummary.oldest, ...ops.items].filter(
        (o) => !seen.has(o.record) && seen.add(o.record),
      );
      state.opsTotal = state.opKind ? ops.total : opsSummary.total;
      state.ready = ready;
      state.health = health;
      state.readDenied = false;
      state.down = null;
      if (sel && sel === state.selected) {
        if (detail) {
          state.detail = detail;
          state.detailGone = false;
        } else state.detailGone = true;
      }
      state.metricsOff = metrics == null;
      if (metrics != null) addSample(parseMetrics(metrics));
    } catch (err) {
      if (err instanceof AuthError) {
        state.readDenied = true;
        if (state.token) state.tokenBad = true;
      } else state.down = err.message;
    } finally {
      refreshing = false;
      renderAll();
      if (again) {
        again = false;
        scheduleRefresh(50);
      }
      lastEnd = Date.now();
      minGap = Math.max(400, (performance.now() - began) * 5);
      scheduleRefresh(document.hidden ? REFRESH_MS * 4 : REFRESH_MS);
    }
  }

  // ---- metrics: Prometheus text → histograms → percentiles ----------------------------------

  function parseLabels(text) {
    const out = {};
    if (!text) return out;
    for (const m of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]] = m[2];
    return out;
  }

  function parseMetrics(text) {
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
  function deltaBuckets(cur, prev) {
    if (!prev || prev.buckets.length !== cur.buckets.length) return cur.buckets;
    if (cur.count < prev.count) return cur.buckets;
    return cur.buckets.map(([le, c], i) => [le, c - prev.buckets[i][1]]);
  }

  /** histogram_quantile: linear within the bucket; in +Inf, the largest finite bound. */
  function quantile(q, buckets) {
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

  function addSample(s) {
    const prev = state.samples[state.samples.length - 1];
    state.samples.push(s);
    while (state.samples.length > 2 && s.at - state.samples[1].at > WINDOW_MS)
      state.samples.shift();
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
  function latencyRows() {
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

  function throughput() {
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

  // ---- chart (uPlot) -----------------------------------------------------------------------

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

  function drawChart() {
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

  // ---- live events (fetch-based SSE, so the Authorization header can be sent) ---------------

  let eventsAbort = null;

  async function followEvents() {
    for (;;) {
      const ctrl = new AbortController();
      eventsAbort = ctrl;
      try {
        const r = await fetch('/events', { headers: headers(), signal: ctrl.signal });
        if (r.status === 401) {
          setLive('locked');
          await sleep(5000, ctrl.signal);
          continue;
        }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        setLive('live');
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            onMessage(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch {
        // Reconnect below (the server went away, or the token changed).
      }
      if (state.live !== 'locked') setLive('reconnecting');
      await sleep(ctrl.signal.aborted ? 0 : 2000);
    }
  }

  function restartEvents() {
    eventsAbort?.abort();
  }

  function sleep(ms, signal) {
    return new Promise((res) => {
      const t = setTimeout(res, ms);
      signal?.addEventListener('abort', () => {
        clearTimeout(t);
        res();
      });
    });
  }

  function onMessage(block) {
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('data:')) data += line.slice(line[5] === ' ' ? 6 : 5);
    }
    if (!data) return; // a comment (heartbeat) or retry line
    let e;
    try {
      e = JSON.parse(data);
    } catch {
      return;
    }
    state.events.unshift(e);
    if (state.events.length > EVENTS_KEPT) state.events.length = EVENTS_KEPT;
    if (e.type === 'connection-closed') {
      state.closed.set(e.connection, e);
      if (state.closed.size > 2000) state.closed.delete(state.closed.keys().next().value);
      // Gone at once from the table; the next snapshot confirms.
      const i = state.conns.items.findIndex((c) => c.id === e.connection);
      if (i >= 0) {
        state.conns.items.splice(i, 1);
        state.conns.total = Math.max(0, state.conns.total - 1);
      }
      renderConnections();
    }
    renderEvents(true);
    scheduleRefresh(150);
  }

  function setLive(s) {
    state.live = s;
    const el = $('#live');
    el.className = `pill ${s === 'live' ? 'ok' : s === 'locked' ? 'bad' : 'warn'}`;
    el.innerHTML =
      s === 'live'
        ? '<span class="dot"></span>live'
        : s === 'locked'
          ? 'events: token needed'
          : s === 'connecting'
            ? 'connecting'
            : 'reconnecting';
  }

  // ---- rendering ---------------------------------------------------------------------------

  const lastHtml = new Map();
  function setHtml(el, html) {
    if (lastHtml.get(el) === html) return;
    lastHtml.set(el, html);
    el.innerHTML = html;
  }

  function cmdButton(cmd, arg, label, danger) {
    const id = `${cmd}:${arg}`;
    const armed = state.armed && state.armed.id === id && state.armed.until > Date.now();
    const allowed = commandsAllowed();
    const title = allowed
      ? 'click twice to confirm'
      : state.tokenBad
        ? 'the token was refused: enter the right one'
        : 'enter the API token to enable commands';
    return `<button type="button" class="cmd${danger ? ' danger' : ''}${armed ? ' armed' : ''}" data-cmd="${esc(cmd)}" data-arg="${esc(arg)}" title="${esc(title)}"${allowed ? '' : ' disabled'}>${armed ? `${esc(label)}?` : esc(label)}</button>`;
  }

  function stateBadge(s) {
    const cls =
      s === 'open' || s === 'listening'
        ? 'ok'
        : s === 'connecting' || s === 'draining' || s === 'closing'
          ? 'warn'
          : 'bad';
    return `<span class="badge ${cls}">${esc(s)}</span>`;
  }

  function renderHeader() {
    const cfg = state.config;
    $('#version').textContent = cfg ? `v${cfg.version}` : '';
    const r = state.ready;
    const ready = $('#ready');
    if (state.down) {
      ready.hidden = false;
      ready.className = 'pill bad';
      ready.textContent = 'unreachable';
      ready.title = state.down;
    } else if (r) {
      ready.hidden = false;
      ready.className = `pill ${r.ready ? 'ok' : 'bad'}`;
      ready.textContent = r.ready ? 'ready' : 'not ready';
      ready.title = r.ready ? 'listeners bound, completion loop turning' : r.reasons.join('; ');
    }
    $('#backend').textContent = r ? r.backend : '';
    $('#backend').hidden = !r;
    $('#uptime').textContent = state.health ? `up ${fmtMs(state.health.uptimeSeconds * 1000)}` : '';

    const banner = $('#banner');
    let msg = '';
    if (state.readDenied)
      msg =
        state.token && state.tokenBad
          ? 'The token was refused. Enter the right API token above to see this keyport.'
          : 'This keyport needs the API token to read (api.protect: all). Enter it above.';
    else if (state.down) msg = `keyport is not answering (${state.down}); retrying…`;
    banner.textContent = msg;
    banner.hidden = !msg;
  }

  function renderMode() {
    const cfg = state.config;
    const mode = $('#mode');
    const form = $('#token-form');
    if (!cfg) return;
    $('#token').hidden = !cfg.tokenRequired;
    form.querySelector('button[type=submit]').hidden = !cfg.tokenRequired;
    $('#token-clear').hidden = !state.token;
    if (!cfg.tokenRequired) {
      mode.className = 'pill ok';
      mode.textContent = 'commands enabled';
      mode.title = 'no API token is configured (loopback only)';
    } else if (!state.token) {
      mode.className = 'pill warn';
      mode.textContent = 'read-only';
      mode.title = 'enter the API token to enable the command buttons';
    } else if (state.tokenBad) {
      mode.className = 'pill bad';
      mode.textContent = 'token refused';
      mode.title = 'keyport answered 401 to this token';
    } else {
      mode.className = 'pill ok';
      mode.textContent = 'commands enabled';
      mode.title = 'commands are sent with your token';
    }
  }

  function renderTiles() {
    const set = (id, v, alert) => {
      const el = $(id);
      el.textContent = v;
      el.parentElement.classList.toggle('alert', Boolean(alert));
    };
    if (state.readDenied) {
      for (const el of document.querySelectorAll('.tile .v')) el.textContent = '–';
      return;
    }
    const stuck = stuckCount();
    const tp = throughput();
    set('#t-listeners', state.listeners.length);
    set('#t-connections', state.conns.total);
    set('#t-ops', state.opsSummary?.total ?? 0);
    set('#t-stuck', stuck, stuck > 0);
    set('#t-keys', state.keys.total);
    set('#t-rate', state.metricsOff ? 'off' : fmtRate(tp?.completions));
    set('#t-in', state.metricsOff ? 'off' : fmtRate(tp?.in, true));
    set('#t-out', state.metricsOff ? 'off' : fmtRate(tp?.out, true));
  }

  /**
   * A forward listener's targets: one line each with its state and load (several targets), or
   * the one target; a target that is not up is marked, with its last error in the title.
   */
  function targetsCell(l) {
    const ups = l.upstreams ?? [];
    if (ups.length <= 1 && (ups[0]?.state ?? 'up') === 'up') return esc(l.target ?? '–');
    const line = (u) => {
      const cls = u.state === 'up' ? 'ok' : u.state === 'ejected' ? 'warn' : 'bad';
      const why = u.lastError ? ` — last error ${u.lastError}` : '';
      return `<div class="upstream" data-target="${esc(u.target)}" title="${esc(
        `${u.connectionsTotal} connected, ${u.connectFailuresTotal} failed${why}`,
      )}">${esc(u.target)} <span class="badge ${cls}">${esc(u.state)}</span> ${u.connections}</div>`;
    };
    return `${ups.length > 1 ? `<div class="muted">${esc(l.balance)}</div>` : ''}${ups.map(line).join('')}`;
  }

  function renderListeners() {
    const rows = state.listeners.map(
      (l) => `<tr data-id="${esc(l.id)}">
        <td class="mono">${esc(l.id)}</td><td>${esc(l.mode)}</td>
        <td class="mono">${esc(l.address)}</td><td class="mono">${targetsCell(l)}</td>
        <td>${stateBadge(l.state)}</td><td class="mono key">${esc(l.key ?? '–')}</td>
        <td class="num">${l.acceptsPending} / ${l.acceptDepth}</td>
        <td class="num">${l.connections} / ${l.maxConnections}</td>
        <td class="num">${l.acceptedTotal}</td>
        <td class="num">${l.idleTimeoutMs ? fmtMs(l.idleTimeoutMs) : 'never'}</td>
        <td class="actions">${
          l.state === 'listening'
            ? cmdButton('listener-drain', l.id, 'Drain') +
              cmdButton('listener-abort', l.id, 'Abort', true)
            : l.state === 'draining'
              ? cmdButton('listener-abort', l.id, 'Abort', true)
              : ''
        }</td></tr>`,
    );
    setHtml(
      $('#listeners tbody'),
      rows.join('') || `<tr><td class="empty" colspan="11">${none('No listener.')}</td></tr>`,
    );
    const sel = $('#conn-listener');
    const opts = `<option value="">all listeners</option>${state.listeners
      .map((l) => `<option value="${esc(l.id)}">${esc(l.id)} · ${esc(l.address)}</option>`)
      .join('')}`;
    if (lastHtml.get(sel) !== opts) {
      setHtml(sel, opts);
      sel.value = state.listenerFilter;
    }
  }

  function renderLatency() {
    const rows = latencyRows();
    const body = rows.map(
      (r) => `<tr data-op="${esc(r.op)}">
      <td><span class="op-swatch" style="background:${OP_COLORS[r.op] ?? '#888'}"></span>${esc(r.op)}</td>
      <td class="num">${fmtRate(r.rate)}</td>
      <td class="num">${r.winCount ? fmtQuantile(r.p50) : '–'}</td>
      <td class="num">${r.winCount ? fmtQuantile(r.p90) : '–'}</td>
      <td class="num">${r.winCount ? fmtQuantile(r.p99) : '–'}</td>
      <td class="num">${r.total}</td><td class="num">${fmtQuantile(r.p99all)}</td></tr>`,
    );
    setHtml(
      $('#latency tbody'),
      state.metricsOff
        ? '<tr><td class="empty" colspan="7">Metrics are switched off (KEYPORT_METRICS=off).</td></tr>'
        : body.join('') ||
            `<tr><td class="empty" colspan="7">${none('Waiting for /metrics…')}</td></tr>`,
    );
  }

  function connMatches(c) {
    if (state.listenerFilter && c.listener !== state.listenerFilter) return false;
    const f = state.filter.trim().toLowerCase();
    if (!f) return true;
    return [c.id, c.key, c.upstreamKey, c.remote, c.local, c.upstream, c.state, c.listener].some(
      (v) => v != null && String(v).toLowerCase().includes(f),
    );
  }

  function compareConns(a, b) {
    const k = state.sort.key;
    let d;
    if (k === 'id' || k === 'listener') d = idNum(a[k]) - idNum(b[k]);
    else if (typeof a[k] === 'number' || typeof b[k] === 'number') d = (a[k] ?? -1) - (b[k] ?? -1);
    else d = String(a[k] ?? '').localeCompare(String(b[k] ?? ''));
    return d * state.sort.dir || idNum(a.id) - idNum(b.id);
  }

  function renderConnections() {
    // The upstream key column only when some listener forwards.
    $('#connections').classList.toggle(
      'no-fwd',
      !state.listeners.some((l) => l.mode === 'forward') &&
        !state.conns.items.some((c) => c.upstreamKey),
    );
    const all = state.conns.items.filter(connMatches).sort(compareConns);
    const shown = all.slice(0, ROWS_MAX);
    const rows = shown.map(
      (
        c,
      ) => `<tr data-id="${esc(c.id)}" data-key="${esc(c.key)}"${c.id === state.selected ? ' class="selected"' : ''}>
        <td class="mono id">${esc(c.id)}</td><td class="mono">${esc(c.listener)}</td>
        <td>${stateBadge(c.state)}</td><td class="mono key">${esc(c.key)}</td>
                <td class="mono fwd">${esc(c.upstreamKey ?? '–')}</td><td class="mono">${esc(c.remote ?? '–')}</td>
        <td class="num">${fmtBytes(c.bytesIn)}</td><td class="num">${fmtBytes(c.bytesOut)}</td>
        <td class="num">${c.opsInFlight}</td><td class="num">${fmtMs(c.ageMs)}</td>
        <td class="num">${fmtMs(c.idleMs)}</td>
        <td class="actions">${
          c.state === 'closed'
            ? ''
            : cmdButton('conn-close', c.id, 'Close') + cmdButton('conn-abort', c.id, 'Abort', true)
        }</td></tr>`,
    );
    setHtml(
      $('#connections tbody'),
      rows.join('') ||
        `<tr><td class="empty" colspan="12">${
          state.conns.total ? 'No connection matches the filter.' : none('No connection.')
        }</td></tr>`,
    );
    const total = state.conns.total;
    const loaded = state.conns.items.length;
    let count = `${total} live`;
    if (state.connView !== 'page') count += ` · the ${loaded} ${state.connView}`;
    else if (loaded < total)
      count += ` · ${loaded ? state.connOffset + 1 : 0}–${state.connOffset + loaded} loaded`;
    if (all.length !== loaded) count += ` · ${all.length} match`;
    if (shown.length < all.length) count += ` · first ${shown.length} shown`;
    $('#conn-prev').disabled = state.connView !== 'page' || state.connOffset === 0;
    $('#conn-next').disabled =
      state.connView !== 'page' || state.connOffset + loaded >= state.conns.total;
    $('#conn-count').textContent = state.readDenied ? '' : count;
    for (const th of document.querySelectorAll('#connections th[data-sort]')) {
      th.classList.toggle('sorted', th.dataset.sort === state.sort.key);
      th.classList.toggle('desc', th.dataset.sort === state.sort.key && state.sort.dir < 0);
    }
  }

  /** Stuck ops over the whole engine: /ops/summary counts those older than the threshold. */
  function stuckCount() {
    const olderThan = state.opsSummary?.olderThan;
    // The threshold just changed: count the ops loaded until the next poll brings the count.
    if (!olderThan || olderThan.ms !== Math.round(state.stuckMs))
      return state.ops.filter(isStuck).length;
    const older = olderThan.byKind;
    let n = 0;
    for (const [kind, count] of Object.entries(older))
      if (!WAITING_OPS.has(kind) && kind !== 'nop') n += count;
    return n;
  }

  function isStuck(o) {
    return !WAITING_OPS.has(o.op) && o.op !== 'nop' && o.ageMs > state.stuckMs;
  }

  /** Stuck first, then ops that should finish by themselves, then waits on peers; oldest first. */
  const OP_RANK = { send: 0, connect: 1, disconnect: 2, recv: 3, accept: 4, nop: 5 };

  function renderOps() {
    const ops = state.ops
      .filter((o) => !state.opKind || o.op === state.opKind)
      .sort(
        (a, b) =>
          Number(isStuck(b)) - Number(isStuck(a)) ||
          (OP_RANK[a.op] ?? 9) - (OP_RANK[b.op] ?? 9) ||
          b.ageMs - a.ageMs,
      );
    const kinds = state.opsSummary?.byKind ?? {};
    const rows = ops.slice(0, ROWS_MAX).map((o) => {
      const stuck = isStuck(o);
      const cls = stuck ? 'stuck' : WAITING_OPS.has(o.op) ? 'waiting' : '';
      return `<tr data-record="${esc(o.record)}" data-key="${esc(o.key)}" data-op="${esc(o.op)}"${
        o.connection ? ` data-conn="${esc(o.connection)}"` : ''
      } class="${cls}${o.connection && o.connection === state.selected ? ' selected' : ''}">
        <td class="mono">${esc(o.record)}</td>
        <td>${esc(o.op)}${stuck ? ' <span class="badge bad">stuck</span>' : ''}</td>
        <td class="mono">${esc(o.key)}</td><td>${esc(ownerText(o.owner))}</td>
        <td class="num">${o.bufferSize == null ? '–' : fmtBytes(o.bufferSize)}</td>
        <td class="num age">${fmtMs(o.ageMs)}</td>
        <td class="actions">${o.op === 'nop' ? '' : cmdButton('op-cancel', o.record, 'Cancel', true)}</td></tr>`;
    });
    setHtml(
      $('#ops tbody'),
      rows.join('') || `<tr><td class="empty" colspan="7">${none('No op in flight.')}</td></tr>`,
    );
    const summary = Object.entries(kinds)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(' · ');
    $('#ops-summary').textContent = state.readDenied
      ? ''
      : (summary || 'none') +
        (Math.min(ops.length, ROWS_MAX) < (state.opsTotal ?? 0)
          ? ` · ${Math.min(ops.length, ROWS_MAX)} of ${state.opsTotal} shown (the oldest first)`
          : '');
  }

  function renderKeys() {
    const keys = [...state.keys.items].sort(
      (a, b) => a.index - b.index || a.generation - b.generation,
    );
    const rows = keys.slice(0, ROWS_MAX).map((k) => {
      const conn = k.owner.kind === 'connection' ? k.owner.id : null;
      return `<tr data-key="${esc(k.key)}"${conn ? ` data-conn="${esc(conn)}"` : ''}${
        conn && conn === state.selected ? ' class="selected"' : ''
      }>
        <td class="mono">${esc(k.key)}</td><td>${esc(ownerText(k.owner))}</td>
        <td class="num">${k.socket < 0 ? '–' : k.socket}</td>
        <td class="mono">${esc(k.associatedAt.slice(11, 23))}</td>
        <td class="num">${k.completions}</td><td class="num">${k.opsInFlight}</td></tr>`;
    });
    setHtml(
      $('#keys tbody'),
      (rows.join('') || `<tr><td class="empty" colspan="6">${none('No key.')}</td></tr>`) +
        (state.keys.total > Math.min(keys.length, ROWS_MAX)
          ? `<tr><td class="empty" colspan="6">${
              state.keys.total - Math.min(keys.length, ROWS_MAX)
            } more not shown</td></tr>`
          : ''),
    );
  }

  function describeEvent(e) {
    switch (e.type) {
      case 'listener-up':
        return `${e.listener} listening on ${e.address} (${e.mode}), key ${e.key}`;
      case 'listener-draining':
        return `${e.listener} draining, ${e.connections} connection(s) left`;
      case 'listener-down':
        return `${e.listener} stopped`;
      case 'connection-opened':
        return `${e.connection} from ${e.remote ?? '?'} on ${e.listener}, key ${e.key}`;
      case 'connection-closed':
        return `${e.connection} ${e.abortive ? 'reset' : 'closed'}: ${e.reason} · in ${fmtBytes(e.bytesIn)}, out ${fmtBytes(e.bytesOut)}`;
      case 'op-cancelled':
        return `${e.op} ${e.record} of ${e.connection ?? e.listener ?? e.key} → ${e.status ?? 'pending'}`;
      case 'upstream':
        return `${e.listener} target ${e.target} ${e.state}${e.error ? `: ${e.error}` : ''}${
          e.forMs ? ` for ${fmtMs(e.forMs)}` : ''
        }`;
      case 'error':
        return `${e.op} of ${e.connection ?? e.listener ?? e.key} failed: ${e.error}`;
      default:
        return JSON.stringify(e);
    }
  }

  const EVENT_LABEL = {
    'listener-up': 'listening',
    'listener-draining': 'draining',
    'listener-down': 'stopped',
    'connection-opened': 'opened',
    'connection-closed': 'closed',
    'op-cancelled': 'cancelled',
    upstream: 'upstream',
    error: 'error',
  };

  const EVENT_CLASS = {
    'listener-up': 'ok',
    'listener-draining': 'warn',
    'listener-down': 'bad',
    'connection-opened': 'info',
    'connection-closed': '',
    'op-cancelled': 'warn',
    upstream: 'warn',
    error: 'bad',
  };

  function renderEvents(fresh) {
    const html = state.events
      .map(
        (e, i) =>
          `<li${fresh && i === 0 ? ' class="fresh"' : ''} data-type="${esc(e.type)}"${
            e.connection ? ` data-conn="${esc(e.connection)}"` : ''
          }><span class="time">${fmtClock(e.at)}</span><span><span class="badge ${
            e.abortive ? 'bad' : (EVENT_CLASS[e.type] ?? '')
          }" title="${esc(e.type)}">${esc(e.abortive ? 'reset' : (EVENT_LABEL[e.type] ?? e.type))}</span></span><span class="what">${esc(
            describeEvent(e),
          )}</span></li>`,
      )
      .join('');
    setHtml($('#events'), html || `<li class="empty">${none('Waiting for events…')}</li>`);
  }

  function renderTrace() {
    const el = $('#trace');
    const d = state.detail;
    if (!state.selected || !d) {
      $('#trace-title').textContent = '';
      setHtml(
        el,
        '<p class="empty">Click a connection to see its last completions: key, OVERLAPPED record, bytes, status and latency.</p>',
      );
      return;
    }
    const closedEv = state.closed.get(d.id);
    const gone = state.detailGone;
    $('#trace-title').textContent = d.id;
    const meta = [
      ['state', gone ? (closedEv ? `closed: ${closedEv.reason}` : 'gone') : d.state],
      ['listener', `${d.listener} (${d.mode})`],
      ['client key', d.key],
      ['upstream key', d.upstreamKey ?? '–'],
      ['remote', d.remote ?? '–'],
      ['local', d.local ?? '–'],
      ['upstream', d.upstream ?? '–'],
      ['bytes', `in ${fmtBytes(d.bytesIn)} · out ${fmtBytes(d.bytesOut)}`],
      ['ops in flight', gone ? '0' : String(d.opsInFlight)],
      ['age / idle', `${fmtMs(d.ageMs)} / ${fmtMs(d.idleMs)}`],
    ]
      .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
      .join('');
    const now = Date.now();
    const sides = d.mode === 'forward';
    const trace = [...d.trace].reverse().map(
      (t) => `<tr>
        <td class="num">${fmtMs(Math.max(0, now - t.at))}</td><td>${esc(t.op)}</td>
        ${sides ? `<td>${esc(t.side)}</td>` : ''}<td class="num">${t.bytes}</td>
        <td><span class="badge ${t.status === 'SUCCESS' ? 'ok' : 'bad'}">${esc(t.status)}</span>${
          t.inline ? ' <span class="badge" title="completed inline, no packet">inline</span>' : ''
        }</td>
        <td class="num">${fmtLatency(t.latencyUs / 1e6)}</td>
        <td class="mono" title="the key as dequeued from the port; keyport associated ${esc(t.expectedKey)}">${
          t.key === null ? '—' : esc(t.key)
        }${t.keyMismatch ? ' <span class="badge bad" title="not the socket\'s key: refused">mismatch</span>' : ''}</td>
        <td class="mono">${esc(t.record)}</td></tr>`,
    );
    setHtml(
      el,
      `<dl class="trace-meta">${meta}</dl>
      <div class="toolbar">${
        gone
          ? ''
          : cmdButton('conn-close', d.id, 'Close') + cmdButton('conn-abort', d.id, 'Abort', true)
      }</div>
      <div class="scroll tall"><table id="trace-table"><thead><tr><th class="num">ago</th><th>op</th>${sides ? '<th>side</th>' : ''}
      <th class="num">bytes</th><th>status</th><th class="num">latency</th><th title="as dequeued from the port">key</th><th>record</th></tr></thead>
      <tbody>${trace.join('') || '<tr><td class="empty" colspan="8">No completion yet.</td></tr>'}</tbody></table></div>`,
    );
  }

  function renderAll() {
    renderHeader();
    renderMode();
    renderTiles();
    renderListeners();
    renderLatency();
    renderConnections();
    renderOps();
    renderKeys();
    renderTrace();
    if (state.events.length === 0) renderEvents(false);
  }

  // ---- interaction -------------------------------------------------------------------------

  function toast(msg, bad) {
    const el = document.createElement('div');
    el.className = `toast${bad ? ' bad' : ''}`;
    el.textContent = msg;
    $('#toasts').append(el);
    setTimeout(() => el.remove(), bad ? 7000 : 4000);
  }

  function select(id) {
    state.selected = id;
    state.detail = null;
    state.detailGone = false;
    renderConnections();
    renderTrace();
    void refresh();
  }

  const COMMANDS = {
    'listener-drain': (id) =>
      command(
        'DELETE',
        `/listeners/${encodeURIComponent(id)}?mode=drain`,
        `drain ${id}`,
        (l) =>
          `${id} is ${l.state}: new clients refused, ${l.connections} connection(s) may finish`,
      ),
    'listener-abort': (id) =>
      command(
        'DELETE',
        `/listeners/${encodeURIComponent(id)}?mode=abort`,
        `abort ${id}`,
        () => `${id} aborted: its connections were reset`,
      ),
    'conn-close': (id) =>
      command(
        'DELETE',
        `/connections/${encodeURIComponent(id)}?mode=graceful`,
        `close ${id}`,
        () => `${id} closed gracefully (its client gets EOF)`,
      ),
    'conn-abort': (id) =>
      command(
        'DELETE',
        `/connections/${encodeURIComponent(id)}?mode=abort`,
        `abort ${id}`,
        () => `${id} aborted (its client gets RST)`,
      ),
    'op-cancel': (rec) =>
      command('DELETE', `/ops/${encodeURIComponent(rec)}`, `cancel ${rec}`, (o) =>
        o.cancelError
          ? `${o.op} ${rec}: not cancelled (${o.cancelError})`
          : `${o.op} ${rec} cancelled → ${o.status ?? 'pending'}`,
      ),
  };

  function onCommandClick(btn) {
    const id = `${btn.dataset.cmd}:${btn.dataset.arg}`;
    if (state.armed && state.armed.id === id && state.armed.until > Date.now()) {
      state.armed = null;
      renderAll();
      COMMANDS[btn.dataset.cmd]?.(btn.dataset.arg);
      return;
    }
    state.armed = { id, until: Date.now() + 3000 };
    renderAll();
    setTimeout(() => {
      if (state.armed?.id === id && state.armed.until <= Date.now()) {
        state.armed = null;
        renderAll();
      }
    }, 3100);
  }

  document.addEventListener('click', (ev) => {
    const btn = ev.target.closest('button.cmd');
    if (btn) {
      ev.stopPropagation();
      if (!btn.disabled) onCommandClick(btn);
      return;
    }
    const th = ev.target.closest('#connections th[data-sort]');
    if (th) {
      const key = th.dataset.sort;
      state.sort =
        state.sort.key === key
          ? { key, dir: -state.sort.dir }
          : { key, dir: /Ms$|^bytes|^ops/.test(key) ? -1 : 1 };
      renderConnections();
      return;
    }
    const row = ev.target.closest(
      '#connections tbody tr[data-id], #ops tbody tr[data-conn], #keys tbody tr[data-conn], #events li[data-conn]',
    );
    if (row) select(row.dataset.id ?? row.dataset.conn);
  });

  $('#conn-filter').addEventListener('input', (ev) => {
    state.filter = ev.target.value;
    renderConnections();
  });
  $('#conn-view').addEventListener('change', (ev) => {
    state.connView = ev.target.value;
    state.connOffset = 0;
    // Show a ranking in its own order (the table's headers can still re-sort it).
    if (state.connView === 'busiest') state.sort = { key: 'bytesIn', dir: -1 };
    else if (state.connView === 'oldest') state.sort = { key: 'ageMs', dir: -1 };
    scheduleRefresh(0);
  });
  for (const [id, step] of [
    ['#conn-prev', -PAGE],
    ['#conn-next', PAGE],
  ])
    $(id).addEventListener('click', () => {
      state.connOffset = Math.max(0, state.connOffset + step);
      scheduleRefresh(0);
    });
  $('#conn-listener').addEventListener('change', (ev) => {
    state.listenerFilter = ev.target.value;
    state.connOffset = 0;
    renderConnections();
    scheduleRefresh(0); // the listener filter is applied by the API, to the page it returns
  });
  $('#op-kind').addEventListener('change', (ev) => {
    state.opKind = ev.target.value;
    renderOps();
    scheduleRefresh(0);
  });
  $('#stuck-ms').addEventListener('input', (ev) => {
    const v = Number(ev.target.value);
    if (v > 0) {
      state.stuckMs = v;
      renderOps();
      renderTiles();
      scheduleRefresh(300); // the stuck count comes from /ops/summary?olderThanMs
    }
  });
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('#token').value.trim();
    if (!v) return;
    state.token = v;
    state.tokenBad = false;
    sessionStorage.setItem(TOKEN_KEY, v);
    $('#token').value = '';
    renderAll();
    restartEvents();
    void refresh();
  });
  $('#token-clear').addEventListener('click', () => {
    state.token = '';
    state.tokenBad = false;
    sessionStorage.removeItem(TOKEN_KEY);
    renderAll();
    restartEvents();
    void refresh();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) scheduleRefresh(0);
  });

  // ---- start -------------------------------------------------------------------------------

  async function start() {
    setLive('connecting');
    for (;;) {
      try {
        state.config = await getJson('/ui/config');
        break;
      } catch (err) {
        state.down = err.message;
        renderHeader();
        await sleep(2000);
      }
    }
    state.down = null;
    renderAll();
    void followEvents();
    await refresh();
  }

  void start();
})();
