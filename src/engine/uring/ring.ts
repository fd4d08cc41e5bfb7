// One io_uring: created with io_uring_setup, its SQ/CQ rings and SQE array mmapped and viewed
// from JS with koffi.view. SQEs are written with typed-array stores; the CQ is read the same way.
// No SQPOLL: the kernel consumes SQEs only inside io_uring_enter, on this thread.
import { readFileSync } from 'node:fs';
import { BackendError } from '../backend.js';
import { EACCES, EBADF, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, errnoName } from './errors.js';
import {
  CQE_FLAGS,
  CQE_RES,
  CQE_SIZE,
  CQE_USER_DATA,
  CQO_CQES,
  CQO_HEAD,
  CQO_RING_MASK,
  CQO_TAIL,
  FEAT_SINGLE_MMAP,
  OFF_CQ_RING,
  OFF_SQ_RING,
  OFF_SQES,
  P_CQ_ENTRIES,
  P_CQ_OFF,
  P_FEATURES,
  P_FLAGS,
  P_SQ_ENTRIES,
  P_SQ_OFF,
  PARAMS_SIZE,
  PROBE_LAST_OP,
  PROBE_OP_FLAGS,
  PROBE_OP_SUPPORTED,
  PROBE_OPS,
  PROBE_SIZE,
  REGISTER_PROBE,
  REQUIRED_OPS,
  SETUP_CLAMP,
  SETUP_COOP_TASKRUN,
  SETUP_CQSIZE,
  SETUP_SUBMIT_ALL,
  SETUP_TASKRUN_FLAG,
  SQE_ADDR,
  SQE_BUF_INDEX,
  SQE_FD,
  SQE_LEN,
  SQE_OFF,
  SQE_OP_FLAGS,
  SQE_SIZE,
  SQE_USER_DATA,
  SQO_ARRAY,
  SQO_FLAGS,
  SQO_HEAD,
  SQO_RING_MASK,
  SQO_TAIL,
} from './layout.js';
import * as sys from './syscalls.js';

/** Flags the event-loop integration relies on (PLATFORM-NOTES: ring-fd poll + COOP_TASKRUN). */
const PREFERRED_FLAGS =
  SETUP_CQSIZE | SETUP_CLAMP | SETUP_SUBMIT_ALL | SETUP_COOP_TASKRUN | SETUP_TASKRUN_FLAG;
/** What an older kernel (< 5.19) accepts; completions then arrive by task-work signal. */
const FALLBACK_FLAGS = SETUP_CQSIZE | SETUP_CLAMP;

const DISABLED_SYSCTL = '/proc/sys/kernel/io_uring_disabled';

/** The error thrown when this system cannot give keyport an io_uring at all. */
export function uringUnavailable(call: string, code: number, reason: string): BackendError {
  return new BackendError(
    call,
    code,
    errnoName(code),
    `io_uring is unavailable here (${reason}); use the Windows code path instead: ` +
      'keyport --backend iocp (runs under Wine)',
  );
}

function readDisabledSysctl(): string | null {
  try {
    return readFileSync(DISABLED_SYSCTL, 'utf8').trim();
  } catch {
    return null;
  }
}

interface Mapping {
  ptr: bigint;
  len: number;
}

function map(fd: number, len: number, offset: number): Mapping {
  const ptr = sys.mmap(
    null,
    len,
    sys.PROT_READ | sys.PROT_WRITE,
    sys.MAP_SHARED | sys.MAP_POPULATE,
    fd,
    offset,
  ) as bigint | null;
  if (ptr === null || ptr === sys.MAP_FAILED) {
    const e = sys.errno();
    throw new BackendError('mmap(io_uring)', e, errnoName(e));
  }
  return { ptr, len };
}

export interface RingSizes {
  sqEntries: number;
  cqEntries: number;
  /** Set up as on a kernel older than 5.19 (no COOP_TASKRUN), to test that path here. */
  compat?: boolean;
}

