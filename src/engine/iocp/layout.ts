// Win64 layouts used by the IOCP backend, and the extended OVERLAPPED record that keyport
// places at the start of every op record (DESIGN §1.2): the 32-byte OVERLAPPED at offset 0,
// then keyport's own fields, all in pinned memory the kernel may write.

/** OVERLAPPED (32 B): Internal = NTSTATUS, InternalHigh = bytes transferred. */
export const OV_INTERNAL = 0;
export const OV_INTERNAL_HIGH = 8;
export const OVERLAPPED_SIZE = 32;

/** OVERLAPPED_ENTRY (32 B), as GetQueuedCompletionStatusEx fills it. */
export const ENTRY_KEY = 0;
export const ENTRY_OVERLAPPED = 8;
export const ENTRY_INTERNAL = 16;
export const ENTRY_BYTES = 24;
export const ENTRY_SIZE = 32;

/** The backend's fields after the OVERLAPPED (the engine's own follow at RECORD_SIZE). */
export const REC_FLAGS = 44; // u32: WSARecv in/out flags
export const REC_WSABUF = 48; // WSABUF { u32 len @48; char *buf @56 }
export const REC_BYTES = 64; // u32: lpNumberOfBytes out-parameter
export const REC_ACCEPT_SOCKET = 72; // intptr: AcceptEx's pre-created socket
export const REC_ADDRS = 80; // AcceptEx local+remote address output / ConnectEx sockaddr
/** Each address slot AcceptEx writes: sizeof(sockaddr_in6) + 16, as the docs require. */
export const ACCEPT_ADDR_LEN = 28 + 16;
export const RECORD_SIZE = 192;
