#!/usr/bin/env bash
# sendgate's SMPP path (job in -> final report out) against a bare rusmppc client that only
# submits, side by side against one `sendgate smsc-sim` with the same binds and window.
# Arguments go to loadtest/smpp_compare.rs, e.g. --messages 100000 --binds 2 --window 256.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin sendgate --example smpp_compare
exec target/release/examples/smpp_compare "$@"
