// What the status page knows and the constants it works by. One `state` object, shared by
// every module (imported, never copied), so a render always sees what the last poll or event
// left there; the modules change it and call the renders, nothing else watches it.

export const REFRESH_MS = 1500;
export const WINDOW_MS = 10_000; // rates and percentiles in the latency table
export const CHART_POINTS = 160; // 4 min at 1.5 s
export const EVENTS_KEPT = 200;
export const ROWS_MAX = 500; // per table; the count says when more exist
export const PAGE = 100; // items per table asked of the API each poll
export const OLDEST_OPS = 20; // the oldest ops /ops/summary lists
export const TOP_CONNS = 20; // the busiest / oldest connections /connections/summary lists
export const TOKEN_KEY = 'keyport.token';
export const OP_COLORS = {
  accept: '#7c5cff',
  connect: '#e07b00',
  recv: '#2563eb',
  send: '#16a34a',
};
/** Ops that wait on a peer (a client that says nothing, a listener nobody connects to). */
export const WAITING_OPS = new Set(['recv', 'accept']);

export const state = {
  config: null,
  token: sessionStorage.getItem(TOKEN_KEY) ?? '',
  tokenBad: false,
  readDenied: false,
  down: null,
  listeners: [],
  conns: { total: 0, items: [] },
  keys: { total: 0, items: [] },
  ops: [], // the oldest ops and one page of /ops, merged
  opsSummary: null,
  ready: null,
  health: null,
  metricsOff: false,
  samples: [], // parsed /metrics scrapes, newest last, WINDOW_MS and a bit
  chart: { xs: [], ops: [], ys: {} },
  selected: null,
  detail: null,
  detailGone: false,
  closed: new Map(), // connection id → its connection-closed event
  sort: { key: 'id', dir: 1 },
  filter: '',
  listenerFilter: '',
  /** Which connections the table shows: 'page' (opening order, paged), 'busiest', 'oldest'. */
  connView: 'page',
  connOffset: 0,
  opKind: '',

  stuckMs: 5000,
  events: [],
  live: 'connecting',
  armed: null,
};