export class Ring {
  readonly fd: number;
  readonly sqEntries: number;
  readonly cqEntries: number;
  readonly setupFlags: number;
  readonly features: number;
  /** Set by close(): after it no method may touch the (unmapped) views. */
  closed = false;

  private readonly maps: Mapping[];
  private readonly sq: Uint32Array;
  private readonly cq: Uint32Array;
  private readonly cqSigned: Int32Array;
  private readonly sqe32: Uint32Array;
  private readonly sqe64: BigUint64Array;
  private readonly sqHeadAt: number;
  private readonly sqTailAt: number;
  private readonly sqFlagsAt: number;
  private readonly sqMask: number;
  private readonly cqHeadAt: number;
  private readonly cqTailAt: number;
  private readonly cqesAt: number;
  private readonly cqMask: number;
  /** Our copies of the indices we own: the SQ tail and the CQ head. */
  private sqTail: number;
  private cqHead: number;

  private constructor(fd: number, params: Buffer, setupFlags: number) {
    this.fd = fd;
    this.setupFlags = setupFlags;
    this.sqEntries = params.readUInt32LE(P_SQ_ENTRIES);
    this.cqEntries = params.readUInt32LE(P_CQ_ENTRIES);
    this.features = params.readUInt32LE(P_FEATURES);
    const sqo = (f: number) => params.readUInt32LE(P_SQ_OFF + f);
    const cqo = (f: number) => params.readUInt32LE(P_CQ_OFF + f);
    const sqLen = sqo(SQO_ARRAY) + this.sqEntries * 4;
    const cqLen = cqo(CQO_CQES) + this.cqEntries * CQE_SIZE;

    this.maps = [];
    try {
      let sqMap: Mapping;
      let cqMap: Mapping;
      if (this.features & FEAT_SINGLE_MMAP) {
        sqMap = map(fd, Math.max(sqLen, cqLen), OFF_SQ_RING);
        cqMap = sqMap;
        this.maps.push(sqMap);
      } else {
        sqMap = map(fd, sqLen, OFF_SQ_RING);
        this.maps.push(sqMap);
        cqMap = map(fd, cqLen, OFF_CQ_RING);
        this.maps.push(cqMap);
      }
      const sqesMap = map(fd, this.sqEntries * SQE_SIZE, OFF_SQES);
      this.maps.push(sqesMap);

      this.sq = new Uint32Array(sys.koffi.view(sqMap.ptr, sqMap.len));
      this.cq = new Uint32Array(sys.koffi.view(cqMap.ptr, cqMap.len));
      this.cqSigned = new Int32Array(this.cq.buffer);
      const sqes = sys.koffi.view(sqesMap.ptr, sqesMap.len);
      this.sqe32 = new Uint32Array(sqes);
      this.sqe64 = new BigUint64Array(sqes);
    } catch (err) {
      this.unmap();
      throw err;
    }

    this.sqHeadAt = sqo(SQO_HEAD) / 4;
    this.sqTailAt = sqo(SQO_TAIL) / 4;
    this.sqFlagsAt = sqo(SQO_FLAGS) / 4;
    this.sqMask = this.sq[sqo(SQO_RING_MASK) / 4] as number;
    this.cqHeadAt = cqo(CQO_HEAD) / 4;
    this.cqTailAt = cqo(CQO_TAIL) / 4;
    this.cqesAt = cqo(CQO_CQES) / 4;
    this.cqMask = this.cq[cqo(CQO_RING_MASK) / 4] as number;
    this.sqTail = Atomics.load(this.sq, this.sqTailAt);
    this.cqHead = Atomics.load(this.cq, this.cqHeadAt);
    // SQ slot i always holds SQE i: the indirection array is filled once and never touched again.
    const array = sqo(SQO_ARRAY) / 4;
    for (let i = 0; i < this.sqEntries; i++) this.sq[array + i] = i;
  }

