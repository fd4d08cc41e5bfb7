// The connections table (filtered and sorted here, paged by the API) and the trace panel of the
// one clicked: its details and its last completions with key, OVERLAPPED record and latency.

import { $, cmdButton, none, setHtml, stateBadge } from './dom.js';
import { esc, fmtBytes, fmtLatency, fmtMs, idNum } from './format.js';
import { ROWS_MAX, state } from './state.js';

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

export function renderConnections() {
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

export function renderTrace() {
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
