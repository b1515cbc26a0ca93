#!/usr/bin/env bash
# Produce throughput with and without --trace (spec §13): for each round, a fresh cluster
# (`cluster up --base-port 0`, 3 brokers), a topic of 3 partitions (RF 3, min.insync.replicas 2),
# then `watermark produce` of N 100-byte records with acks=all; prints records/s per run, then
# validates the traced run and prints validation's events/s.
# Usage: [VALIDATE=0] scripts/trace-overhead.sh [ROUNDS] [RECORDS]   (BENCHMARKS.md)
set -euo pipefail
rounds=${1:-3}
records=${2:-100000}
bin=${WATERMARK:-target/release/watermark}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
seq -f '%0100g' 1 "$records" > "$work/records.txt"

one() { # mode: plain | trace
  local dir="$work/$1-$RANDOM"
  local args=(cluster up --base-port 0 --dir "$dir")
  [ "$1" = trace ] && args+=(--trace "$dir/traces")
  "$bin" "${args[@]}" > "$dir.up" 2>&1 &
  local up=$!
  for _ in $(seq 100); do [ -f "$dir/cluster.json" ] && grep -q . "$dir.up" && break; sleep 0.1; done
  sleep 1
  local boot
  boot=$(python3 -c "import json,sys;d=json.load(open('$dir/cluster.json'));print(d['brokers'][0]['address'])")
  "$bin" topic create t --partitions 3 --replication-factor 3 --config min.insync.replicas=2 --bootstrap-server "$boot" > /dev/null
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" produce t --acks all --bootstrap-server "$boot" < "$work/records.txt" > /dev/null
  t1=$(date +%s.%N)
  kill -INT $up; wait $up || true
  python3 -c "print(f'$1 {($records/($t1-$t0)):.0f} records/s')"
  if [ "$1" = trace ]; then
    du -sh "$dir/traces" | sed 's/^/trace size /'
    if [ "${VALIDATE:-1}" = 1 ]; then "$bin" validate "$dir/traces" | head -2; fi
  fi
  rm -rf "$dir"
}

for _ in $(seq "$rounds"); do one plain; one trace; done
