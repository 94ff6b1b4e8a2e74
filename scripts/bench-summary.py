#!/usr/bin/env python3
"""Summarises jobs-bench output: median [min-max] of every figure BENCHMARKS.md reports.

Usage: scripts/bench-summary.py RUNS.jsonl
RUNS.jsonl holds the JSON lines that `jobs-bench <scenario>` printed, one per run; lines that
start with '#' (comments such as the time and load of a run) are skipped.
"""
import json
import statistics
import sys


def spread(values, digits=3):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}] (n={len(values)})"


def get(d, path):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def main(path):
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                runs.append(json.loads(line))

    def of(scenario, **match):
        return [
            r for r in runs
            if r.get("scenario") == scenario and all(r.get(k) == v for k, v in match.items())
        ]

    def show(title, rows, paths, digits=3):
        if not rows:
            return
        print(f"## {title} ({len(rows)} runs)")
        for p in paths:
            print(f"  {p}: {spread([get(r, p) for r in rows], digits)}")

    show("1 enqueue", of("enqueue"),
         ["single.jobs_per_s", "batch.jobs_per_s", "http.jobs_per_s"], 0)
    show("2a e2e-inproc", of("e2e-inproc"),
         ["jobs_per_s", "commits_per_job", "store_calls_per_job.total",
          "transport_calls_per_job.total"])
    show("2b e2e-sqs", of("e2e-sqs"),
         ["jobs_per_s", "emulator_ceiling.messages_per_s", "ratio_to_ceiling",
          "sqs_requests_per_job", "commits_per_job",
          "rss_mib.idle.api", "rss_mib.idle.scheduler", "rss_mib.idle.worker",
          "rss_mib.peak.api", "rss_mib.peak.scheduler", "rss_mib.peak.worker"])
    hops = ["enqueue_to_start", "enqueue_to_done", "enqueue_to_dispatch", "dispatch_to_start",
            "emulator_send_to_receive"]
    for mode in ["inproc", "sqs"]:
        paths = [f"{h}.{q}" for h in hops for q in ["p50_ms", "p95_ms", "p99_ms"]]
        show(f"3 latency {mode}", of("latency", mode=mode),
             paths + ["start_p99_over_emulator_p99"])
    scale = of("scale")
    if scale:
        print(f"## 4 scale ({len(scale)} runs)")
        for i, step in enumerate(scale[0]["steps"]):
            print(f"  {step['pending_jobs']:,} pending:")
            for p in ["tick.p50_ms", "tick.p99_ms", "enqueue.p50_ms", "enqueue.p99_ms"]:
                print(f"    {p}: {spread([get(r['steps'][i], p) for r in scale])}")
        for p in ["tick_p50_largest_over_smallest", "enqueue_p50_largest_over_smallest"]:
            print(f"  {p}: {spread([get(r, p) for r in scale])}")
    for r in of("deadline"):
        tenants = sorted(k for k in r["edf"] if k.startswith("tenant:"))

        def rates(order):
            per_tenant = " / ".join("%.3f" % r[order][t]["hit_rate"] for t in tenants)
            return "%.3f (%s)" % (r[order]["overall"]["hit_rate"], per_tenant)

        print("## 5 deadline, seed run: EDF %s, FIFO %s, FIFO 10 s tolerance %.3f"
              % (rates("edf"), rates("fifo"), r["fifo"]["tolerance_s:10"]["hit_rate"]))

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
