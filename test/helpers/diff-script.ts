// Seeded scripts for the relay differential test: what a client and an upstream server do on
// one connection, generated from a seed so that a failing case can be replayed exactly
// (KEYPORT_DIFF_SEED=N). Timing still varies between runs; the script does not.
import { createCipheriv, createHash } from 'node:crypto';

export type Step =
  /** Hand n bytes of the peer's stream to write() (no waiting for 'drain'). */
  | { op: 'send'; n: number }
  /** Do nothing for ms (reading goes on). */
  | { op: 'pause'; ms: number }
  /** Stop reading for ms (the relay sees backpressure), then read again. */
  | { op: 'readpause'; ms: number }
  /** Half-close: end() — a FIN after everything written so far. */
  | { op: 'end' }
  /** Abort: resetAndDestroy() — a RST, unsent data is dropped. */
  | { op: 'rst' };

/**
 * How the upstream takes the connection. `late` and `never` hold the accepted socket paused
 * (nothing read, nothing written: the kernel completes the handshake and buffers what arrives,
 * as for a connection waiting in the backlog); `late` starts its script after acceptDelayMs,
 * `never` only runs its closing steps (a pause, then RST: a listener that goes away with
 * connections still queued). `refused`: nothing listens on the target port.
 */
export type UpstreamMode = 'accept' | 'late' | 'never' | 'refused';

export interface Scenario {
  seed: number;
  mode: UpstreamMode;
  acceptDelayMs: number;
  client: Step[];
  upstream: Step[];
}

/** mulberry32: a small, fast, well-distributed 32-bit PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (r: () => number, lo: number, hi: number): number =>
  lo + Math.floor(r() * (hi - lo + 1));

function pick<T>(r: () => number, weighted: Array<[T, number]>): T {
  const total = weighted.reduce((s, [, w]) => s + w, 0);
  let x = r() * total;
  for (const [v, w] of weighted) {
    x -= w;
    if (x < 0) return v;
  }
  return (weighted.at(-1) as [T, number])[0];
}

export interface Profile {
  /** Largest single send (the "large" class is 1 MiB – maxSend). */
  maxSend: number;
}

export const FULL: Profile = { maxSend: 4 << 20 };

function sendSize(r: () => number, p: Profile): number {
  const c = r();
  if (c < 0.45) return int(r, 1, 512);
  if (c < 0.75) return int(r, 513, 64 << 10);
  if (c < 0.93) return int(r, (64 << 10) + 1, Math.min(1 << 20, p.maxSend));
  return int(r, Math.min((1 << 20) + 1, p.maxSend), p.maxSend);
}

/** Mostly short pauses, now and then a longer one. */
function pauseMs(r: () => number): number {
  return r() < 0.8 ? int(r, 0, 60) : int(r, 61, 400);
}

function peerSteps(r: () => number, p: Profile): Step[] {
  const steps: Step[] = [];
  const n = int(r, 0, 5);
  for (let i = 0; i < n; i++) {
    const x = r();
    if (x < 0.6) steps.push({ op: 'send', n: sendSize(r, p) });
    else if (x < 0.9) steps.push({ op: 'pause', ms: pauseMs(r) });
    else steps.push({ op: 'readpause', ms: int(r, 20, 400) });
  }
  const end = r();
  if (end < 0.62) steps.push({ op: 'end' });
  else if (end < 0.72) steps.push({ op: 'end' }, { op: 'pause', ms: pauseMs(r) }, { op: 'rst' });
  else if (end < 0.8) steps.push({ op: 'pause', ms: int(r, 50, 600) }, { op: 'end' });
  else steps.push({ op: 'rst' });
  return steps;
}

/** The script for one seed (same seed and profile → same script). */
export function generate(seed: number, p: Profile = FULL): Scenario {
  const r = rng(seed);
  const mode = pick<UpstreamMode>(r, [
    ['accept', 74],
    ['late', 12],
    ['never', 7],
    ['refused', 7],
  ]);
  const acceptDelayMs = mode === 'late' ? int(r, 50, 1500) : 0;
  const client = peerSteps(r, p);
  let upstream = peerSteps(r, p);
  if (mode === 'never') upstream = [{ op: 'pause', ms: int(r, 100, 1200) }, { op: 'rst' }];
  if (mode === 'refused') upstream = [];
  // On a few seeds an idle gap longer than keyport's parkAfterMs (1 s): the relay's reads
  // park (a bufferless wait) and must wake up for the data or FIN that follows.
  if (mode !== 'refused' && r() < 0.07) {
    const who = mode === 'never' || r() < 0.5 ? client : upstream;
    who.splice(int(r, 0, Math.max(0, who.length - 1)), 0, { op: 'pause', ms: int(r, 1250, 1600) });
  }
  return { seed, mode, acceptDelayMs, client, upstream };
}

/** The deterministic pseudo-random bytes one peer of one seed sends (AES-256-CTR keystream). */
export function streamBytes(seed: number, who: 'client' | 'upstream', length: number): Buffer {
  const key = createHash('sha256').update(`keyport-differential:${seed}:${who}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

export function sentTotal(steps: Step[]): number {
  return steps.reduce((s, st) => s + (st.op === 'send' ? st.n : 0), 0);
}

export function scriptMs(steps: Step[]): number {
  return steps.reduce((s, st) => s + (st.op === 'pause' || st.op === 'readpause' ? st.ms : 0), 0);
}

export function size(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)}MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)}KiB`;
  return `${n}B`;
}

function stepText(s: Step): string {
  switch (s.op) {
    case 'send':
      return `send ${size(s.n)}`;
    case 'pause':
      return `pause ${s.ms}ms`;
    case 'readpause':
      return `readpause ${s.ms}ms`;
    default:
      return s.op;
  }
}

/** One line a person can read (and compare with a replay). */
export function describe(sc: Scenario): string {
  const mode =
    sc.mode === 'late' ? `late(${sc.acceptDelayMs}ms)` : sc.mode === 'accept' ? 'accepts' : sc.mode;
  const up =
    sc.mode === 'refused' ? '(nothing listening)' : `[${sc.upstream.map(stepText).join(', ')}]`;
  return `seed ${sc.seed}: client [${sc.client.map(stepText).join(', ')}] | upstream ${mode} ${up}`;
}
