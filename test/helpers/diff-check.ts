// The relay invariants, judged on what the two peers observed (./diff-run.ts). They hold for a
// direct connection (the test checks that too: it is the harness's own sanity check), so a relay
// that breaks one has changed what the peers can rely on.
import type { EndKind, PeerObs, RunResult } from './diff-run.js';
import type { Scenario } from './diff-script.js';

export const CHECKS = {
  integrity: 'no lost, reordered, duplicated or extra bytes',
  'eof-complete': 'a clean EOF only after every byte the sender wrote',
  'eof-needs-fin': 'a clean EOF only when the sender half-closed (a RST stays a RST)',
  'half-close': 'without any RST, a half-close is carried: every byte, then a clean EOF',
  'no-hang': 'every stream ends before the deadline',
  'one-upstream': 'exactly one upstream connection per client connection',
} as const;

export type Check = keyof typeof CHECKS;

/**
 * What the sender of the direction did, for telling failures apart (a known defect may cover
 * one cause and not another): it reset the connection, it half-closed, there was no sender at
 * all (refused upstream / no upstream connection), or none of these.
 */
export type Cause = 'sender-reset' | 'sender-ended' | 'no-sender' | 'other';

export interface Failure {
  check: Check;
  cause: Cause;
  /** The direction whose receiver saw the problem, e.g. upstream→client. */
  dir: string;
  msg: string;
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  const step = 4096;
  for (let off = 0; off < n; off += step) {
    const end = Math.min(n, off + step);
    if (!a.subarray(off, end).equals(b.subarray(off, end))) {
      for (let i = off; i < end; i++) if (a[i] !== b[i]) return i;
    }
  }
  return -1;
}

function causeOf(sender: PeerObs): Cause {
  if (sender.resetCalled) return 'sender-reset';
  if (!sender.connected) return 'no-sender';
  if (sender.endCalled) return 'sender-ended';
  return 'other';
}

export function check(
  sc: Scenario,
  r: RunResult,
  streams: { client: Buffer; upstream: Buffer },
): Failure[] {
  const out: Failure[] = [];
  const dirs = [
    { dir: 'client→upstream', s: r.client, rcv: r.upstream, stream: streams.client },
    { dir: 'upstream→client', s: r.upstream, rcv: r.client, stream: streams.upstream },
  ];
  const anyReset =
    sc.client.some((st) => st.op === 'rst') ||
    sc.upstream.some((st) => st.op === 'rst') ||
    sc.mode === 'never' ||
    sc.mode === 'refused';
  for (const { dir, s, rcv, stream } of dirs) {
    const got = rcv.received;
    const cause = causeOf(s);
    const fail = (c: Check, msg: string): void => {
      out.push({ check: c, cause, dir, msg: `${dir}: ${msg}` });
    };
    if (got.length > s.wrote) {
      fail('integrity', `${got.length} B received, only ${s.wrote} B written (extra bytes)`);
    }
    const at = firstDifference(got, stream);
    if (at >= 0) {
      fail('integrity', `bytes differ from offset ${at} (lost, reordered or duplicated data)`);
    }
    if (rcv.end === 'eof' && got.length !== s.wrote) {
      fail('eof-complete', `clean EOF after ${got.length} of ${s.wrote} B (${why(s)})`);
    }
    if (rcv.end === 'eof' && !s.endCalled) {
      fail('eof-needs-fin', `clean EOF, but the sender never half-closed (${why(s)})`);
    }
    if (!anyReset && s.endCalled && (rcv.end !== 'eof' || got.length !== s.wrote)) {
      fail(
        'half-close',
        `sender wrote ${s.wrote} B and half-closed; receiver got ${got.length} B, then ${endText(rcv)}`,
      );
    }
  }
  for (const [name, p] of [
    ['client', r.client],
    ['upstream', r.upstream],
  ] as const) {
    if (p.end === 'open') {
      out.push({
        check: 'no-hang',
        cause: 'other',
        dir: name,
        msg: `${name}: stream still open at the deadline (${Math.round(r.deadlineMs)} ms)`,
      });
    }
  }
  if (r.upstream.extraConnections > 0) {
    out.push({
      check: 'one-upstream',
      cause: 'other',
      dir: 'upstream',
      msg: `${r.upstream.extraConnections + 1} upstream connections for one client`,
    });
  }
  return out;
}

function why(s: PeerObs): string {
  if (s.resetCalled) return s.endCalled ? 'the sender half-closed, then reset' : 'the sender reset';
  if (!s.connected) return 'there was no sender: no upstream connection';
  return s.endCalled ? 'the sender half-closed' : 'the sender neither half-closed nor reset';
}

export function endText(p: PeerObs): string {
  return p.code && p.end !== 'eof' ? `${p.end} (${p.code})` : p.end;
}

/** One line per peer: what it received (length + SHA-256 prefix) and how its stream ended. */
export function observed(r: RunResult): string {
  const peer = (name: string, p: PeerObs): string =>
    `${name}: wrote ${p.wrote} B${p.endCalled ? ' +end' : ''}${p.resetCalled ? ' +rst' : ''}, ` +
    `received ${p.received.length} B sha256:${p.sha256.slice(0, 12)}, ${endText(p)}` +
    (p.endAt !== undefined ? ` at ${p.endAt} ms` : '');
  return `${peer('client', r.client)}; ${peer('upstream', r.upstream)}; took ${r.ms} ms`;
}

/**
 * A coarse class of one peer's outcome for comparing relays: how its stream ended, and whether
 * it got everything the other peer wrote ("all") or less ("short").
 */
export function outcomeClass(p: PeerObs, other: PeerObs): string {
  const end: EndKind = p.end;
  if (end === 'none') return 'none';
  return `${end}/${p.received.length === other.wrote ? 'all' : 'short'}`;
}
