// The only place keyport declares Linux functions. io_uring has no libc wrappers, so its three
// syscalls are fixed-arity aliases of libc `syscall` (the variadic form costs twice as much and
// cannot be `.async`). Pointers are `void *` taking BigInt addresses of pinned memory.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const SYS_io_uring_setup = 425;
export const SYS_io_uring_enter = 426;
export const SYS_io_uring_register = 427;

/** syscall(425, entries, params): the ring fd, or -1 and errno. */
export const io_uring_setup = libc.func('syscall', 'long', ['long', 'uint32_t', 'void *']) as (
  nr: number,
  entries: number,
  params: Buffer,
) => number;
/** syscall(426, fd, to_submit, min_complete, flags, sig, sigsz): SQEs consumed, or -1. */
export const io_uring_enter = libc.func('syscall', 'long', [
  'long',
  'int',
  'uint32_t',
  'uint32_t',
  'uint32_t',
  'void *',
  'size_t',
]) as (
  nr: number,
  fd: number,
  toSubmit: number,
  minComplete: number,
  flags: number,
  sig: null,
  sigsz: number,
) => number;
/** syscall(427, fd, opcode, arg, nr_args). */
export const io_uring_register = libc.func('syscall', 'long', [
  'long',
  'int',
  'uint32_t',
  'void *',
  'uint32_t',
]) as (nr: number, fd: number, opcode: number, arg: Buffer, nrArgs: number) => number;

export const mmap = libc.func(
  'void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)',
);
export const munmap = libc.func('int munmap(void *addr, size_t len)');
export const close = libc.func('int close(int fd)');
/** pipe2(fds[2], flags): fds[0] the read end, fds[1] the write end. */
export const pipe2 = libc.func('int pipe2(_Out_ int *fds, int flags)') as unknown as (
  fds: Int32Array,
  flags: number,
) => number;
export const O_CLOEXEC = 0x80000;
/** fcntl(fd, F_SETPIPE_SZ, bytes): a pipe's capacity (up to /proc/sys/fs/pipe-max-size). */
export const fcntl = libc.func('int fcntl(int fd, int cmd, int arg)');
export const F_SETPIPE_SZ = 1031;
export const socket = libc.func('int socket(int domain, int type, int protocol)');
export const setsockopt = libc.func(
  'int setsockopt(int fd, int level, int name, void *value, uint32_t len)',
);
export const bind = libc.func('int bind(int fd, void *addr, uint32_t len)');
export const listen = libc.func('int listen(int fd, int backlog)');
export const shutdown = libc.func('int shutdown(int fd, int how)');
export const getsockopt = libc.func(
  'int getsockopt(int fd, int level, int name, void *value, void *len)',
);
export const getsockname = libc.func('int getsockname(int fd, void *addr, void *len)');
export const getpeername = libc.func('int getpeername(int fd, void *addr, void *len)');

/** errno of the last failed call (koffi saves it right after each call). */
export const errno = (): number => koffi.errno();

/** uv_poll on an fd. koffi's typings say `(events)`, but the callback gets `(status, events)`. */
export interface PollHandle {
  close(): void;
  unref(): void;
  ref(): void;
}
export const poll = koffi.node.poll as unknown as (
  fd: number,
  opts: { readable?: boolean },
  cb: (status: number) => void,
) => PollHandle;

export { koffi };

export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_POPULATE = 0x8000;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_CLOEXEC = 0x80000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_LINGER = 13;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const SHUT_WR = 1;
export const IPPROTO_TCP = 6;
/** getsockopt(IPPROTO_TCP, TCP_INFO): struct tcp_info, whose first byte is the TCP state. */
export const TCP_INFO = 11;
/** tcp_states.h: TCP_CLOSE is where a reset leaves a socket; a FIN never does by itself. */
export const TCP_CLOSE = 7;
export const MSG_NOSIGNAL = 0x4000;
