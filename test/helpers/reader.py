#!/usr/bin/env python3
"""A TCP client for tests that reads at a set rate and reports exactly what the kernel returned:
the bytes (count and SHA-256) and how the stream ended — "EOF" when recv() returned 0, else the
errno name (ECONNRESET …). Node's own sockets cannot say this reliably: libuv reports a reset
that arrives while data is still unread as a clean end ('end' after EPOLLHUP on a partial read).

usage: reader.py HOST PORT RATE_BYTES_PER_S      connect, then read
       reader.py listen RATE_BYTES_PER_S        print "port N", accept one connection, read
stdin lines: "stall" (stop reading), "drain" (read as fast as it comes), "rate N".
stdout lines: "progress N" every 50 ms, then one JSON object {"bytes", "sha256", "end"}.
On EOF it closes its own side too, as a real client does.
"""
import errno
import hashlib
import json
import os
import select
import socket
import sys
import time

if sys.argv[1] == "listen":
    rate = float(sys.argv[2])
    srv = socket.create_server(("127.0.0.1", 0))
    print(f"port {srv.getsockname()[1]}", flush=True)
    s, _ = srv.accept()
    srv.close()
else:
    host, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s = socket.create_connection((host, port))
h = hashlib.sha256()
got = 0
allowance = 256 * 1024.0
mode = "rate"
last = time.monotonic()
last_report = 0.0
stdin_open = True


def report(end):
    print(json.dumps({"bytes": got, "sha256": h.hexdigest(), "end": end}), flush=True)


while True:
    now = time.monotonic()
    if mode == "rate":
        allowance += rate * (now - last)
    last = now
    if now - last_report >= 0.05:
        print(f"progress {got}", flush=True)
        last_report = now
    want = [s] if (mode == "drain" or (mode == "rate" and got < allowance)) else []
    if stdin_open:
        want.append(sys.stdin)
    readable, _, _ = select.select(want, [], [], 0.02)
    if sys.stdin in readable:
        line = sys.stdin.readline()
        if not line:
            stdin_open = False
        else:
            cmd = line.split()
            if cmd and cmd[0] in ("stall", "drain"):
                mode = cmd[0]
            elif cmd and cmd[0] == "rate":
                mode, rate = "rate", float(cmd[1])
    if s in readable:
        n = 1 << 16 if mode == "drain" else max(1, min(1 << 16, int(allowance - got)))
        try:
            d = s.recv(n)
        except OSError as e:
            report(errno.errorcode.get(e.errno, str(e.errno)))
            break
        if not d:
            report("EOF")
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            break
        got += len(d)
        h.update(d)
s.close()
