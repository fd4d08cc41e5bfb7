// errno names for logs and the API (DESIGN §1.6: every non-zero result has a name). The table
// covers what sockets and io_uring return; os.constants.errno fills in the rest.
import { constants } from 'node:os';

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'EPERM'],
  [2, 'ENOENT'],
  [4, 'EINTR'],
  [5, 'EIO'],
  [9, 'EBADF'],
  [11, 'EAGAIN'],
  [12, 'ENOMEM'],
  [13, 'EACCES'],
  [14, 'EFAULT'],
  [16, 'EBUSY'],
  [22, 'EINVAL'],
  [23, 'ENFILE'],
  [24, 'EMFILE'],
  [32, 'EPIPE'],
  [38, 'ENOSYS'],
  [71, 'EPROTO'],
  [88, 'ENOTSOCK'],
  [90, 'EMSGSIZE'],
  [95, 'EOPNOTSUPP'],
  [97, 'EAFNOSUPPORT'],
  [98, 'EADDRINUSE'],
  [99, 'EADDRNOTAVAIL'],
  [100, 'ENETDOWN'],
  [101, 'ENETUNREACH'],
  [102, 'ENETRESET'],
  [103, 'ECONNABORTED'],
  [104, 'ECONNRESET'],
  [105, 'ENOBUFS'],
  [106, 'EISCONN'],
  [107, 'ENOTCONN'],
  [108, 'ESHUTDOWN'],
  [110, 'ETIMEDOUT'],
  [111, 'ECONNREFUSED'],
  [112, 'EHOSTDOWN'],
  [113, 'EHOSTUNREACH'],
  [114, 'EALREADY'],
  [115, 'EINPROGRESS'],
  [125, 'ECANCELED'],
]);

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EBADF = 9;
export const EACCES = 13;
export const EAGAIN = 11;
export const EBUSY = 16;
export const EINVAL = 22;
export const EMFILE = 24;
export const ENOBUFS = 105;
export const ECONNABORTED = 103;
export const ECONNRESET = 104;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;
export const ETIMEDOUT = 110;
export const ECONNREFUSED = 111;
export const EALREADY = 114;
export const EINPROGRESS = 115;
export const ECANCELED = 125;

let fallback: Map<number, string> | null = null;

/** The errno name of a positive code, e.g. 104 → ECONNRESET; 0 → OK. */
export function errnoName(code: number): string {
  if (code === 0) return 'OK';
  const known = ERRNO_NAMES.get(code);
  if (known) return known;
  if (!fallback) {
    fallback = new Map();
    for (const [name, n] of Object.entries(constants.errno))
      if (!fallback.has(n)) fallback.set(n, name);
  }
  return fallback.get(code) ?? `errno ${code}`;
}
