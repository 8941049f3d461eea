#!/usr/bin/env python3
"""Memory with many idle keep-alive client connections, for bench/run.

Opens N HTTP/1.1 connections to a proxy, sends one keep-alive request on each and reads the
whole response (so every connection has been through the proxy once and is now an idle
keep-alive connection, the state a browser leaves behind), then holds them all open and
reads the proxy's memory from /proc. Prints one JSON line:

  {"conns_wanted": 10000, "conns_open": 10000, "failed": 0,
   "rss_before_kib": ..., "rss_with_kib": ..., "hwm_kib": ..., "open_seconds": ...}

With --h2 each connection speaks HTTP/2 with prior knowledge (h2c, RFC 9113 section 3.3)
instead: the client preface, an empty SETTINGS frame and one GET on stream 1 (its header block
encoded by hand with HPACK static-table indices and literals), the whole response read and the
server's SETTINGS acknowledged; then the connection is held idle like the HTTP/1 ones.

With --tls the connections are TLS (certificates not checked), ALPN h2 with --h2, else
http/1.1.

RSS is summed over the proxy's process and its direct children (nginx's master and worker).
Stdlib only. Run with a raised `ulimit -n`.
"""

import argparse
import asyncio
import json
import os
import ssl
import struct
import sys
import time

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
END_STREAM, ACK = 0x1, 0x1


def proc_pids(pid):
    """The process and its direct children (nginx: master + workers)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def mem_kib(pid, field):
    total = 0
    for p in proc_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(index, value):
    """A header field without indexing, its name from the static table (RFC 7541 6.2.2)."""
    v = value.encode()
    assert index < 15 and len(v) < 127
    return bytes([index, len(v)]) + v


def h2_request(path, https):
    block = (
        b"\x82"  # :method GET (static index 2)
        + (b"\x87" if https else b"\x86")  # :scheme https (7) or http (6)
        + hpack_literal(4, path)  # :path
        + hpack_literal(1, "bench")  # :authority
    )
    return (
        H2_PREFACE
        + h2_frame(SETTINGS, 0, 0)
        + h2_frame(HEADERS, 0x4 | END_STREAM, 1, block)  # END_HEADERS | END_STREAM
    )


async def h2_exchange(reader, writer, path, https):
    """One GET on stream 1; true once its response ended with :status 200."""
    writer.write(h2_request(path, https))
    await writer.drain()
    status_ok = False
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(length) if length else b""
        if kind == SETTINGS and not flags & ACK:
            writer.write(h2_frame(SETTINGS, ACK, 0))
            await writer.drain()
        elif kind in (GOAWAY, RST_STREAM):
            return False
        elif stream == 1 and kind == HEADERS and not status_ok:
            # :status 200 is static-table index 8, sent indexed by nginx and the h2 crate.
            status_ok = payload[:1] == b"\x88"
        if stream == 1 and kind in (HEADERS, DATA) and flags & END_STREAM:
            return status_ok


def http1_request(path, head_bytes):
    """A GET of `path`, padded with an `X-Pad` header to about `head_bytes` bytes (0: none)."""
    head = f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
    pad = head_bytes - len(head) - len("X-Pad: \r\n\r\n")
    if pad > 0:
        head += "X-Pad: " + "a" * pad + "\r\n"
    return (head + "\r\n").encode()


def tls_context(h2):
    """A client TLS context that checks no certificate, offering `h2` or `http/1.1` by ALPN."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2" if h2 else "http/1.1"])
    return ctx


async def one(host, port, path, held, sem, deadline, h2=False, head_bytes=0, tls=None):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls),
                max(0.1, deadline - time.monotonic()),
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            return False
        if h2:
            try:
                ok = await asyncio.wait_for(h2_exchange(reader, writer, path, tls is not None), 10)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                ok = False
            if not ok:
                writer.close()
                return False
            held.append((reader, writer))
            return True
        try:
            writer.write(http1_request(path, head_bytes))
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                writer.close()
                return False
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return False
        held.append((reader, writer))
        return True


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--pid", type=int, required=True, help="the proxy's pid")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--path", default="/16b")
    ap.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    ap.add_argument("--timeout", type=float, default=60, help="give up opening after this long")
    ap.add_argument("--settle", type=float, default=2, help="seconds to hold before reading RSS")
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2 with prior knowledge (an h2c listener) instead of HTTP/1.1")
    ap.add_argument("--tls", action="store_true", help="connect with TLS (ALPN h2 with --h2)")
    ap.add_argument("--head-bytes", type=int, default=0,
                    help="pad each HTTP/1.1 request head to about this many bytes (browsers send "
                         "500-1000); default: a minimal head")
    a = ap.parse_args()

    os.system(f"echo 5 > /proc/{a.pid}/clear_refs 2>/dev/null")  # reset VmHWM where allowed
    before = mem_kib(a.pid, "VmRSS")
    held = []
    sem = asyncio.Semaphore(a.parallel)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    results = await asyncio.gather(
        *(one(a.host, a.port, a.path, held, sem, deadline, a.h2, a.head_bytes,
              tls_context(a.h2) if a.tls else None) for _ in range(a.conns))
    )
    opened = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    # Connections the proxy closed meanwhile (an idle timeout) are not idle connections.
    still = sum(1 for r, w in held if not r.at_eof() and not w.is_closing())
    with_ = mem_kib(a.pid, "VmRSS")
    hwm = mem_kib(a.pid, "VmHWM")
    for _, w in held:
        w.close()
    print(json.dumps({
        "protocol": ("h2" if a.tls else "h2c") if a.h2 else "http/1.1" + (" over tls" if a.tls else ""),
        "conns_wanted": a.conns,
        "conns_open": still,
        "failed": results.count(False),
        "rss_before_kib": before,
        "rss_with_kib": with_,
        "hwm_kib": hwm,
        "open_seconds": round(opened, 2),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
