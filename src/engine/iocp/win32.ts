// The only place keyport declares Windows functions (kernel32, ws2_32). SOCKET and HANDLE are
// intptr_t (plain numbers, INVALID = -1); pointers are `void *` taking BigInt addresses of
// pinned memory, so no call marshals a JS object on the hot path.
import koffi from 'koffi';

const kernel32 = koffi.load('kernel32.dll');
const ws2 = koffi.load('ws2_32.dll');

export const CreateIoCompletionPort = kernel32.func(
  'intptr_t __stdcall CreateIoCompletionPort(intptr_t file, intptr_t port, uintptr_t key, uint32_t threads)',
);
export const GetQueuedCompletionStatusEx = kernel32.func(
  'int __stdcall GetQueuedCompletionStatusEx(intptr_t port, void *entries, uint32_t count, void *removed, uint32_t ms, int alertable)',
);
export const PostQueuedCompletionStatus = kernel32.func(
  'int __stdcall PostQueuedCompletionStatus(intptr_t port, uint32_t bytes, uintptr_t key, void *overlapped)',
);
export const CloseHandle = kernel32.func('int __stdcall CloseHandle(intptr_t h)');
export const GetLastError = kernel32.func('uint32_t __stdcall GetLastError()');
export const CancelIoEx = kernel32.func('int __stdcall CancelIoEx(intptr_t h, void *overlapped)');
// Console control events (Ctrl+C, Ctrl+Break, console close, logoff, shutdown: `docker stop`).
export const HandlerRoutineProto = koffi.proto('int __stdcall HandlerRoutine(uint32_t type)');
export const SetConsoleCtrlHandler = kernel32.func(
  'int __stdcall SetConsoleCtrlHandler(void *handler, int add)',
);
// Ending this process past the runtime's own shutdown (see IocpBackend.exitProcess).
export const GetCurrentProcess = kernel32.func('intptr_t __stdcall GetCurrentProcess()');
export const TerminateProcess = kernel32.func(
  'int __stdcall TerminateProcess(intptr_t process, uint32_t code)',
);
export const GetModuleHandleW = kernel32.func('intptr_t __stdcall GetModuleHandleW(str16 name)');
export const GetProcAddress = kernel32.func(
  'void * __stdcall GetProcAddress(intptr_t m, str name)',
);
export const CreateThread = kernel32.func(
  'intptr_t __stdcall CreateThread(void *attrs, uintptr_t stack, void *start, uintptr_t param, uint32_t flags, void *id)',
);
export const SetFileCompletionNotificationModes = kernel32.func(
  'int __stdcall SetFileCompletionNotificationModes(intptr_t h, uint8_t flags)',
);

export const WSAStartup = ws2.func('int __stdcall WSAStartup(uint16_t version, void *data)');
export const WSAGetLastError = ws2.func('int __stdcall WSAGetLastError()');
export const WSASocketW = ws2.func(
  'intptr_t __stdcall WSASocketW(int af, int type, int protocol, void *info, uint32_t group, uint32_t flags)',
);
export const bind = ws2.func('int __stdcall bind(intptr_t s, void *addr, int len)');
export const listen = ws2.func('int __stdcall listen(intptr_t s, int backlog)');
export const closesocket = ws2.func('int __stdcall closesocket(intptr_t s)');
export const shutdown = ws2.func('int __stdcall shutdown(intptr_t s, int how)');
export const setsockopt = ws2.func(
  'int __stdcall setsockopt(intptr_t s, int level, int name, void *value, int len)',
);
export const getsockopt = ws2.func(
  'int __stdcall getsockopt(intptr_t s, int level, int name, void *value, void *len)',
);
export const getsockname = ws2.func('int __stdcall getsockname(intptr_t s, void *addr, void *len)');
export const getpeername = ws2.func('int __stdcall getpeername(intptr_t s, void *addr, void *len)');
export const WSARecv = ws2.func(
  'int __stdcall WSARecv(intptr_t s, void *bufs, uint32_t count, void *bytes, void *flags, void *overlapped, void *routine)',
);
export const WSASend = ws2.func(
  'int __stdcall WSASend(intptr_t s, void *bufs, uint32_t count, void *bytes, uint32_t flags, void *overlapped, void *routine)',
);
export const WSAPoll = ws2.func('int __stdcall WSAPoll(void *fds, uint32_t count, int timeout)');
export const WSAIoctl = ws2.func(
  'int __stdcall WSAIoctl(intptr_t s, uint32_t code, void *inBuf, uint32_t inLen, void *outBuf, uint32_t outLen, void *returned, void *overlapped, void *routine)',
);

// Extension functions, fetched at run time through WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER).
export const AcceptExProto = koffi.proto(
  'int __stdcall AcceptExFn(intptr_t listen, intptr_t accept, void *buf, uint32_t recvLen, uint32_t localLen, uint32_t remoteLen, void *bytes, void *overlapped)',
);
export const ConnectExProto = koffi.proto(
  'int __stdcall ConnectExFn(intptr_t s, void *name, int nameLen, void *sendBuf, uint32_t sendLen, void *bytes, void *overlapped)',
);
export const DisconnectExProto = koffi.proto(
  'int __stdcall DisconnectExFn(intptr_t s, void *overlapped, uint32_t flags, uint32_t reserved)',
);

export { koffi };

export const INVALID_SOCKET = -1;
export const INVALID_HANDLE_VALUE = -1;
export const INFINITE = 0xffffffff;
export const WAIT_TIMEOUT = 258;

export const AF_INET = 2;
export const AF_INET6 = 23;
export const SOCK_STREAM = 1;
export const IPPROTO_TCP = 6;
export const WSA_FLAG_OVERLAPPED = 0x01;
export const WSA_FLAG_NO_HANDLE_INHERIT = 0x80;

export const SOL_SOCKET = 0xffff;
export const SO_REUSEADDR = 0x0004;
export const SO_EXCLUSIVEADDRUSE = ~SO_REUSEADDR;
export const SO_LINGER = 0x0080;
export const SO_REUSE_UNICASTPORT = 0x3007;
export const SO_UPDATE_ACCEPT_CONTEXT = 0x700b;
export const SO_UPDATE_CONNECT_CONTEXT = 0x7010;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 27;

export const SD_SEND = 1;

export const SO_PROTOCOL_INFOW = 0x2005;
/** WSAPROTOCOL_INFOW (628 B): dwServiceFlags1 @0, dwCatalogEntryId @36. */
export const PROTOCOL_INFO_SIZE = 628;
export const PI_SERVICE_FLAGS1 = 0;
export const PI_CATALOG_ENTRY_ID = 36;
/** The provider's sockets are real file handles: skip-on-success modes apply to them. */
export const XP1_IFS_HANDLES = 0x00020000;

export const SIO_GET_EXTENSION_FUNCTION_POINTER = 0xc8000006;
export const FILE_SKIP_COMPLETION_PORT_ON_SUCCESS = 0x1;
export const FILE_SKIP_SET_EVENT_ON_HANDLE = 0x2;

/** WSAPOLLFD (16 B): SOCKET fd @0, SHORT events @8, SHORT revents @10. */
export const POLLFD_EVENTS = 8;
export const POLLFD_REVENTS = 10;
export const POLLRDNORM = 0x0100;
export const POLLERR = 0x0001;
export const WSAECONNRESET = 10054;

export const STATUS_PENDING = 0x103;
export const WSA_IO_PENDING = 997;
export const WSAEMFILE = 10024;
export const ERROR_IO_PENDING = 997;
export const ERROR_NOT_FOUND = 1168;
