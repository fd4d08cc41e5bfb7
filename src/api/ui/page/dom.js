// The DOM pieces every panel uses: $, a setHtml that leaves an element alone when its HTML has
// not changed (so a poll does not reset hovers, focus or a half-done selection), and the cells
// several tables draw: a state badge, a command button, the text of an empty table.

import { commandsAllowed } from './api.js';
import { esc } from './format.js';
import { state } from './state.js';

export const $ = (sel) => document.querySelector(sel);
const LOCKED = 'Enter the API token (top right) to see this.';
/** What an empty table says: nothing there, or nothing readable yet. */
export const none = (msg) => (state.readDenied ? LOCKED : msg);

const lastHtml = new Map();
/** Sets el's HTML unless it is what was set last time; says whether it did. */
export function setHtml(el, html) {
  if (lastHtml.get(el) === html) return false;
  lastHtml.set(el, html);
  el.innerHTML = html;
  return true;
}

export function stateBadge(s) {
  const cls =
    s === 'open' || s === 'listening'
      ? 'ok'
      : s === 'connecting' || s === 'draining' || s === 'closing'
        ? 'warn'
        : 'bad';
  return `<span class="badge ${cls}">${esc(s)}</span>`;
}

export function cmdButton(cmd, arg, label, danger) {
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
