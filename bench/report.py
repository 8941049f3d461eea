#!/usr/bin/env python3
"""Turn bench/run's raw results into bench/results/latest.md and latest.png.

    python3 bench/report.py bench/results

Reads latest.tsv (one row per measured window), latest-idle.tsv and latest-idle-h2.tsv
(memory with idle HTTP/1 and HTTP/2 connections)
and latest-meta.txt (machine and settings). Stdlib only, except matplotlib for the chart
(skipped with a note when it is missing).
"""

import csv
import os
import sys

PROXIES = ["nginx", "haproxy", "bare", "bare-tuned", "fulcrum"]
LABEL = {"nginx": "nginx", "haproxy": "HAProxy", "bare": "bare Pingora",
         "bare-tuned": "bare Pingora, fulcrum's settings", "fulcrum": "fulcrum"}
# Shorter, for the ratio rows and the chart.
SHORT = {"nginx": "nginx", "haproxy": "HAProxy", "bare": "bare Pingora",
         "bare-tuned": "bare Pingora (fulcrum's settings)", "fulcrum": "fulcrum"}
QUIET = 10  # other load, % of a core, up to which a window counts as quiet
SIZE_LABEL = {"16b": "16 B", "16k": "16 KiB", "1m": "1 MiB"}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k] = v
    return meta


def fmt(v, digits=1):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def times(v):
    return "–" if v is None else f"{v:.2f}×"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def span(vals, digits=1, suffix=""):
    """'min–max' of the values, or '–' with fewer than two."""
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return "–"
    return f"{fmt(min(vals), digits)}{suffix}–{fmt(max(vals), digits)}{suffix}"