  /** Sets up a ring, or throws a BackendError that says why io_uring cannot be used here. */
  static open(sizes: RingSizes): Ring {
    const disabled = readDisabledSysctl();
    if (disabled === '2') {
      throw uringUnavailable('io_uring_setup', EPERM, `${DISABLED_SYSCTL} is 2`);
    }
    let flags = sizes.compat ? FALLBACK_FLAGS : PREFERRED_FLAGS;
    let params = Ring.params(flags, sizes.cqEntries);
    let fd = sys.io_uring_setup(sys.SYS_io_uring_setup, sizes.sqEntries, params);
    if (fd < 0 && sys.errno() === EINVAL) {
      flags = FALLBACK_FLAGS;
      params = Ring.params(flags, sizes.cqEntries);
      fd = sys.io_uring_setup(sys.SYS_io_uring_setup, sizes.sqEntries, params);
    }
    if (fd < 0) {
      const e = sys.errno();
      if (e === ENOSYS) {
        throw uringUnavailable('io_uring_setup', e, 'the kernel or a seccomp profile refuses it');
      }
      if (e === EPERM || e === EACCES) {
        const why =
          disabled === '1'
            ? `${DISABLED_SYSCTL} is 1 and this process is not in kernel.io_uring_group`
            : 'not permitted: a seccomp profile or security module blocks it';
        throw uringUnavailable('io_uring_setup', e, why);
      }
      throw new BackendError('io_uring_setup', e, errnoName(e));
    }
    let ring: Ring;
    try {
      ring = new Ring(fd, params, flags);
    } catch (err) {
      sys.close(fd);
      throw err;
    }
    const missing = ring.missingOps();
    if (missing.length > 0) {
      ring.close();
      throw uringUnavailable(
        'io_uring_register(PROBE)',
        EOPNOTSUPP,
        `kernel lacks opcodes ${missing}`,
      );
    }
    return ring;
  }

  private static params(flags: number, cqEntries: number): Buffer {
    const p = Buffer.alloc(PARAMS_SIZE);
    p.writeUInt32LE(flags, P_FLAGS);
    p.writeUInt32LE(cqEntries, P_CQ_ENTRIES);
    return p;
  }

  /** Opcodes keyport needs that the kernel's probe does not report as supported. */
  private missingOps(): number[] {
    return this.unsupported(REQUIRED_OPS);
  }

  /** Whether the kernel's probe reports `op` as supported. */
  supports(op: number): boolean {
    return this.unsupported([op]).length === 0;
  }

  private unsupported(ops: readonly number[]): number[] {
    const probe = Buffer.alloc(PROBE_SIZE);
    const rc = sys.io_uring_register(
      sys.SYS_io_uring_register,
      this.fd,
      REGISTER_PROBE,
      probe,
      PROBE_OPS,
    );
    if (rc < 0) return []; // no probe (< 5.6): let the ops fail with their own errors
    const last = probe.readUInt8(PROBE_LAST_OP);
    return ops.filter(
      (op) =>
        op > last || (probe.readUInt16LE(16 + op * 8 + PROBE_OP_FLAGS) & PROBE_OP_SUPPORTED) === 0,
    );
  }

  /** SQEs written but not yet consumed by the kernel. */
  unsubmitted(): number {
    return (this.sqTail - Atomics.load(this.sq, this.sqHeadAt)) >>> 0;
  }

  sqFlags(): number {
    return Atomics.load(this.sq, this.sqFlagsAt);
  }

  /** CQEs posted and not yet reaped. */
  cqReady(): number {
    return (Atomics.load(this.cq, this.cqTailAt) - this.cqHead) >>> 0;
  }

