#!/usr/bin/env python3
"""A TCP peer for tests that sends N deterministic bytes (uint32 little-endian words of
i * 2654435761, as the tests' DATA) and then ends its stream with a reset (SO_LINGER 0) or a FIN.

usage: sender.py connect HOST PORT N rst|fin
       sender.py listen N rst|fin          prints "port P", accepts one connection
It prints "sent N" when done. Whatever the other side sends is read and discarded.
"""
import socket
import struct
import sys
import time

if sys.argv[1] == "listen":
    n, how = int(sys.argv[2]), sys.argv[3]
    srv = socket.create_server(("127.0.0.1", 0))
    print(f"port {srv.getsockname()[1]}", flush=True)
    s, _ = srv.accept()
    srv.close()
else:
    host, port, n, how = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    s = socket.create_connection((host, port))

words = (n + 3) // 4
data = b"".join(struct.pack("<I", (i * 4 * 2654435761) & 0xFFFFFFFF) for i in range(words))[:n]
s.sendall(data)
print(f"sent {n}", flush=True)
if how == "rst":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
else:
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
time.sleep(0.05)
