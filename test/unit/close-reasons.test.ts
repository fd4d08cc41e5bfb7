// keyport_connections_closed_total{reason}: every close reason the engine records (src/engine)
// maps to one bounded kind; details (error names, addresses, byte counts) never reach a label.
import t from 'tap';
import { CLOSE_REASON_KINDS, closeReasonKind } from '../../src/engine/relay/close-reasons.js';

const cases: [string | null, string][] = [
  ['eof', 'eof'],
  ['client recv failed: ERROR_NETNAME_DELETED', 'client-error'],
  ['client send failed: ECONNRESET', 'client-error'],
  ['upstream recv failed: WSAECONNRESET', 'upstream-error'],
  ['idle-timeout', 'idle-timeout'],
  ['too-slow: 12 B in 30000 ms', 'too-slow'],
  ['closed by API', 'api'],
  ['closed by API (abort)', 'api-abort'],
  ['client recv cancelled', 'recv-cancelled'],
  ['close deadline', 'close-deadline'],
  ['listener aborted', 'listener-abort'],
  ['listener drain deadline', 'drain-deadline'],
  ['shutdown deadline', 'shutdown'],
  ['SIGINT during drain', 'shutdown'],
  ['upstream connect failed: ECONNREFUSED', 'upstream-connect-failed'],
  ['upstream connect failed: CONNECT_TIMEOUT (resolving the name)', 'upstream-connect-failed'],
  ['upstream db.internal.example:5432 not resolved: ENOTFOUND', 'upstream-connect-failed'],
  ['upstream socket: socket() failed: EMFILE', 'upstream-connect-failed'],
  ['upstream reset right after connect: ECONNRESET', 'upstream-reset'],
  ['upstream connect failed: ECONNREFUSED (2 addresses tried)', 'upstream-connect-failed'],
  ['proxy header invalid: v2 signature mismatch', 'proxy-header'],
  ['proxy header timeout: the client did not send a whole header in time', 'proxy-header'],
  ['proxy header missing: the client closed before sending one', 'proxy-header'],
  ['idle-timeout; then close deadline', 'idle-timeout'],
  ['closed by API; then listener aborted', 'api'],
  ['setup failed', 'other'],
  [null, 'other'],
];

t.test('each recorded reason has its kind', async (t) => {
  for (const [reason, kind] of cases) t.equal(closeReasonKind(reason), kind, String(reason));
});

t.test('kinds are few and label-safe', async (t) => {
  t.ok(CLOSE_REASON_KINDS.length <= 20, `${CLOSE_REASON_KINDS.length} kinds`);
  for (const k of CLOSE_REASON_KINDS) t.match(k, /^[a-z][a-z-]*$/);
  t.same(new Set(cases.map(([, k]) => k)), new Set(CLOSE_REASON_KINDS), 'every kind is reachable');
});
