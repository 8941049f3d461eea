#!/usr/bin/env python3
"""Per-feature instruction table for bench/instructions.

Reads a callgrind profile of fulcrum (from `bench/instructions --keep DIR`), runs
`callgrind_annotate --inclusive=yes --tree=calling` on it, and attributes fulcrum's
instructions per request to the hooks and layers that spend them: each row is the inclusive
cost of fulcrum's functions for one step of a request (what they call included), so a
regression shows which feature grew. The head guard's row leaves out the socket reads and
writes it passes through (bare Pingora makes the same ones). What no row covers (Pingora's
own code paths that fulcrum's hooks take, its larger per-request state, boxed hook futures)
is the last row, so the rows add up to fulcrum minus bare Pingora.

    bench/features.py PROFILE REQUESTS FULCRUM_PER_REQUEST FLOOR_PER_REQUEST

Prints a Markdown table. Stdlib only.
"""

import re
import subprocess
import sys

PROXY = "<fulcrum::proxy::Proxy as pingora_proxy::proxy_trait::ProxyHttp>::"
GUARD_WRITE = "<impl tokio::io::async_write::AsyncWrite for fulcrum::limits::head_guard::HeadGuard>::"

# (row, functions whose inclusive cost is the row's, callees subtracted from them)
ROWS = [
    (
        "request checks, routing, request id, trace context, client timeouts (`request_filter`)",
        [PROXY + "request_filter::{{closure}}"],
        [],
    ),
    (
        "backend selection and peer setup (`upstream_peer`, `connected_to_upstream`)",
        [PROXY + "upstream_peer::{{closure}}", PROXY + "connected_to_upstream::{{closure}}"],
        [],
    ),
    (
        "upstream request headers: `X-Forwarded-*`, `Via`, `X-Request-Id`, `traceparent` "
        "(`upstream_request_filter`)",
        [PROXY + "upstream_request_filter::{{closure}}"],
        [],
    ),
    (
        "response headers: `Via`, `X-Request-Id`; cache, compression and write-behind decisions "
        "(`response_filter`, `upstream_response_filter`)",
        [
            PROXY + "response_filter::{{closure}}",
            PROXY + "response_filter",
            PROXY + "upstream_response_filter::{{closure}}",
        ],
        [],
    ),
    (
        "body hooks (`request_body_filter`, `response_body_filter`, "
        "`upstream_response_body_filter`, `request_cache_filter`) and the compression module",
        [
            PROXY + "request_body_filter::{{closure}}",
            PROXY + "response_body_filter",
            PROXY + "upstream_response_body_filter",
            PROXY + "request_cache_filter",
            "<fulcrum::compress::module::BodyEncoderBuilder as pingora_core::modules::http::HttpModuleBuilder>::init",
            "<fulcrum::compress::module::BodyEncoder as pingora_core::modules::http::HttpModule>::response_header_filter",
            "<fulcrum::compress::module::BodyEncoder as pingora_core::modules::http::HttpModule>::response_body_filter",
            "core::ptr::drop_in_place<fulcrum::compress::module::BodyEncoder>",
        ],
        [],
    ),
    (
        "metrics and access log (`logging`)",
        [PROXY + "logging::{{closure}}"],
        [],
    ),
]

# The head guard's row: every function of the guard and the keep-alive loop, each counted
# once (its own instructions and what it calls outside the guard), without the calls into
# the stream under it, which bare Pingora makes too.
GUARD_ROW = (
    "head guard and keep-alive loop: head deadline and size, idle timeout, write-behind "
    "(without the socket reads and writes it passes through)"
)
GUARD = ("fulcrum::limits::head_guard::", "fulcrum::limits::connection::next_request")
STREAM = "<pingora_core::protocols::l4::stream::Stream as "


def guard_cost(funcs):
    """Instructions of the guard's functions, as described at GUARD_ROW."""
    total = 0
    for name, (inclusive, callees) in funcs.items():
        if not any(g in name for g in GUARD) or name.startswith("core::ptr::drop_in_place"):
            continue
        inner = sum(
            cost for callee, cost in callees.items()
            if any(g in callee for g in GUARD) or callee.startswith(STREAM)
        )
        total += inclusive - inner
    return total

ENTRY = re.compile(r"\s*([\d,]+)\s+\([^)]*\)\s+\*\s+(.*)$")
CALLEE = re.compile(r"\s*([\d,]+)\s+\([^)]*\)\s+>\s+(.*)$")


def function_of(text):
    """`file:function [object] (Nx)` -> function."""
    text = re.sub(r" \([\d,]+x\)$", "", text.strip())
    text = re.sub(r" \[[^\]]*\]$", "", text)
    return text.split(":", 1)[1] if ":" in text else text


def profile(path):
    """{function: (inclusive, {callee: cost})}, summed over the profile's file:function entries."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=yes", "--tree=calling", path],
        capture_output=True, text=True, check=True,
    ).stdout
    funcs = {}
    current = None
    for line in out.splitlines():
        m = ENTRY.match(line)
        if m:
            name = function_of(m.group(2))
            cost, callees = funcs.get(name, (0, {}))
            # One function appears once per source file its inlined code came from; the
            # entry for its own definition carries the whole inclusive cost, so keep the most.
            funcs[name] = (max(cost, int(m.group(1).replace(",", ""))), callees)
            current = name
            continue
        m = CALLEE.match(line)
        if m and current is not None:
            callee = function_of(m.group(2))
            callees = funcs[current][1]
            callees[callee] = max(callees.get(callee, 0), int(m.group(1).replace(",", "")))
            continue
        if not line.strip():
            current = None
    return funcs


def main():
    path, requests, fulcrum, floor = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    funcs = profile(path)
    extra = fulcrum - floor
    rows = []
    for label, names, minus in ROWS:
        cost = 0
        for name in names:
            inclusive, callees = funcs.get(name, (0, {}))
            cost += inclusive - sum(callees.get(c, 0) for c in minus)
        rows.append((label, cost / requests))
    rows.append((GUARD_ROW, guard_cost(funcs) / requests))
    print("| feature (fulcrum's functions, inclusive of what they call) | instructions / request | share of fulcrum's extra |")
    print("| --- | ---: | ---: |")
    for label, per in rows:
        print(f"| {label} | {per:,.0f} | {100 * per / extra:.0f} % |")
    rest = extra - sum(per for _, per in rows)
    print(f"| the rest: Pingora code paths fulcrum's hooks take, its larger per-request state, "
          f"clock reads | {rest:,.0f} | {100 * rest / extra:.0f} % |")
    print(f"| **fulcrum minus bare Pingora (fulcrum's settings)** | **{extra:,}** | 100 % |")


if __name__ == "__main__":
    main()
