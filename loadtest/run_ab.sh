#!/usr/bin/env bash
# Same-hour A/B of the Kafka load test: this tree against another revision, alternating runs of
# one harness, e.g. issue 10's speed check against the main before it:
#   loadtest/run_ab.sh aa09adb                 # 6 pairs of 200,000 jobs, then the summary
#   loadtest/run_ab.sh --pairs 10 aa09adb -- --window 512   # args after -- go to kafka_load
#   loadtest/run_ab.sh --aa                    # A/A: this tree's daemon on both sides (no base)
# The machine's speed drifts through the day by more than most changes, so the runs alternate
# (base, head, base, head, ...) and the summary compares each head run with the base run just
# before it (loadtest/ab_summary.py). Both builds are copied aside first: editing or building
# this tree while it runs changes nothing. Output: .tmp/ab/<stamp>/{base,head}-N.json.
# Exit status: 0 when head meets issue 10's bounds (at most 10% fewer jobs/s, at most 10% more
# CPU per job, no more Redis commands per job), 1 when not, 2 on a setup failure.
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=6
jobs=200000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    # The measurement checked against itself: any difference the summary finds is noise.
    --aa) aa=1; shift ;;
    --) shift; break ;;
    -*) echo "run_ab.sh: unknown option $1" >&2; exit 2 ;;
    *) [[ -z "${base_rev:-}" ]] || { echo "run_ab.sh: one base revision, got $base_rev and $1" >&2; exit 2; }
       base_rev="$1"; shift ;;
  esac
done
if [[ -n "${aa:-}" ]]; then
  [[ -z "${base_rev:-}" ]] || { echo "run_ab.sh: --aa takes no base revision" >&2; exit 2; }
else
  [[ -n "${base_rev:-}" ]] || { echo "usage: loadtest/run_ab.sh [--pairs N] [--jobs N] (BASE_REV | --aa) [-- kafka_load args]" >&2; exit 2; }
  base_sha=$(git rev-parse --verify "$base_rev^{commit}") || exit 2
fi

root=$PWD
work="$root/.tmp/ab"
out="$work/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out/bin"

# This tree: the harness and the head build.
cargo build --release --bin sendgate --example kafka_load
cp target/release/sendgate "$out/bin/head"
cp target/release/examples/kafka_load "$out/bin/kafka_load"

head_desc="$(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' + uncommitted changes')"
if [[ -n "${aa:-}" ]]; then
  cp "$out/bin/head" "$out/bin/base"
  echo "A/A: $head_desc on both sides" | tee "$out/revisions.txt"
else
  # The base: a detached worktree of its own, with its own target dir kept between runs.
  tree="$work/tree-$base_sha"
  if [[ ! -d "$tree" ]]; then
    git worktree add --detach "$tree" "$base_sha" >/dev/null
  fi
  (cd "$tree" && CARGO_TARGET_DIR="$work/target-base" cargo build --release --bin sendgate)
  cp "$work/target-base/release/sendgate" "$out/bin/base"
  echo "base $base_sha, head $head_desc" | tee "$out/revisions.txt"
fi

services="$work/services"
cleanup() { scripts/services stop --dir "$services" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

for i in $(seq "$pairs"); do
  for side in base head; do
    # A fresh Redis each run, as run_kafka.sh does: otherwise each run measures a bigger dataset.
    cleanup
    rm -rf "$services/redis"
    if ! started=$(scripts/services start --dir "$services" 2>&1); then
      echo "$started" >&2
      exit 2
    fi
    echo "[run_ab] pair $i/$pairs: $side" >&2
    (
      eval "$(scripts/services env --dir "$services")"
      "$out/bin/kafka_load" --jobs "$jobs" --json --sendgate "$out/bin/$side" "$@" >"$out/$side-$i.json" 2>"$out/$side-$i.log"
    ) || echo "[run_ab] $side run $i failed: see $out/$side-$i.log" >&2
  done
done
cleanup
python3 loadtest/ab_summary.py "$out"
