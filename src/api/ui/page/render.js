// Rendering the page from `state`: the header, the tiles, listeners, latency and keys here, the
// bigger tables in render-*.js, and renderAll, which a poll, a command or the token calls.
// Renders only read `state`; they fetch nothing.

import { $, cmdButton, none, setHtml, stateBadge } from './dom.js';
import { esc, fmtMs, fmtQuantile, fmtRate, ownerText } from './format.js';
import { renderConnections, renderTrace } from './render-connections.js';
import { renderEvents } from './render-events.js';
import { renderOps, stuckCount } from './render-ops.js';
import { latencyRows, throughput } from './samples.js';
import { OP_COLORS, ROWS_MAX, state } from './state.js';

export function renderHeader() {
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

export function renderMode() {
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

export function renderTiles() {
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
  if (setHtml(sel, opts)) sel.value = state.listenerFilter;
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

export function renderAll() {
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
