// The command buttons: a first click arms one for 3 s, a second sends its DELETE with the
// token; the answer comes back as a toast, and a refused token turns the buttons off.

import { commandsAllowed, headers } from './api.js';
import { $ } from './dom.js';
import { scheduleRefresh } from './poll.js';
import { renderAll, renderMode } from './render.js';
import { state } from './state.js';

function toast(msg, bad) {
  const el = document.createElement('div');
  el.className = `toast${bad ? ' bad' : ''}`;
  el.textContent = msg;
  $('#toasts').append(el);
  setTimeout(() => el.remove(), bad ? 7000 : 4000);
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

const COMMANDS = {
  'listener-drain': (id) =>
    command(
      'DELETE',
      `/listeners/${encodeURIComponent(id)}?mode=drain`,
      `drain ${id}`,
      (l) => `${id} is ${l.state}: new clients refused, ${l.connections} connection(s) may finish`,
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

export function onCommandClick(btn) {
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
