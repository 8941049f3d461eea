#!/usr/bin/env python3
"""Memory with many idle keep-alive client connections, for bench/run.

Opens N HTTP/1.1 connections to a proxy, sends one keep-alive request on each and reads the
whole response (so every connection has been through the proxy once and is now an idle
keep-alive connection, the state a browser leaves behind), then holds them all open and
reads the proxy's memory from /proc. Prints one JSON line:

  {"conns_wanted": 10000, "conns_open": 10000, "failed": 0,
   "rss_before_kib": ..., "rss_with_kib": ..., "hwm_kib": ..., "open_seconds": ...}

RSS is summed over the proxy's process and its direct children (nginx's master and worker).
Stdlib only. Run with a raised `ulimit -n`.
"""

import argparse
import asyncio
import json
import os
import sys
import time


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


async def one(host, port, path, held, sem, deadline):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), max(0.1, deadline - time.monotonic())
            )
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
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
    a = ap.parse_args()

    os.system(f"echo 5 > /proc/{a.pid}/clear_refs 2>/dev/null")  # reset VmHWM where allowed
    before = mem_kib(a.pid, "VmRSS")
    held = []
    sem = asyncio.Semaphore(a.parallel)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    results = await asyncio.gather(
        *(one(a.host, a.port, a.path, held, sem, deadline) for _ in range(a.conns))
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
