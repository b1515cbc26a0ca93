#!/bin/sh
# The KRaft quorum model (spec section 4a) beyond the presets' bounds, too big for the test
# suite: a broker and a controller crash together, and a third epoch (which the HWM's
# commitment rule and the divergence check's epoch comparison need to matter; BENCHMARKS.md).
# Depth first, which is lean on memory; each run stops after TIMEOUT seconds (default 1800) and
# says whether it completed. Record the outcomes in BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
TIMEOUT="${TIMEOUT:-1800}"
cargo build --release -q
./target/release/watermark check --preset quorum --brokers 1 --strategy dfs --timeout "$TIMEOUT"
./target/release/watermark check --preset quorum --leader-epoch-max 3 --strategy dfs --timeout "$TIMEOUT"
./target/release/watermark check --preset quorum-observer --leader-epoch-max 3 --strategy dfs --timeout "$TIMEOUT"
