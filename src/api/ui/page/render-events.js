// The event feed: the newest first, one line each, in words.

import { $, none, setHtml } from './dom.js';
import { esc, fmtBytes, fmtClock, fmtMs } from './format.js';
import { state } from './state.js';

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

export function renderEvents(fresh) {
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
