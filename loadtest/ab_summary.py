#!/usr/bin/env python3
"""Summary of a run_ab.sh directory: base-N.json and head-N.json from kafka_load --json.

Each head run is compared with the base run just before it (the pairs alternate, so a pair
shares the machine's speed of the moment), and the means of those ratios are printed. Standard
library only.

Both figures are also given against a yardstick measured in the same seconds: the load
generator's own CPU per job (the SMSC simulator, the job producer and the reports reader do
the same work per job whichever daemon runs: the same jobs, PDUs and report records). On this
machine (a VM with two cores) the same binary runs 5,000 jobs/s one minute and 10,000 the next,
every process paying per job in proportion, the load generator too: its CPU per job is how slow
the machine was during that run. So each run's daemon-side CPU per job (every listed process
but the load generator) is divided by it, and its jobs/s multiplied by it. Measured the same
binary against itself (an A/A run, loadtest/README.md), the raw per-pair ratios had standard
deviations of 26.5% (jobs/s) and 23.9% (CPU per job), those in yardsticks 4.5% and 4.3%: the
verdict and the exit status use these, each mean two standard errors inside its bound, from
three pairs up.
"""

import json
import statistics
import sys
from pathlib import Path

# Issue 10's bounds against the previous main, measured the same hour.
MAX_JOBS_LOSS = 0.10
MAX_CPU_GAIN = 0.10
# The load generator's process name in kafka_load's CPU table: the yardstick (module doc).
YARDSTICK = "loadtest"
# Fewer pairs give no standard error worth the name.
MIN_PAIRS = 3


def load(path):
    try:
        j = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "end_to_end" not in j:
        return None
    procs = {p["process"].split()[0]: p["cpu_us_per_job"] for p in j["cpu"]["processes"]}
    gen = procs.get(YARDSTICK)
    return {
        # Daemon-side CPU per job in yardsticks, and jobs/s times the yardstick (module doc);
        # None if the load generator was not listed.
        "cpu_norm": (sum(v for k, v in procs.items() if k != YARDSTICK) / gen) if gen else None,
        "jobs_norm": (j["end_to_end"]["jobs_per_s"] * gen / 1e6) if gen else None,
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
    normed = all(b["cpu_norm"] and h["cpu_norm"] for _, b, h in pairs)
    print(f"{'pair':>4}  {'base jobs/s':>11} {'head jobs/s':>11}  {'base µs/job':>11} {'head µs/job':>11}  "
          f"{'jobs/s':>7} {'CPU':>7}  {'base/head in yardsticks':>23} {'CPU':>7}  {'busy %':>9}")
    for i, b, h in pairs:
        norm = (f"{b['cpu_norm']:>11.2f} {h['cpu_norm']:>11.2f} {h['cpu_norm'] / b['cpu_norm'] - 1:>+7.1%}"
                if normed else f"{'-':>23} {'-':>7}")
        print(f"{i:>4}  {b['jobs_per_s']:>11,.0f} {h['jobs_per_s']:>11,.0f}  {b['cpu_us']:>11.1f} {h['cpu_us']:>11.1f}  "
              f"{h['jobs_per_s'] / b['jobs_per_s'] - 1:>+7.1%} {h['cpu_us'] / b['cpu_us'] - 1:>+7.1%}  {norm}  "
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
    if normed:
        jratios = [h["jobs_norm"] / b["jobs_norm"] - 1 for _, b, h in pairs]
        jnorm, jnorm_sd = mean_sd(jratios)
        jse = jnorm_sd / len(jratios) ** 0.5
        ratios = [h["cpu_norm"] / b["cpu_norm"] - 1 for _, b, h in pairs]
        norm, norm_sd = mean_sd(ratios)
        se = norm_sd / len(ratios) ** 0.5
        print(f"in yardsticks (the load generator's CPU per job in the same run; module doc): "
              f"jobs/s {jnorm:+.1%} (± {jnorm_sd:.1%} sd, standard error {jse:.1%}), "
              f"daemon-side CPU per job {norm:+.1%} (± {norm_sd:.1%} sd, standard error {se:.1%}; "
              f"base {statistics.mean(b['cpu_norm'] for _, b, _ in pairs):.2f}, "
              f"head {statistics.mean(h['cpu_norm'] for _, _, h in pairs):.2f} yardsticks per job)")
    if missing:
        print(f"pairs left out (a run failed): {missing}")
    passed = all(r["invariant"] == "PASS" for _, b, h in pairs for r in (b, h))
    ok = jobs >= -MAX_JOBS_LOSS and cpu <= MAX_CPU_GAIN and cmds_h <= cmds_b and passed
    print(f"raw verdict (means of the raw ratios; too noisy here to decide, module doc): jobs/s "
          f"-{MAX_JOBS_LOSS:.0%} at most, CPU per job +{MAX_CPU_GAIN:.0%} at most, commands per job not more, "
          f"every run PASS: {'met' if ok else 'not met'}")
    if not normed:
        print("no yardstick (the load generator's CPU was not measured): the raw verdict stands")
        return 0 if ok else 1
    if len(pairs) < MIN_PAIRS:
        print(f"VERDICT: none ({len(pairs)} pairs; at least {MIN_PAIRS} to decide)")
        return 1
    # Two standard errors inside each bound: a close call is not a pass.
    ok_n = jnorm - 2 * jse >= -MAX_JOBS_LOSS and norm + 2 * se <= MAX_CPU_GAIN and cmds_h <= cmds_b and passed
    print(f"VERDICT (issue 10, in yardsticks: jobs/s -{MAX_JOBS_LOSS:.0%} at most and CPU per job "
          f"+{MAX_CPU_GAIN:.0%} at most, each mean two standard errors inside; commands per job not more; "
          f"every run PASS): {'MET' if ok_n else 'NOT MET'}")
    return 0 if ok_n else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: ab_summary.py DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
