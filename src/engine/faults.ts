// Fault injection for tests only (KEYPORT_TEST_FAULTS), so a test can make the kernel's word
// disagree with keyport's tables and watch the engine hold: e.g.
//   KEYPORT_TEST_FAULTS=wrong-key:3,duplicate:5,socket-limit:40,throw-after:100,non-ifs:1,ctrl-c-as:6
// Read once at start-up; with the variable unset every field is 0 and costs one test.

export interface Faults {
  /** Every Nth socket is associated with the wrong key (its key with the top bit flipped). */
  wrongKeyEvery: number;
  /** Every Nth dequeued completion is delivered a second time (a duplicate packet). */
  duplicateEvery: number;
  /** Sockets the backend may hold at once before creating/accepting fails (EMFILE). */
  socketLimit: number;
  /** The engine throws inside its completion path after this many completions. */
  throwAfter: number;
  /**
   * IOCP: every socket's provider is taken as non-IFS (a layered provider), so skip-on-success
   * is not set and an op that succeeds inline still queues a packet.
   */
  nonIfs: number;
  /** io_uring: the provided-buffer ring holds this many buffers (a power of two), so it runs out. */
  providedBuffers: number;
  /**
   * Windows: a Ctrl+C is delivered again as this console event (2 close, 6 shutdown), the way
   * Windows delivers it; Wine turns SIGINT into Ctrl+C but cannot send the others.
   */
  ctrlCAs: number;
}

const NAMES: Record<string, keyof Faults> = {
  'wrong-key': 'wrongKeyEvery',
  duplicate: 'duplicateEvery',
  'socket-limit': 'socketLimit',
  'throw-after': 'throwAfter',
  'non-ifs': 'nonIfs',
  'provided-buffers': 'providedBuffers',
  'ctrl-c-as': 'ctrlCAs',
};

export function parseFaults(spec: string | undefined): Faults {
  const f: Faults = {
    wrongKeyEvery: 0,
    duplicateEvery: 0,
    socketLimit: 0,
    throwAfter: 0,
    nonIfs: 0,
    providedBuffers: 0,
    ctrlCAs: 0,
  };
  if (!spec) return f;
  for (const part of spec.split(',')) {
    const [name, value] = part.split(':');
    const field = NAMES[(name ?? '').trim()];
    const n = Number(value);
    if (!field || !Number.isInteger(n) || n <= 0) {
      throw new Error(
        `KEYPORT_TEST_FAULTS: "${part}" is not NAME:N with NAME one of ${Object.keys(NAMES).join(', ')}`,
      );
    }
    f[field] = n;
  }
  return f;
}

export const FAULTS: Faults = parseFaults(process.env.KEYPORT_TEST_FAULTS);

/** The key a socket is wrongly associated with under the wrong-key fault. */
export function wrongKey(key: bigint): bigint {
  return key ^ (1n << 63n);
}