  /** Writes one SQE and publishes it; false when the SQ is full (submit, then retry). */
  push(
    opcode: number,
    fd: number,
    addr: bigint,
    len: number,
    off: bigint,
    opFlags: number,
    userData: bigint,
    /** IOSQE_* flags (IOSQE_BUFFER_SELECT), and the buffer group such a recv picks from. */
    sqeFlags = 0,
    bufGroup = 0,
    /** IORING_OP_SPLICE: the fd bytes come from (the SQE's fd is where they go). */
    spliceFdIn = 0,
  ): boolean {
    if (this.closed) throw new BackendError('io_uring', EBADF, 'EBADF', 'ring closed');
    if (this.unsubmitted() >= this.sqEntries) return false;
    const i = this.sqTail & this.sqMask;
    const w = (i * SQE_SIZE) / 4;
    const d = (i * SQE_SIZE) / 8;
    const u32 = this.sqe32;
    const u64 = this.sqe64;
    u32[w] = opcode | (sqeFlags << 8); // SQE_OPCODE, SQE_FLAGS; ioprio (bytes 2..3) stays 0
    u32[w + SQE_FD / 4] = fd;
    u64[d + SQE_OFF / 8] = off;
    u64[d + SQE_ADDR / 8] = addr;
    u32[w + SQE_LEN / 4] = len;
    u32[w + SQE_OP_FLAGS / 4] = opFlags;
    u64[d + SQE_USER_DATA / 8] = userData;
    // buf_group (a u16), personality, splice_fd_in, addr3 and padding: bytes 40..63.
    u32[w + SQE_BUF_INDEX / 4] = bufGroup;
    u32[w + SQE_BUF_INDEX / 4 + 1] = spliceFdIn;
    u64[d + 6] = 0n;
    u64[d + 7] = 0n;
    this.sqTail = (this.sqTail + 1) >>> 0;
    // The kernel reads the tail with acquire semantics; the SQE stores above come first.
    Atomics.store(this.sq, this.sqTailAt, this.sqTail);
    return true;
  }

  /** io_uring_register(opcode, arg, nrArgs); returns its result, or -errno. */
  register(opcode: number, arg: Buffer, nrArgs: number): number {
    if (this.closed) throw new BackendError('io_uring_register', EBADF, 'EBADF', 'ring closed');
    const r = sys.io_uring_register(sys.SYS_io_uring_register, this.fd, opcode, arg, nrArgs);
    return r < 0 ? -sys.errno() : r;
  }

  /** io_uring_enter; returns its result, or -errno. */
  enter(toSubmit: number, minComplete: number, flags: number): number {
    if (this.closed) throw new BackendError('io_uring_enter', EBADF, 'EBADF', 'ring closed');
    const r = sys.io_uring_enter(
      sys.SYS_io_uring_enter,
      this.fd,
      toSubmit,
      minComplete,
      flags,
      null,
      0,
    );
    return r < 0 ? -sys.errno() : r;
  }

  /**
   * Hands up to `max` CQEs to `fn(userDataLo, userDataHi, res, flags)` and releases their slots. An
   * entry is consumed before `fn` sees it, so a throwing `fn` never sees the same entry twice.
   */
  reap(max: number, fn: (lo: number, hi: number, res: number, flags: number) => void): number {
    if (this.closed) return 0;
    const cq = this.cq;
    const tail = Atomics.load(cq, this.cqTailAt);
    let head = this.cqHead;
    let n = 0;
    try {
      while (head !== tail && n < max) {
        const w = this.cqesAt + ((head & this.cqMask) * CQE_SIZE) / 4;
        const lo = cq[w + CQE_USER_DATA / 4] as number;
        const hi = cq[w + CQE_USER_DATA / 4 + 1] as number;
        const res = this.cqSigned[w + CQE_RES / 4] as number;
        const flags = cq[w + CQE_FLAGS / 4] as number;
        head = (head + 1) >>> 0;
        n++;
        fn(lo, hi, res, flags);
      }
    } finally {
      this.cqHead = head;
      Atomics.store(cq, this.cqHeadAt, head);
    }
    return n;
  }

  /** Closes the ring fd (the kernel cancels whatever is left) and unmaps the rings. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.close(this.fd);
    this.unmap();
  }

  private unmap(): void {
    for (const m of this.maps) sys.munmap(m.ptr, m.len);
    this.maps.length = 0;
  }
}
