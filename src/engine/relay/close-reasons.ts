// Why a connection closed, as a bounded label: the reasons Connection records are free-form
// (they carry error names and counts); metrics and the access log classify them here.

/**
 * What a close reason is, as a bounded label (keyport_connections_closed_total{reason}): the
 * reasons themselves carry error names, addresses and byte counts. Hyphenated like the other
 * label values (anomaly kinds).
 */
export const CLOSE_REASON_KINDS = [
  'eof',
  'client-error',
  'upstream-error',
  'idle-timeout',
  'too-slow',
  'api',
  'api-abort',
  'recv-cancelled',
  'close-deadline',
  'listener-abort',
  'drain-deadline',
  'shutdown',
  'upstream-connect-failed',
  'upstream-reset',
  'proxy-header',
  'other',
] as const;
export type CloseReasonKind = (typeof CLOSE_REASON_KINDS)[number];

/**
 * The kind of a close reason as Connection records it. A reason that grew (`A; then B`: an
 * abort while a graceful close was running) is classified by its first part, the cause.
 */
export function closeReasonKind(reason: string | null): CloseReasonKind {
  if (reason === 'eof') return 'eof'; // by far the most common: no work
  const full = reason ?? '';
  const then = full.indexOf('; then ');
  const r = then === -1 ? full : full.slice(0, then);
  if (r === 'eof') return 'eof';
  if (r === 'idle-timeout') return 'idle-timeout';
  if (r.startsWith('too-slow')) return 'too-slow';
  if (r === 'closed by API') return 'api';
  if (r === 'closed by API (abort)') return 'api-abort';
  if (r.endsWith(' recv cancelled')) return 'recv-cancelled';
  if (r === 'close deadline') return 'close-deadline';
  if (r === 'listener aborted') return 'listener-abort';
  if (r === 'listener drain deadline') return 'drain-deadline';
  if (r === 'shutdown deadline' || r.endsWith(' during drain')) return 'shutdown';
  if (r.startsWith('upstream reset right after connect')) return 'upstream-reset';
  if (r.startsWith('proxy header ')) return 'proxy-header';
  if (/^upstream (connect failed|socket:|\S+ not resolved)/.test(r))
    return 'upstream-connect-failed';
  if (/^client \w+ failed: /.test(r)) return 'client-error';
  if (/^upstream \w+ failed: /.test(r)) return 'upstream-error';
  return 'other';
}
