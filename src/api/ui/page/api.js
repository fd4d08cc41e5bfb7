// The API client: GETs with the bearer token when one was entered (kept in sessionStorage, so a
// reload keeps it for the tab and nothing outlives the tab), a 401 as AuthError so the page can
// ask for the token, and whether the command buttons can work with what it has.

import { state, TOKEN_KEY } from './state.js';

export class AuthError extends Error {}

export function headers() {
  return state.token ? { authorization: `Bearer ${state.token}` } : {};
}

export async function getJson(path, okStatuses = [200]) {
  const r = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (r.status === 401) throw new AuthError(path);
  if (!okStatuses.includes(r.status)) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

export async function getMetrics() {
  const r = await fetch('/metrics', { headers: headers(), cache: 'no-store' });
  if (r.status === 401) throw new AuthError('/metrics');
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(`/metrics: HTTP ${r.status}`);
  return r.text();
}

export function commandsAllowed() {
  if (!state.config) return false;
  return !state.config.tokenRequired || (state.token !== '' && !state.tokenBad);
}

/** A token entered in the form: used from now on, and kept for this tab. */
export function useToken(token) {
  state.token = token;
  state.tokenBad = false;
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  state.token = '';
  state.tokenBad = false;
  sessionStorage.removeItem(TOKEN_KEY);
}
