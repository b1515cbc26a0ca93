#!/bin/sh
# The matrix rows too slow for every test run (checks/src/matrix.rs, SLOW_SCENARIOS), run
# one by one. Record their verdicts, state counts and times in BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q
for row in offsets-replicated-latest; do
    ./target/release/watermark matrix --only "$row"
done
