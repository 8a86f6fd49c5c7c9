#!/usr/bin/env bash
# Builds the release binary and runs the WhatsApp load test of `sendgate dev`: 100,000 template
# jobs through the embedded Cloud API simulator, statuses (sent, delivered, read) back through
# dev's own signed webhook. Extra arguments go to dev_load.py, e.g.:
#   loadtest/run_whatsapp.sh --jobs 20000 --webhook-batch 50 --json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sendgate
exec python3 loadtest/dev_load.py --channel whatsapp "$@"
