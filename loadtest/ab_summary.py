#!/usr/bin/env python3
"""Summary of a run_ab.sh directory: base-N.json and head-N.json from kafka_load --json.

Each head run is compared with the base run just before it (the pairs alternate, so a pair
shares the machine's speed of the moment); the verdict uses the mean of those ratios, which
varies far less than the runs themselves. Standard library only.
"""

import json
import statistics
import sys
from pathlib import Path

# Issue 10's bounds against the previous main, measured the same hour.
MAX_JOBS_LOSS = 0.10
MAX_CPU_GAIN = 0.10


def load(path):
    try:
        j = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "end_to_end" not in j:
        return None
    procs = {p["process"].split()[0]: p["cpu_us_per_job"] for p in j["cpu"]["processes"]}
    return {
        "jobs_per_s": j["end_to_end"]["jobs_per_s"],
        "cpu_us": j["cpu"]["listed_cpu_us_per_job"],
        "procs": procs,
        "cmds": float(j["redis_commands"]["calls_per_job"]),
        "busy_pct": j["cpu"]["machine_busy_pct"],
        "invariant": j["invariant"],
        "rss_mb": max(d["peak_rss_mb"] for d in j["daemons"]),
    }


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(directory):
    d = Path(directory)
    pairs, missing = [], []
    i = 1
    while (d / f"base-{i}.json").exists() or (d / f"head-{i}.json").exists():
        b, h = load(d / f"base-{i}.json"), load(d / f"head-{i}.json")
        if b and h:
            pairs.append((i, b, h))
        else:
            missing.append(i)
        i += 1
    if not pairs:
        print(f"ab_summary: no complete pair in {d}", file=sys.stderr)
        return 2
    rev = (d / "revisions.txt").read_text().strip() if (d / "revisions.txt").exists() else ""
    print(f"{d}  {rev}")
    print(f"{'pair':>4}  {'base jobs/s':>11} {'head jobs/s':>11}  {'base µs/job':>11} {'head µs/job':>11}  "
          f"{'jobs/s':>7} {'CPU':>7}  {'busy %':>9}")
    for i, b, h in pairs:
        print(f"{i:>4}  {b['jobs_per_s']:>11,.0f} {h['jobs_per_s']:>11,.0f}  {b['cpu_us']:>11.1f} {h['cpu_us']:>11.1f}  "
              f"{h['jobs_per_s'] / b['jobs_per_s'] - 1:>+7.1%} {h['cpu_us'] / b['cpu_us'] - 1:>+7.1%}  "
              f"{b['busy_pct']:>4.0f}/{h['busy_pct']:<4.0f}")
    for side in ("base", "head"):
        runs = [p[1] if side == "base" else p[2] for p in pairs]
        procs = sorted({k for r in runs for k in r["procs"]})
        per = " / ".join(f"{k} {statistics.mean(r['procs'].get(k, 0) for r in runs):.1f}" for k in procs)
        print(f"{side}: {statistics.mean(r['jobs_per_s'] for r in runs):,.0f} jobs/s, "
              f"{statistics.mean(r['cpu_us'] for r in runs):.1f} µs CPU per job ({per}), "
              f"{statistics.mean(r['cmds'] for r in runs):.2f} Redis commands per job, "
              f"peak RSS {statistics.mean(r['rss_mb'] for r in runs):.0f} MB, "
              f"invariant {'/'.join(sorted({r['invariant'] for r in runs}))}")
    jobs, jobs_sd = mean_sd([h["jobs_per_s"] / b["jobs_per_s"] - 1 for _, b, h in pairs])
    cpu, cpu_sd = mean_sd([h["cpu_us"] / b["cpu_us"] - 1 for _, b, h in pairs])
    cmds_b = statistics.mean(b["cmds"] for _, b, _ in pairs)
    cmds_h = statistics.mean(h["cmds"] for _, _, h in pairs)
    print(f"head against base, mean of {len(pairs)} pairs (± sd): jobs/s {jobs:+.1%} (± {jobs_sd:.1%}), "
          f"CPU per job {cpu:+.1%} (± {cpu_sd:.1%}), Redis commands per job {cmds_b:.2f} -> {cmds_h:.2f}")
    if missing:
        print(f"pairs left out (a run failed): {missing}")
    ok = jobs >= -MAX_JOBS_LOSS and cpu <= MAX_CPU_GAIN and cmds_h <= cmds_b and all(
        r["invariant"] == "PASS" for _, b, h in pairs for r in (b, h))
    print(f"VERDICT (issue 10: jobs/s -{MAX_JOBS_LOSS:.0%} at most, CPU per job +{MAX_CPU_GAIN:.0%} at most, "
          f"commands per job not more, every run PASS): {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: ab_summary.py DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
