#!/usr/bin/env python3
"""Turn bench/run's raw results into bench/results/latest.md and latest.png.

    python3 bench/report.py bench/results

Reads latest.tsv (one row per measured window), latest-idle.tsv (idle-connection memory)
and latest-meta.txt (machine and settings). Stdlib only, except matplotlib for the chart
(skipped with a note when it is missing).
"""

import csv
import os
import sys

PROXIES = ["nginx", "haproxy", "bare", "fulcrum"]
LABEL = {"nginx": "nginx", "haproxy": "HAProxy", "bare": "bare Pingora", "fulcrum": "fulcrum"}
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


def mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    rows = read_tsv(os.path.join(out, "latest.tsv"))
    idle = read_tsv(os.path.join(out, "latest-idle.tsv"))
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

    present = [p for p in PROXIES if any(r["proxy"] == p for r in rows)]
    rounds = sorted({r["round"].rstrip("r") for r in rows if r["proxy"] in present})
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
                     ("build", "fulcrum / bare Pingora build"), ("headers", "header work"),
                     ("pinning", "CPU pinning")]:
        v = meta.get(k, "?")
        if k == "headers":
            v = ("parity: nginx and HAProxy add the headers fulcrum adds by default "
                 "(X-Forwarded-For/-Proto/-Host, Via, X-Request-Id); bare Pingora adds none"
                 if v == "parity" else "minimal: only fulcrum adds headers")
        w(f"| {label} | {v} |")
    w("")

    # Headline.
    w(f"## Headline: c={head_c}, {SIZE_LABEL.get(head_s, head_s)}")
    w("")
    if len(rounds) > 1:
        w("Each proxy was measured twice, once early and once at the end of the run; the ratios use "
          "the mean of the rounds that ran on a quiet machine (other load ≤ 10 % of a core), or of "
          "both when neither did. The other columns are those of the least disturbed round.")
        w("")
    w("| proxy | " + " | ".join(f"req/s (round {n})" if len(rounds) > 1 else "req/s" for n in rounds)
      + " | p50 ms | p99 ms | " + " | ".join(f"CPU µs/req (round {n})" if len(rounds) > 1 else "CPU µs/req" for n in rounds)
      + " | of which user / sys | CPU % | peak RSS MiB | other load % |")
    w("| --- |" + " ---: |" * (2 * len(rounds) + 6))
    head = {}
    disturbed_head = False
    for p in present:
        rps = [metric(p, head_c, head_s, "rps", n) for n in rounds]
        cpu = [metric(p, head_c, head_s, "cpu_us_per_req", n) for n in rounds]
        # The ratios use the rounds that ran on a quiet machine, when there is one.
        quiet = [n for n in rounds if (metric(p, head_c, head_s, "other_load_pct", n) or 0) <= 10
                 and metric(p, head_c, head_s, "cpu_us_per_req", n) is not None]
        use = quiet or rounds
        disturbed_head |= not quiet
        r = cell(p, head_c, head_s)  # the least disturbed round: the single-value columns
        head[p] = {"rps": mean([metric(p, head_c, head_s, "rps", n) for n in use]),
                   "cpu": mean([metric(p, head_c, head_s, "cpu_us_per_req", n) for n in use])}
        ok = r is not None and r["status"] == "ok"
        status = "" if ok else f" ({r['status'] if r else 'not measured'})"

        def one(key, digits):
            return fmt(r[key] if ok else None, digits)
        w(f"| {LABEL[p]}{status} | " + " | ".join(fmt(v, 0) for v in rps)
          + f" | {one('p50_ms', 2)} | {one('p99_ms', 2)} | "
          + " | ".join(fmt(v, 1) for v in cpu)
          + f" | {one('user_us_per_req', 1)} / {one('sys_us_per_req', 1)} | {one('cpu_util_pct', 0)} | "
          f"{fmt((r['peak_rss_kib'] or 0) / 1024 if ok else None, 1)} | "
          + " / ".join(fmt(metric(p, head_c, head_s, "other_load_pct", n), 0) for n in rounds) + " |")
    w("")
    if disturbed_head:
        w("**Warning**: some proxy's headline cell never ran on a quiet machine (see 'other load'); "
          "its numbers and the ratios that use them are inflated.")
        w("")
    if "fulcrum" in head:
        w("| ratio (same run) | CPU µs/req | req/s |")
        w("| --- | ---: | ---: |")
        for other in ("nginx", "haproxy", "bare"):
            if other in head:
                w(f"| fulcrum / {LABEL[other]} | {times(ratio(head['fulcrum']['cpu'], head[other]['cpu']))} "
                  f"| {times(ratio(head['fulcrum']['rps'], head[other]['rps']))} |")
        if "bare" in head and "nginx" in head:
            w(f"| bare Pingora / nginx | {times(ratio(head['bare']['cpu'], head['nginx']['cpu']))} "
              f"| {times(ratio(head['bare']['rps'], head['nginx']['rps']))} |")
        if head["fulcrum"]["cpu"] and head.get("bare", {}).get("cpu"):
            extra = head["fulcrum"]["cpu"] - head["bare"]["cpu"]
            w("")
            w(f"fulcrum's own cost above Pingora's floor: {fmt(extra, 1)} µs of CPU per request "
              f"({fmt(100 * extra / head['fulcrum']['cpu'], 0)} % of fulcrum's total).")
        w("")

    # All cells.
    if len(conns) * len(sizes) > 1:
        w("## Every concurrency and response size")
        w("")
        w("Where a cell was measured more than once (the headline cell, or a window that other load "
          "disturbed), this shows the least disturbed measurement.")
        w("")
        w("| conns | size | proxy | req/s | p50 ms | p99 ms | CPU µs/req | user / sys | CPU % | peak RSS MiB | other load % | status |")
        w("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for s in sizes:
            for c in conns:
                for p in present:
                    r = cell(p, c, s)
                    if not r:
                        continue
                    w(f"| {c} | {SIZE_LABEL.get(s, s)} | {LABEL[p]} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} | "
                      f"{fmt(r['p99_ms'], 2)} | {fmt(r['cpu_us_per_req'], 1)} | "
                      f"{fmt(r['user_us_per_req'], 1)} / {fmt(r['sys_us_per_req'], 1)} | {fmt(r['cpu_util_pct'], 0)} | "
                      f"{fmt((r['peak_rss_kib'] or 0) / 1024 or None, 1)} | {fmt(r['other_load_pct'], 0)} | {r['status']} |")
        w("")
        if "fulcrum" in present:
            others = [p for p in ("nginx", "haproxy", "bare") if p in present]
            w("Ratios per cell (same run):")
            w("")
            w("| conns | size | " + " | ".join(f"CPU µs/req fulcrum / {LABEL[o]}" for o in others)
              + " | " + " | ".join(f"req/s fulcrum / {LABEL[o]}" for o in others) + " |")
            w("| ---: | --- |" + " ---: |" * (2 * len(others)))
            for s in sizes:
                for c in conns:
                    fc = metric("fulcrum", c, s, "cpu_us_per_req")
                    fr = metric("fulcrum", c, s, "rps")
                    w(f"| {c} | {SIZE_LABEL.get(s, s)} | "
                      + " | ".join(times(ratio(fc, metric(o, c, s, "cpu_us_per_req"))) for o in others) + " | "
                      + " | ".join(times(ratio(fr, metric(o, c, s, "rps"))) for o in others) + " |")
            w("")

    # Algorithms.
    variants = []
    for r in rows:
        if r["proxy"] == "fulcrum" and r["conns"] == head_c and r["size"] == head_s and r["variant"] not in variants:
            variants.append(r["variant"])
    algo_rows = [cell("fulcrum", head_c, head_s, v) for v in variants]
    algo_rows = [r for r in algo_rows if r]
    if len(algo_rows) > 1:
        base = metric("fulcrum", head_c, head_s, "cpu_us_per_req")
        w(f"## fulcrum by algorithm, c={head_c}, {SIZE_LABEL.get(head_s, head_s)}")
        w("")
        w("One fulcrum process per algorithm, two backends; `round_robin+access_log` is round_robin "
          "with `RUST_LOG=info`, so one access-log line per request goes to a file (every other row "
          "runs with `RUST_LOG=warn`: no access log).")
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
    if idle:
        n = idle[0]["conns_wanted"]
        w(f"## Memory with {int(n):,} idle keep-alive client connections")
        w("")
        w("Each proxy freshly started; every connection has carried one request and response "
          "(16 B) and is then left idle. RSS summed over the proxy's processes (nginx: master "
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

    chosen = {id(cell(r["proxy"], r["conns"], r["size"], r["variant"])) for r in rows}
    noisy = [r for r in rows if id(r) in chosen and (r["other_load_pct"] or 0) > 10]
    if noisy:
        w(f"**Warning**: {len(noisy)} of {len(chosen)} windows ran while something else on the machine used "
          f"more than 10 % of a core even when measured again (column 'other load'; up to {fmt(max(r['other_load_pct'] for r in noisy), 0)} %): "
          "their numbers are inflated. Rerun on a quiet machine.")
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
    w("")
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("\n".join(md))
    print(f"wrote {os.path.join(out, 'latest.md')}")

    chart(out, rows, idle, present, head_c, head_s, conns, sizes, head, metric, cell)


def chart(out, rows, idle, present, head_c, head_s, conns, sizes, head, metric, cell):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no chart")
        return
    colors = {"nginx": "#2b8a3e", "haproxy": "#1c7ed6", "bare": "#868e96", "fulcrum": "#e8590c"}
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

    def bars(ax, labels, values, cols, ylabel, ttl, digits):
        xs = range(len(labels))
        b = ax.bar(xs, [v or 0 for v in values], color=cols)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, rotation=0 if len(labels) <= 4 else 30, ha="center" if len(labels) <= 4 else "right")
        ax.set_ylabel(ylabel)
        ax.set_title(ttl)
        for rect, v in zip(b, values):
            if v is not None:
                ax.annotate(f"{v:,.{digits}f}", (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                            ha="center", va="bottom", fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    ps = [p for p in present if p in head]
    bars(axes[0][0], [LABEL[p] for p in ps], [head[p]["cpu"] for p in ps], [colors[p] for p in ps],
         "CPU µs per request (lower is better)", f"Proxy CPU per request, {title}", 1)
    bars(axes[0][1], [LABEL[p] for p in ps], [head[p]["rps"] for p in ps], [colors[p] for p in ps],
         "requests/s", f"Throughput, {title}", 0)
    if algo_rows:
        bars(axes[1][0], [r["variant"].replace("+access_log", "\n+access log") for r in algo_rows],
             [r["cpu_us_per_req"] for r in algo_rows], ["#e8590c"] * len(algo_rows),
             "CPU µs per request", f"fulcrum by algorithm, {title}", 1)
    else:
        axes[1][0].axis("off")
    if idle:
        bars(axes[1][1], [LABEL.get(r["proxy"], r["proxy"]) for r in idle],
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
            ax.set_title(ttl + ", every cell")
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out, "latest.png")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
