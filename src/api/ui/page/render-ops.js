// The in-flight ops table: stuck ones first (a send or connect older than the
// threshold; a recv or accept waits on its peer and is never stuck), and the stuck count the
// tile shows, from /ops/summary over the whole engine.

import { $, cmdButton, none, setHtml } from './dom.js';
import { esc, fmtBytes, fmtMs, ownerText } from './format.js';
import { ROWS_MAX, state, WAITING_OPS } from './state.js';

/** Stuck ops over the whole engine: /ops/summary counts those older than the threshold. */
export function stuckCount() {
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
const OP_RANK = { send: 0, connect: 1, recv: 2, accept: 3, nop: 4 };

export function renderOps() {
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
