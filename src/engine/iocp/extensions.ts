// Winsock extension functions (AcceptEx, ConnectEx, DisconnectEx) are not exported by ws2_32:
// their addresses come from WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER) with a GUID each.
import { BackendError } from '../backend.js';
import { win32ErrorName } from './errors.js';
import * as w from './win32.js';

type Fn = (...args: unknown[]) => number;

export interface Extensions {
  AcceptEx: Fn;
  ConnectEx: Fn;
  DisconnectEx: Fn;
}

/** GUIDs in their in-memory layout (Data1 LE u32, Data2 LE u16, Data3 LE u16, Data4 bytes). */
function guid(d1: number, d2: number, d3: number, d4: number[]): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(d1, 0);
  b.writeUInt16LE(d2, 4);
  b.writeUInt16LE(d3, 6);
  Buffer.from(d4).copy(b, 8);
  return b;
}

const WSAID_ACCEPTEX = guid(
  0xb5367df1,
  0xcbac,
  0x11cf,
  [0x95, 0xca, 0x00, 0x80, 0x5f, 0x48, 0xa1, 0x92],
);
const WSAID_CONNECTEX = guid(
  0x25a207b9,
  0xddf3,
  0x4660,
  [0x8e, 0xe9, 0x76, 0xe5, 0x8c, 0x74, 0x06, 0x3e],
);
const WSAID_DISCONNECTEX = guid(
  0x7fda2e11,
  0x8630,
  0x436f,
  [0xa0, 0x31, 0xf5, 0x36, 0xa6, 0xee, 0xc1, 0x57],
);

function fetch(sock: number, id: Buffer, proto: unknown, name: string): Fn {
  const out = Buffer.alloc(8);
  const returned = Buffer.alloc(4);
  const rc = w.WSAIoctl(
    sock,
    w.SIO_GET_EXTENSION_FUNCTION_POINTER,
    id,
    16,
    out,
    8,
    returned,
    null,
    null,
  );
  if (rc !== 0) {
    const code = w.WSAGetLastError();
    throw new BackendError(`WSAIoctl(${name})`, code, win32ErrorName(code));
  }
  const ptr = out.readBigUInt64LE(0);
  return w.koffi.decode(ptr, proto as never) as Fn;
}

export function loadExtensions(sock: number): Extensions {
  return {
    AcceptEx: fetch(sock, WSAID_ACCEPTEX, w.AcceptExProto, 'AcceptEx'),
    ConnectEx: fetch(sock, WSAID_CONNECTEX, w.ConnectExProto, 'ConnectEx'),
    DisconnectEx: fetch(sock, WSAID_DISCONNECTEX, w.DisconnectExProto, 'DisconnectEx'),
  };
}
