// io_uring ABI (include/uapi/linux/io_uring.h) as byte offsets, and the header keyport's uring
// backend places at the start of every op record. The record's address is the SQE user_data,
// as the OVERLAPPED address is on Windows (DESIGN §1.2).

/** struct io_uring_params (120 B). */
export const PARAMS_SIZE = 120;
export const P_SQ_ENTRIES = 0;
export const P_CQ_ENTRIES = 4;
export const P_FLAGS = 8;
export const P_FEATURES = 20;
export const P_SQ_OFF = 40; // struct io_sqring_offsets
export const P_CQ_OFF = 80; // struct io_cqring_offsets

/** io_sqring_offsets fields, relative to P_SQ_OFF. */
export const SQO_HEAD = 0;
export const SQO_TAIL = 4;
export const SQO_RING_MASK = 8;
export const SQO_FLAGS = 16;
export const SQO_ARRAY = 24;

/** io_cqring_offsets fields, relative to P_CQ_OFF. */
export const CQO_HEAD = 0;
export const CQO_TAIL = 4;
export const CQO_RING_MASK = 8;
export const CQO_CQES = 20;

/** mmap offsets of the three regions. */
export const OFF_SQ_RING = 0;
export const OFF_CQ_RING = 0x8000000;
export const OFF_SQES = 0x10000000;

export const SETUP_CQSIZE = 1 << 3;
export const SETUP_CLAMP = 1 << 4;
export const SETUP_SUBMIT_ALL = 1 << 7;
export const SETUP_COOP_TASKRUN = 1 << 8;
export const SETUP_TASKRUN_FLAG = 1 << 9;

export const FEAT_SINGLE_MMAP = 1 << 0;

/** SQ ring flags the kernel sets. */
export const SQ_CQ_OVERFLOW = 1 << 1;
export const SQ_TASKRUN = 1 << 2;

export const ENTER_GETEVENTS = 1 << 0;

/** struct io_uring_sqe (64 B). */
export const SQE_SIZE = 64;
export const SQE_OPCODE = 0; // u8 (flags u8 @1, ioprio u16 @2)
/** IOSQE_BUFFER_SELECT: the kernel picks the recv's buffer from the group in buf_group. */
export const IOSQE_BUFFER_SELECT = 1 << 5;
export const SQE_FD = 4; // s32
export const SQE_OFF = 8; // u64: off / addr2
export const SQE_ADDR = 16; // u64
export const SQE_LEN = 24; // u32
export const SQE_OP_FLAGS = 28; // u32: msg_flags, accept_flags, cancel_flags …
export const SQE_USER_DATA = 32; // u64
export const SQE_BUF_INDEX = 40; // u16 (personality u16 @42, splice_fd_in s32 @44, addr3 @48)

/** struct io_uring_cqe (16 B). */
export const CQE_SIZE = 16;
export const CQE_USER_DATA = 0;
export const CQE_RES = 8;
export const CQE_FLAGS = 12;
/** The CQE names a provided buffer: its id is flags >>> CQE_BUFFER_SHIFT. */
export const CQE_F_BUFFER = 1 << 0;
export const CQE_BUFFER_SHIFT = 16;

/**
 * Provided-buffer rings (5.19+): io_uring_register(REGISTER_PBUF_RING, struct io_uring_buf_reg).
 * The ring is page-aligned memory of `entries` struct io_uring_buf {u64 addr; u32 len; u16 bid;
 * u16 resv}; the tail we publish is the u16 at byte 14 (the first entry's resv).
 */
export const REGISTER_PBUF_RING = 22;
export const BUF_REG_SIZE = 40; // u64 ring_addr, u32 ring_entries, u16 bgid, u16 flags, u64 resv[3]
export const BUF_ENTRY_SIZE = 16;
export const BUF_RING_TAIL = 14;

export const OP_NOP = 0;
export const OP_POLL_ADD = 6;
/** poll(2)'s POLLIN, in the SQE's poll32_events (op_flags) for POLL_ADD. */
export const POLLIN = 0x1;
export const OP_ACCEPT = 13;
export const OP_ASYNC_CANCEL = 14;
export const OP_CONNECT = 16;
export const OP_SEND = 26;
export const OP_RECV = 27;
/** splice(2) between a socket and a pipe (5.7+): bytes move in the kernel, never to user memory. */
export const OP_SPLICE = 30;
/** splice flags (in the SQE's op_flags): move pages rather than copy where the kernel can. */
export const SPLICE_F_MOVE = 1;
/** No offset on either side (sockets and pipes have none): (u64)-1 in off and splice_off_in. */
export const NO_OFFSET = 0xffff_ffff_ffff_ffffn;
export const REQUIRED_OPS = [
  OP_NOP,
  OP_POLL_ADD,
  OP_ACCEPT,
  OP_ASYNC_CANCEL,
  OP_CONNECT,
  OP_SEND,
  OP_RECV,
];

export const CANCEL_ALL = 1 << 0;
export const CANCEL_FD = 1 << 1;
export const CANCEL_ANY = 1 << 2;

/** io_uring_register opcode and struct io_uring_probe (16 B + 8 B per op). */
export const REGISTER_PROBE = 8;
export const PROBE_OPS = 256;
export const PROBE_SIZE = 16 + 8 * PROBE_OPS;
export const PROBE_LAST_OP = 0;
export const PROBE_OP_FLAGS = 2; // u16 within each 8-byte io_uring_probe_op
export const PROBE_OP_SUPPORTED = 1;

/**
 * keyport's uring op-record header (the engine's fields follow at RECORD_HEADER_SIZE).
 * HDR_RES holds the CQE `res` verbatim: a negative errno, a byte count, or the accepted fd.
 */
export const HDR_RES = 0; // s32: -EINPROGRESS while in the kernel
export const HDR_BYTES = 4; // u32: bytes transferred (for posted NOPs: the posted count)
export const HDR_FD = 8; // s32: fd the op was submitted on (the listener for accepts), -1 for NOPs
export const HDR_OPCODE = 12; // u8: IORING_OP_*
/** u16: 1 + the id of the provided buffer the kernel filled (from the CQE's flags); 0: none. */
export const HDR_BUFFER = 14;
export const HDR_KEY = 16; // u64: the fd's emulated completion key when the op was started
export const HDR_SOCKADDR = 24; // connect's target sockaddr (≤ 28 B); the kernel reads it at submit
export const RECORD_HEADER_SIZE = 64;
