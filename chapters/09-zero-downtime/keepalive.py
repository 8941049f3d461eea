#!/usr/bin/env python3
"""keepalive.py PORT PID_FILE: one keep-alive client connection across a reload.

Sends a request, waits until PID_FILE names another process (the new fulcrum has taken over
the listening sockets), then sends a second request on the same connection. Prints, for
each, the `x-config` header (set by version 2's route only) and the `connection` header."""
import http.client
import sys
import time

port, pid_file = int(sys.argv[1]), sys.argv[2]


def pid():
    with open(pid_file) as f:
        return f.read().strip()


conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
first = pid()
for n in (1, 2):
    if n == 2:
        deadline = time.time() + 15
        while pid() == first and time.time() < deadline:
            time.sleep(0.02)
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    print(
        f"keep-alive request {n}: x-config={resp.getheader('x-config', 'none')}"
        f" connection={resp.getheader('connection')}",
        flush=True,
    )
