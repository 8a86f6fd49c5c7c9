#!/usr/bin/env bash
# Builds the release binary and runs the end-to-end load test of `sendgate dev` with its
# defaults (100,000 jobs). Extra arguments go to dev_load.py, e.g.:
#   loadtest/run_dev.sh --jobs 20000 --binds 4 --window 8 --max-in-flight 5000 --json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sendgate
exec python3 loadtest/dev_load.py "$@"
