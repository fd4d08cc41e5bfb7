// Live events from GET /events: fetch-based SSE rather than EventSource, so the Authorization
// header can be sent. Each event goes to the feed at once (a closed connection leaves its table
// at once too) and brings the next snapshot forward; a lost stream is reopened.

import { headers } from './api.js';
import { $ } from './dom.js';
import { scheduleRefresh } from './poll.js';
import { renderConnections } from './render-connections.js';
import { renderEvents } from './render-events.js';
import { EVENTS_KEPT, state } from './state.js';

let eventsAbort = null;

export async function followEvents() {
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

export function restartEvents() {
  eventsAbort?.abort();
}

export function sleep(ms, signal) {
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

export function setLive(s) {
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
