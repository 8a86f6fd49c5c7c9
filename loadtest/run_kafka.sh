#!/usr/bin/env bash
# Kafka-mode load test of `sendgate run`: builds the release binary and the kafka_load example,
# starts Redis and Tansu in .tmp/loadtest-services (stopped again on exit), and runs
# loadtest/kafka_load.rs. Arguments go to kafka_load, e.g.:
#   loadtest/run_kafka.sh                                   # 200,000 jobs, one daemon
#   loadtest/run_kafka.sh --jobs 1000000 --backlog          # drain a 1M backlog, watch RSS
#   loadtest/run_kafka.sh --jobs 200000 --binds 4 --window 512 --max-in-flight 20000 --json
# Exit status is kafka_load's: 0 pass, 1 invariant or shutdown failure, 2 setup failure.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES_DIR="${SENDGATE_LOADTEST_SERVICES_DIR:-.tmp/loadtest-services}"

cargo build --release --bin sendgate --example kafka_load

cleanup() { scripts/services stop --dir "$SERVICES_DIR" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
# A fresh Redis each run: otherwise the keys of the last runs (job histories live for an hour)
# are loaded back from the AOF and each run measures a bigger dataset than the one before.
scripts/services stop --dir "$SERVICES_DIR" >/dev/null 2>&1 || true
rm -rf "$SERVICES_DIR/redis"
scripts/services start --dir "$SERVICES_DIR"
eval "$(scripts/services env --dir "$SERVICES_DIR")"

status=0
target/release/examples/kafka_load "$@" || status=$?
exit "$status"
