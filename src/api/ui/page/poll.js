// The snapshots: every REFRESH_MS (and soon after an event or a command) one round of GETs, a
// bounded page per table and the summaries for the counts, then one render. Never two rounds at
// once, and never closer than the last one's cost allows.

import { AuthError, getJson, getMetrics, headers } from './api.js';
import { parseMetrics } from './prom.js';
import { renderAll } from './render.js';
import { addSample } from './samples.js';
import { OLDEST_OPS, PAGE, REFRESH_MS, state, TOP_CONNS } from './state.js';

let refreshTimer = null;
let refreshDue = 0;
let refreshing = false;
let again = false;
// The API shares its thread with the engine: snapshots are spaced by at least minGap, which
// grows with how long the last one took (a big engine is polled less, events or not).
let lastEnd = 0;
let minGap = 400;

export function scheduleRefresh(ms) {
  const due = Math.max(Date.now() + ms, lastEnd + minGap);
  if (refreshTimer && refreshDue <= due) return;
  clearTimeout(refreshTimer);
  refreshDue = due;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    void refresh();
  }, due - Date.now());
}

export async function refresh() {
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
      state.connView === 'page' ? `/connections?${connQ}` : `/connections/summary?top=${TOP_CONNS}`;
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