def round_key(n):
    try:
        return (int(n), n)
    except ValueError:
        return (1 << 30, n)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    rows = read_tsv(os.path.join(out, "latest.tsv"))
    idle = read_tsv(os.path.join(out, "latest-idle.tsv"))
    idle_h2 = read_tsv(os.path.join(out, "latest-idle-h2.tsv"))
    meta = read_meta(os.path.join(out, "latest-meta.txt"))
    for r in rows:
        for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
                  "cpu_util_pct", "peak_rss_kib", "other_load_pct"):
            r[k] = num(r.get(k))
    conns = [c for c in meta.get("conns", "32").split(",") if c]
    sizes = [s for s in meta.get("sizes", "16b").split(",") if s]
    head_c, head_s = conns[0], sizes[0]

    def cell(proxy, c, s, variant=None, rnd=None):
        """The row of that cell: of round `rnd` (a window measured again at the end because
        other load disturbed it, round "1r", counts as round 1), or of any round when `rnd` is
        None. Among several, the least disturbed wins, then the earliest."""
        variant = variant or ("round_robin" if proxy == "fulcrum" else "-")
        found = [r for r in rows
                 if (r["proxy"], r["variant"], r["conns"], r["size"]) == (proxy, variant, c, s)
                 and (rnd is None or r["round"] in (rnd, rnd + "r"))]
        ok = [r for r in found if r["status"] == "ok"]
        if ok:
            return min(ok, key=lambda r: r["other_load_pct"] or 0)
        return found[0] if found else None

    def metric(proxy, c, s, key, rnd=None, variant=None):
        r = cell(proxy, c, s, variant, rnd)
        return r[key] if r and r["status"] == "ok" else None

    def first(proxy, c, s, variant=None):
        """The cell as measured in round 1 (the matrix and the algorithm sweep, all measured in
        one pass), or in any round when round 1 has no row for it."""
        return cell(proxy, c, s, variant, "1") or cell(proxy, c, s, variant)

    def metric1(proxy, c, s, key, variant=None):
        r = first(proxy, c, s, variant)
        return r[key] if r and r["status"] == "ok" else None

    present = [p for p in PROXIES if any(r["proxy"] == p for r in rows)]
    rounds = sorted({r["round"].rstrip("r") for r in rows
                     if r["proxy"] in present and (r["conns"], r["size"]) == (head_c, head_s)},
                    key=round_key)
    md = []
    w = md.append
    w(f"# fulcrum benchmark, {meta.get('date', '?')}")
    w("")
    w(f"`bench/run{' --quick' if meta.get('mode') == 'quick' else ''}`: {meta.get('mode', '?')} mode, "
      f"{meta.get('duration', '?')} s measured per cell after {meta.get('warmup', '?')} s of warm-up, "
      f"`wrk -t1 -cN --latency`, every proxy with one worker thread in front of the same "
      f"{meta.get('backends', 'nginx backends')} on loopback. Compare ratios within this file, not "
      f"absolute numbers across machines or runs (see bench/README.md).")
    w("")
    w("| machine | |")
    w("| --- | --- |")
    for k, label in [("nproc", "cores (nproc)"), ("cpu", "CPU"), ("mem", "memory"), ("kernel", "kernel"),
                     ("os", "OS"), ("nginx", "nginx"), ("haproxy", "HAProxy"), ("wrk", "wrk"),
                     ("rustc", "rustc"), ("pingora", "Pingora"), ("fulcrum", "fulcrum commit"),
                     ("build", "fulcrum / bare Pingora build"), ("bare_flags", "bare Pingora flags"),
                     ("headers", "header work"), ("pinning", "CPU pinning")]:
        v = meta.get(k, "?")
        if k == "bare_flags":
            extra = meta.get("bare_args", "").strip()
            plus = f" `{extra}`" if extra else ""
            parts = []
            if "bare" in present:
                parts.append(f"bare Pingora: Pingora's default settings{' +' + plus if plus else ''}")
            if "bare-tuned" in present:
                parts.append(f"bare Pingora, fulcrum's settings: `--no-work-stealing --tokio-timeouts --keepalive-pool 1024`{plus} "
                             "(`work_stealing: false`, `fast_timeout_to_tokio_threshold_seconds: 0`, "
                             "`upstream_keepalive_pool_size: 1024`, as fulcrum by default with one thread)")
            if not parts:
                continue
            v = "; ".join(parts)
        if k == "headers":
            v = ("parity: nginx and HAProxy add the headers fulcrum adds by default "
                 "(X-Forwarded-For/-Proto/-Host, Via, X-Request-Id); bare Pingora adds none"
                 if v == "parity" else "minimal: only fulcrum adds headers")
        w(f"| {label} | {v} |")
    w("")

    # Headline: per proxy, the median over the quiet rounds of the headline cell.
    head = {}
    for p in present:
        got = {}
        for n in rounds:
            r = cell(p, head_c, head_s, rnd=n)
            if r and r["status"] == "ok" and r["cpu_us_per_req"] is not None:
                got[n] = r
        if not got:
            continue
        quiet = [n for n in got if (got[n]["other_load_pct"] or 0) <= QUIET]
        used = quiet or list(got)
        cpu = median([got[n]["cpu_us_per_req"] for n in used])
        # The median round: the used round whose CPU µs/req is nearest the median, earliest first.
        rep = got[min(used, key=lambda n: (abs(got[n]["cpu_us_per_req"] - cpu), round_key(n)))]
        head[p] = {"cpu": cpu, "rps": median([got[n]["rps"] for n in used]),
                   "lo": min(got[n]["cpu_us_per_req"] for n in used),
                   "hi": max(got[n]["cpu_us_per_req"] for n in used),
                   "got": got, "used": used, "quiet": bool(quiet), "rep": rep}
    measured = [n for n in rounds if any(n in h["got"] for h in head.values())]
    multi_round = len(measured) > 1

    w(f"## Headline: c={head_c}, {SIZE_LABEL.get(head_s, head_s)}")
    w("")
    if multi_round:
        planned = meta.get("rounds", str(len(rounds)))
        w(f"The headline cell was measured in {len(measured)} rounds"
          + (f" ({planned} planned; the time budget left out the rest)" if planned.isdigit() and int(planned) > len(measured) else "")
          + ": round 1 in the matrix, the others at the end of the run, every proxy started "
          "fresh in each round and the order of the proxies reversed every other round, so slow "
          "drift of the machine affects all proxies alike. **req/s** and **CPU µs/req** are medians "
          f"over a proxy's quiet rounds (other load ≤ {QUIET} % of a core; over all its rounds when "
          "none was quiet), **min–max** is the range of CPU µs/req over those same rounds, and the "
          "remaining columns are those of the proxy's median round (the one whose CPU µs/req is "
          "nearest the median). 'other load' lists every round in order.")
        w("")
        w("| proxy | rounds quiet / measured | req/s (median) | CPU µs/req (median) | CPU µs/req min–max | "
          "p50 ms | p99 ms | of which user / sys | CPU % | peak RSS MiB | other load % by round |")
        w("| --- |" + " ---: |" * 10)
    else:
        w("| proxy | req/s | CPU µs/req | p50 ms | p99 ms | of which user / sys | CPU % | peak RSS MiB | other load % |")
        w("| --- |" + " ---: |" * 8)
    for p in present:
        h = head.get(p)
        if h is None:
            r = first(p, head_c, head_s)
            w(f"| {LABEL[p]} ({r['status'] if r else 'not measured'}) |"
              + " – |" * (10 if multi_round else 8))
            continue
        r = h["rep"]
        loads = []
        for n in rounds:
            x = cell(p, head_c, head_s, rnd=n)
            loads.append(fmt(x["other_load_pct"], 0) if x and x["status"] == "ok" else "–")
        tail = (f"{fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['user_us_per_req'], 1)} / "
                f"{fmt(r['sys_us_per_req'], 1)} | {fmt(r['cpu_util_pct'], 0)} | "
                f"{fmt((r['peak_rss_kib'] or 0) / 1024 or None, 1)} | {' / '.join(loads)} |")
        if multi_round:
            nq = sum(1 for n in h["got"] if (h["got"][n]["other_load_pct"] or 0) <= QUIET)
            w(f"| {LABEL[p]} | {nq} / {len(h['got'])} | {fmt(h['rps'], 0)} | {fmt(h['cpu'], 1)} | "
              f"{span([h['lo'], h['hi']]) if len(h['used']) > 1 else '–'} | " + tail)
        else:
            w(f"| {LABEL[p]} | {fmt(h['rps'], 0)} | {fmt(h['cpu'], 1)} | " + tail)
    w("")
    if any(not h["quiet"] for h in head.values()):
        names = ", ".join(LABEL[p] for p in present if p in head and not head[p]["quiet"])
        w(f"**Warning**: the headline cell of {names} never ran on a quiet machine (see 'other load'); "
          "its numbers and the ratios that use them are inflated.")
        w("")
    pairs = [("fulcrum", "nginx"), ("fulcrum", "haproxy"), ("fulcrum", "bare"), ("fulcrum", "bare-tuned"),
             ("bare", "nginx"), ("bare-tuned", "bare")]
    pairs = [(a, b) for a, b in pairs if a in head and b in head]
    if pairs:
        w(f"| ratio (same run{', of the medians' if multi_round else ''}) | CPU µs/req | req/s |")
        w("| --- | ---: | ---: |")
        for a, b in pairs:
            w(f"| {SHORT[a]} / {SHORT[b]} | {times(ratio(head[a]['cpu'], head[b]['cpu']))} "
              f"| {times(ratio(head[a]['rps'], head[b]['rps']))} |")
        w("")
    if "fulcrum" in head and ("bare" in head or "bare-tuned" in head):
        if "bare" in head and "bare-tuned" in head:
            w("fulcrum / bare Pingora compares fulcrum with Pingora at its default settings "
              "(the baseline of the project's performance issue); fulcrum / bare Pingora (fulcrum's "
              "settings) compares it with the Pingora settings fulcrum uses by default with one "
              "thread (`work_stealing: false`, timeouts on tokio's timer, an upstream pool of 1024), "
              "so it is what fulcrum's own features cost. bare Pingora (fulcrum's settings) / bare "
              "Pingora is what those settings alone change.")
            w("")
        base = "bare-tuned" if "bare-tuned" in head else "bare"
        extra = head["fulcrum"]["cpu"] - head[base]["cpu"]
        against = ("bare Pingora with fulcrum's Pingora settings" if base == "bare-tuned" else
                   "bare Pingora with Pingora's default settings; fulcrum runs with others, "
                   "so this also contains what they change")
        w(f"fulcrum's own cost above Pingora's floor ({against}): {fmt(extra, 1)} µs of CPU per "
          f"request ({fmt(100 * extra / head['fulcrum']['cpu'], 0)} % of fulcrum's total)"
          f"{', from the medians' if multi_round else ''}.")
        w("")
        bases = [b for b in ("bare", "bare-tuned") if b in head]
        by_round = []
        for n in measured:
            f = head["fulcrum"]["got"].get(n)
            vals = [head[b]["got"].get(n) for b in bases]
            if f is None or all(v is None for v in vals):
                continue
            by_round.append((n, f, vals))
        if multi_round and len(by_round) > 1:
            w("### fulcrum / bare Pingora, round by round")
            w("")
            w("fulcrum's CPU µs/req over each bare Pingora's in the same round. Their spread is an honest "
              "measure of the noise in the ratios above. Median and range use the rounds in which both "
              f"windows were quiet (other load ≤ {QUIET} %), or all rounds when there are none; a "
              "disturbed pair is marked (disturbed).")
            w("")
            w("| round | " + " | ".join(f"CPU fulcrum / {SHORT[b]}" for b in bases) + " |")
            w("| --- |" + " ---: |" * len(bases))
            cols = [[] for _ in bases]
            quiet_cols = [[] for _ in bases]
            for n, f, vals in by_round:
                cells_ = []
                for i, v in enumerate(vals):
                    x = ratio(f["cpu_us_per_req"], v["cpu_us_per_req"]) if v else None
                    disturbed = v is not None and max(f["other_load_pct"] or 0, v["other_load_pct"] or 0) > QUIET
                    if x is not None:
                        cols[i].append(x)
                        if not disturbed:
                            quiet_cols[i].append(x)
                    cells_.append(times(x) + (" (disturbed)" if disturbed else ""))
                w(f"| {n} | " + " | ".join(cells_) + " |")
            use = [q or c for q, c in zip(quiet_cols, cols)]
            w("| **median** | " + " | ".join(f"**{times(median(u))}**" for u in use) + " |")
            w("| range | " + " | ".join(span(u, 2, "×") for u in use) + " |")
            w("")

    # All cells.
    if len(conns) * len(sizes) > 1:
        w("## Every concurrency and response size")
        w("")
        w("Round 1: the matrix, every cell measured once in one pass (the headline cell's other rounds "
          "are in the headline above). A window that other load disturbed and that was measured again "
          "shows the less disturbed measurement.")
        w("")
        w("| conns | size | proxy | req/s | p50 ms | p99 ms | CPU µs/req | user / sys | CPU % | peak RSS MiB | other load % | status |")
        w("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for s in sizes:
            for c in conns:
                for p in present:
                    r = first(p, c, s)
                    if not r:
                        continue
                    w(f"| {c} | {SIZE_LABEL.get(s, s)} | {LABEL[p]} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} | "
                      f"{fmt(r['p99_ms'], 2)} | {fmt(r['cpu_us_per_req'], 1)} | "
                      f"{fmt(r['user_us_per_req'], 1)} / {fmt(r['sys_us_per_req'], 1)} | {fmt(r['cpu_util_pct'], 0)} | "
                      f"{fmt((r['peak_rss_kib'] or 0) / 1024 or None, 1)} | {fmt(r['other_load_pct'], 0)} | {r['status']} |")
        w("")
        if "fulcrum" in present:
            others = [p for p in ("nginx", "haproxy", "bare", "bare-tuned") if p in present]
            w("Ratios per cell (round 1):")
            w("")
            w("| conns | size | " + " | ".join(f"CPU µs/req fulcrum / {SHORT[o]}" for o in others)
              + " | " + " | ".join(f"req/s fulcrum / {SHORT[o]}" for o in others) + " |")
            w("| ---: | --- |" + " ---: |" * (2 * len(others)))
            for s in sizes:
                for c in conns:
                    fc = metric1("fulcrum", c, s, "cpu_us_per_req")
                    fr = metric1("fulcrum", c, s, "rps")
                    w(f"| {c} | {SIZE_LABEL.get(s, s)} | "
                      + " | ".join(times(ratio(fc, metric1(o, c, s, "cpu_us_per_req"))) for o in others) + " | "
                      + " | ".join(times(ratio(fr, metric1(o, c, s, "rps"))) for o in others) + " |")
            w("")

    # Algorithms.
    variants = []
    for r in rows:
        if r["proxy"] == "fulcrum" and r["conns"] == head_c and r["size"] == head_s and r["variant"] not in variants:
            variants.append(r["variant"])
    algo_rows = [first("fulcrum", head_c, head_s, v) for v in variants]
    algo_rows = [r for r in algo_rows if r]
    if len(algo_rows) > 1:
        base = metric1("fulcrum", head_c, head_s, "cpu_us_per_req")
        w(f"## fulcrum by algorithm, c={head_c}, {SIZE_LABEL.get(head_s, head_s)}")
        w("")
        w("One fulcrum process per algorithm, two backends, one window each, right after the matrix "
          "(round_robin is its round-1 window); `round_robin+access_log` is round_robin "
          "with `RUST_LOG=info`, so one access-log line per request goes to a file (every other row "
          "runs with `RUST_LOG=warn`: no access log). Single windows: differences of a few per cent "
          "are within the noise (compare the headline's min–max).")
        w("")
        w("| algorithm | req/s | p50 ms | p99 ms | CPU µs/req | user / sys | vs round_robin | peak RSS MiB | status |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in algo_rows:
            ok = r["status"] == "ok"
            w(f"| {r['variant']} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
              f"{fmt(r['cpu_us_per_req'], 1)} | {fmt(r['user_us_per_req'], 1)} / {fmt(r['sys_us_per_req'], 1)} | "
              f"{times(ratio(r['cpu_us_per_req'], base) if ok else None)} | "
              f"{fmt((r['peak_rss_kib'] or 0) / 1024 or None, 1)} | {r['status']} |")
        w("")

    # Idle connections.
    idle_section(w, idle, "idle keep-alive client connections",
                 "every connection has carried one request and response (16 B) and is then left idle")
    idle_section(w, idle_h2, "idle HTTP/2 client connections (h2c)",
                 "every connection has sent the HTTP/2 preface with prior knowledge and carried one "
                 "stream (a GET, 16 B back) and is then left idle")

    # The windows this report shows: every cell's round-1 window, and every headline round.
    shown = {id(x): x for x in (first(r["proxy"], r["conns"], r["size"], r["variant"]) for r in rows) if x}
    for h in head.values():
        shown.update({id(x): x for x in h["got"].values()})
    shown = [x for x in shown.values() if x["status"] == "ok"]
    noisy = [r for r in shown if (r["other_load_pct"] or 0) > QUIET]
    if noisy:
        w(f"**Warning**: {len(noisy)} of the {len(shown)} windows in this report ran while something else on "
          f"the machine used more than {QUIET} % of a core even when measured again (column 'other load'; up to "
          f"{fmt(max(r['other_load_pct'] for r in noisy), 0)} %): their numbers are inflated. The headline "
          "medians leave such rounds out where a proxy has a quiet one. Rerun on a quiet machine.")
        w("")
    w("## Columns")
    w("")
    w("- **req/s**: wrk's Requests/sec over the measured window (wrk shares its core with the backends, "
      "so this is the whole loop's throughput, not the proxy's ceiling).")
    w("- **p50 ms, p99 ms**: wrk's latency distribution (`--latency`).")
    w("- **CPU µs/req**: utime + stime of every thread of the proxy's processes (from "
      "`/proc/PID/stat`, nginx's master and worker summed) over the measured window, divided by the "
      "requests wrk completed in it. The number to compare. **user / sys** splits it: user is the "
      "proxy's own code, sys the kernel's work on its behalf (syscalls and, on loopback, much of "
      "the TCP processing of both ends of its sockets).")
    w("- **CPU %**: the same CPU time over the window's wall time (100 % = one core busy).")
    w("- **other load %**: CPU time the whole machine used in the window (`/proc/stat`: user, nice, "
      "system, steal) minus the proxy's, the backends' and wrk's, in % of one core. Near 0 on a quiet "
      "machine; a build or test run beside the benchmark shows here, and inflates everything else.")
    w("- **peak RSS**: VmHWM from `/proc/PID/status`, reset (`clear_refs`) before the warm-up of each cell.")
    if multi_round:
        w("- **rounds quiet / measured, median, min–max**: the headline cell's rounds (see there); a "
          "single window moves by a few per cent from one round to the next, so read differences "
          "smaller than the min–max ranges as noise.")
    w("")
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("\n".join(md))
    print(f"wrote {os.path.join(out, 'latest.md')}")

    chart(out, rows, idle, present, head_c, head_s, conns, sizes, head, metric1, first, multi_round)


def idle_section(w, idle, what, how):
    """One table of RSS with many idle connections (latest-idle.tsv or latest-idle-h2.tsv)."""
    if not idle:
        return
    n = idle[0]["conns_wanted"]
    w(f"## Memory with {int(n):,} {what}")
    w("")
    w(f"Each proxy freshly started; {how}. RSS summed over the proxy's processes (nginx: master "
      "and worker).")
    w("")
    w("| proxy | connections open | RSS before MiB | RSS with them MiB | KiB per connection |")
    w("| --- | ---: | ---: | ---: | ---: |")
    per = {}
    for r in idle:
        before, with_, opened = num(r["rss_before_kib"]), num(r["rss_with_kib"]), num(r["conns_open"])
        per[r["proxy"]] = (with_, ratio(with_ - before, opened) if opened else None)
        failed = "" if r["failed"] == "0" else f" ({r['failed']} failed)"
        w(f"| {LABEL.get(r['proxy'], r['proxy'])} | {int(opened):,}{failed} | "
          f"{fmt(before / 1024, 1)} | {fmt(with_ / 1024, 1)} | {fmt(per[r['proxy']][1], 2)} |")
    if "fulcrum" in per and "nginx" in per:
        w("")
        w(f"fulcrum / nginx: {times(ratio(per['fulcrum'][0], per['nginx'][0]))} the RSS with the "
          f"connections open, {times(ratio(per['fulcrum'][1], per['nginx'][1]))} per connection.")
    w("")


def chart(out, rows, idle, present, head_c, head_s, conns, sizes, head, metric, cell, multi_round):
    """`metric` and `cell` are the round-1 lookups; the headline bars are the medians in `head`."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no chart")
        return
    colors = {"nginx": "#2b8a3e", "haproxy": "#1c7ed6", "bare": "#868e96", "bare-tuned": "#495057",
              "fulcrum": "#e8590c"}
    tick = {**LABEL, "bare-tuned": "bare Pingora,\nfulcrum's settings"}
    multi = len(conns) * len(sizes) > 1
    variants = []
    for r in rows:
        if r["proxy"] == "fulcrum" and r["conns"] == head_c and r["size"] == head_s and r["variant"] not in variants:
            variants.append(r["variant"])
    algo_rows = [cell("fulcrum", head_c, head_s, v) for v in variants]
    algo_rows = [r for r in algo_rows if r and r["status"] == "ok"]
    nrows = 3 if multi else 2
    fig, axes = plt.subplots(nrows, 2, figsize=(12, 4.2 * nrows))
    title = f"c={head_c}, {SIZE_LABEL.get(head_s, head_s)}"

    def bars(ax, labels, values, cols, ylabel, ttl, digits, spans=None):
        xs = range(len(labels))
        b = ax.bar(xs, [v or 0 for v in values], color=cols)
        if spans:  # min–max whiskers around each bar
            ax.errorbar(list(xs), [v or 0 for v in values],
                        yerr=[[(v or 0) - lo for v, (lo, hi) in zip(values, spans)],
                              [hi - (v or 0) for v, (lo, hi) in zip(values, spans)]],
                        fmt="none", ecolor="#212529", elinewidth=1, capsize=4)
        ax.set_xticks(list(xs))
        few = len(labels) <= 5
        ax.set_xticklabels(labels, rotation=0 if few else 30, ha="center" if few else "right",
                           fontsize=8.5 if len(labels) > 4 else None)
        ax.set_ylabel(ylabel)
        ax.set_title(ttl)
        for i, (rect, v) in enumerate(zip(b, values)):
            if v is not None:
                top = max(rect.get_height(), spans[i][1]) if spans else rect.get_height()
                ax.annotate(f"{v:,.{digits}f}", (rect.get_x() + rect.get_width() / 2, top),
                            ha="center", va="bottom", fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    ps = [p for p in present if p in head]
    of = ", median of the rounds" if multi_round else ""
    bars(axes[0][0], [tick[p] for p in ps], [head[p]["cpu"] for p in ps], [colors[p] for p in ps],
         "CPU µs per request (lower is better)",
         f"Proxy CPU per request, {title}{of}" + ("\n(whiskers: min–max over the rounds)" if multi_round else ""), 1,
         [(head[p]["lo"], head[p]["hi"]) for p in ps] if multi_round else None)
    bars(axes[0][1], [tick[p] for p in ps], [head[p]["rps"] for p in ps], [colors[p] for p in ps],
         "requests/s", f"Throughput, {title}{of}", 0)
    if algo_rows:
        bars(axes[1][0], [r["variant"].replace("+access_log", "\n+access log") for r in algo_rows],
             [r["cpu_us_per_req"] for r in algo_rows], ["#e8590c"] * len(algo_rows),
             "CPU µs per request", f"fulcrum by algorithm, {title}", 1)
    else:
        axes[1][0].axis("off")
    if idle:
        bars(axes[1][1], [tick.get(r["proxy"], r["proxy"]) for r in idle],
             [num(r["rss_with_kib"]) / 1024 for r in idle], [colors.get(r["proxy"], "#000") for r in idle],
             "RSS MiB", f"RSS with {int(idle[0]['conns_wanted']):,} idle keep-alive connections", 1)
    else:
        axes[1][1].axis("off")
    if multi:
        groups = [(c, s) for s in sizes for c in conns]
        width = 0.8 / max(1, len(present))
        for i, p in enumerate(present):
            for j, (ax, key, yl) in enumerate([(axes[2][0], "cpu_us_per_req", "CPU µs per request (log)"),
                                               (axes[2][1], "rps", "requests/s (log)")]):
                vals = [metric(p, c, s, key) or 0 for c, s in groups]
                ax.bar([g + i * width for g in range(len(groups))], vals, width, color=colors[p], label=LABEL[p])
                ax.set_yscale("log")
                ax.set_ylabel(yl)
        for ax, ttl in [(axes[2][0], "Proxy CPU per request"), (axes[2][1], "Throughput")]:
            ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
            ax.set_xticklabels([f"c={c}\n{SIZE_LABEL.get(s, s)}" for c, s in groups])
            ax.set_title(ttl + ", every cell (round 1)")
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out, "latest.png")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
