#!/usr/bin/env bash
# The kill -9 loop of issue 10 (loadtest/kill_loop.rs): builds the release binary and the
# kill_loop example, starts Redis and Tansu in .tmp/kill-loop-services (stopped again on exit),
# and runs it. Arguments go to kill_loop, e.g.:
#   loadtest/run_kill_loop.sh                                # 30,000 jobs at 1,500/s, 20 kills
#   loadtest/run_kill_loop.sh --jobs 4000 --rate 250 --kills 6 --kill-every 2500ms
# Exit status is kill_loop's: 0 every requirement held, 1 one did not, 2 setup failure.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES_DIR="${SENDGATE_LOADTEST_SERVICES_DIR:-.tmp/kill-loop-services}"

cargo build --release --bin sendgate --example kill_loop

cleanup() { scripts/services stop --dir "$SERVICES_DIR" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
# Fresh Redis and broker each run: nothing of an earlier run is loaded back.
scripts/services stop --dir "$SERVICES_DIR" >/dev/null 2>&1 || true
rm -rf "$SERVICES_DIR/redis"
scripts/services start --dir "$SERVICES_DIR"
eval "$(scripts/services env --dir "$SERVICES_DIR")"

status=0
target/release/examples/kill_loop "$@" || status=$?
if [ "$status" = 1 ]; then
  # Redis's data (the jobs' histories, what is left of their claims) is evidence: kept aside
  # (the next run starts on an empty Redis), loadable with `redis-server --dir` on it.
  scripts/services stop --dir "$SERVICES_DIR" >/dev/null 2>&1 || true
  kept="$SERVICES_DIR/redis-failed-$(date -u +%Y%m%dT%H%M%SZ)"
  mv "$SERVICES_DIR/redis" "$kept" && echo "[run_kill_loop] Redis data of the failed run kept in $kept" >&2
fi
exit "$status"
