// keyport status page. Plain browser JavaScript as ES modules, no framework and no build step:
// it reads the same JSON API as curl (snapshots every 1.5 s: counts from the summaries and one
// bounded page of each table, never a whole collection, so a poll costs the same at 100 or
// 18 000 connections), follows GET /events for live changes, computes latency percentiles from
// the /metrics histogram buckets, and draws them with uPlot. This entry wires the page's
// controls to the modules and starts: the config, then the event stream and the polling.

import { forgetToken, getJson, useToken } from './api.js';
import { onCommandClick } from './commands.js';
import { $ } from './dom.js';
import { followEvents, restartEvents, setLive, sleep } from './events.js';
import { refresh, scheduleRefresh } from './poll.js';
import { renderAll, renderHeader, renderTiles } from './render.js';
import { renderConnections, renderTrace } from './render-connections.js';
import { renderOps } from './render-ops.js';
import { PAGE, state } from './state.js';

function select(id) {
  state.selected = id;
  state.detail = null;
  state.detailGone = false;
  renderConnections();
  renderTrace();
  void refresh();
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
  useToken(v);
  $('#token').value = '';
  renderAll();
  restartEvents();
  void refresh();
});
$('#token-clear').addEventListener('click', () => {
  forgetToken();
  renderAll();
  restartEvents();
  void refresh();
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) scheduleRefresh(0);
});

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
