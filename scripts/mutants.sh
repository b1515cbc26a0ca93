#!/usr/bin/env bash
# The mutation pass (issue 18): does each check notice a broken rule?
#
# cargo-mutants mutates the files of model/ that implement the protocol's rules (the list, and
# what is left out and why, is in .cargo/mutants.toml). Each mutant is judged in stages, each on
# what the stage before missed:
#
#   checks  the exhaustive checks alone: model/tests/mutation.rs runs the cheap presets,
#           controller-crash without records, an isolated leader, KIP-966 on a pair and on
#           three replicas, two partitions with two ISR shrinks and a metadata pull, a pair
#           under KIP-279 (every applicable property, L0 RecoveryReachable among them: no
#           dead end within the bounds; every twin; and exactly the rules each configuration fires
#           unmutated: rule reachability, both ways), the KRaft quorum's presets and the matrix
#           without its eight slowest rows;
#   heavy   the matrix's eight slowest rows (.cargo/mutants-heavy.toml);
#   sim     the simulator's sweep, safety and liveness L1–L5, and the quorum's recovery sweep
#           (QL1) (.cargo/mutants-sim.toml);
#   unit    the model's unit tests, model/src and model/tests (.cargo/mutants-unit.toml).
#
# A survivor of every stage must be listed in scripts/mutants-accepted.txt with the rule it touches and
# why it is equivalent or harmless within the bounds; the script exits 1 on any that is not
# (tests/mutants_accepted.rs pins which rules have accepted survivors).
#
# Usage: scripts/mutants.sh [cargo-mutants filters for stage "checks", e.g. -F 'leader\.rs']
#   STAGES="heavy sim unit"  the stages after "checks" to run (leave one out to save hours);
#   RESUME=1                 keep $OUT/checks from an earlier run instead of running stage 1.
# Output: $OUT (default target/mutants-pass)/<stage>/mutants.out, missed-<stage>.txt, a summary.
# It takes hours on a 2-core machine (BENCHMARKS.md has the figures): run it by hand, not in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
OUT=${OUT:-target/mutants-pass}
JOBS=${JOBS:-2}
TIMEOUT_S=${TIMEOUT_S:-120}
HEAVY_TIMEOUT_S=${HEAVY_TIMEOUT_S:-300}
STAGES=${STAGES:-heavy sim unit}
RESUME=${RESUME:-0}

count() { if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi; }

# cargo-mutants exits 2 when mutants were missed and 3 on timeouts: both are results.
declare -A secs=([checks]=0 [heavy]=0 [sim]=0 [unit]=0)
if [ "$RESUME" != 1 ]; then
    rm -rf "$OUT"
    mkdir -p "$OUT/checks"
    started=$(date +%s)
    cargo mutants -p watermark-model -j "$JOBS" -t "$TIMEOUT_S" \
        -o "$OUT/checks" "$@" || [ $? -le 3 ]
    secs[checks]=$(( $(date +%s) - started ))
fi
cp "$OUT/checks/mutants.out/missed.txt" "$OUT/missed-checks.txt"

# Runs cargo-mutants with config $1 into $2 on exactly the mutants named in file $3.
on_named() {
    local config=$1 out=$2 names=$3 filters=() args=()
    mapfile -t filters < <(python3 -c '
import re, sys
for line in open(sys.argv[1]):
    if line.strip():
        print("^" + re.escape(line.strip()) + "$")
' "$names")
    for f in "${filters[@]}"; do args+=(-F "$f"); done
    cargo mutants -p watermark-model --config "$config" \
        -j "$JOBS" -t "$HEAVY_TIMEOUT_S" -o "$out" "${args[@]}" || [ $? -le 3 ]
}

previous="$OUT/missed-checks.txt"
for stage in heavy sim unit; do
    if [[ " $STAGES " != *" $stage "* ]]; then
        # A stage left out misses what it was given.
        cp "$previous" "$OUT/missed-$stage.txt"
        previous="$OUT/missed-$stage.txt"
        continue
    fi
    rm -rf "$OUT/$stage"
    mkdir -p "$OUT/$stage"
    : > "$OUT/missed-$stage.txt"
    if [ -s "$previous" ]; then
        started=$(date +%s)
        on_named ".cargo/mutants-$stage.toml" "$OUT/$stage" "$previous"
        secs[$stage]=$(( $(date +%s) - started ))
        # Only the named mutants count (cargo-mutants 27 adds struct-field deletions to any
        # filtered run).
        grep -Fxf "$previous" "$OUT/$stage/mutants.out/missed.txt" > "$OUT/missed-$stage.txt" || true
        # A named mutant this stage did not run would count as caught. Names carry line and
        # column, so an edit to model/src after stage checks (a RESUME=1 run included) moves them.
        not_run=$(cat "$OUT/$stage"/mutants.out/{caught,missed,timeout,unviable}.txt 2>/dev/null |
            grep -Fvxf - "$previous" || true)
        if [ -n "$not_run" ]; then
            echo "stage $stage did not run these mutants (did model/src change since stage checks?):"
            echo "$not_run"
            exit 2
        fi
    fi
    previous="$OUT/missed-$stage.txt"
done

# Per stage: the mutants it was given, those it missed, and those that timed out among them.
python3 -c '
import os, sys
out = sys.argv[1]
def names(path):
    return {l.strip() for l in open(path) if l.strip()} if os.path.exists(path) else set()
unviable = names(f"{out}/checks/mutants.out/unviable.txt")
given = names(f"{out}/checks/mutants.out/caught.txt") | names(f"{out}/checks/mutants.out/timeout.txt") | names(f"{out}/missed-checks.txt")
viable = len(given)
print(f"\nmutants: {viable + len(unviable)} generated, {len(unviable)} unviable, {viable} viable")
killed, scores = 0, {}
for stage in ["checks", "heavy", "sim", "unit"]:
    missed = names(f"{out}/missed-{stage}.txt") & given
    timeouts = names(f"{out}/{stage}/mutants.out/timeout.txt") & given
    caught = len(given) - len(missed)
    killed += caught
    scores[stage] = killed
    print(f"stage {stage}: given {len(given)}, caught {caught} ({len(timeouts)} of them by timeout), missed {len(missed)}")
    given = missed
if viable:
    pct = lambda n: f"{100 * n / viable:.1f}%"
    heavy, sim, unit = scores["heavy"], scores["sim"], scores["unit"]
    print(f"score, exhaustive checks alone (presets and matrix): {pct(heavy)}")
    print(f"score, with the simulator: {pct(sim)}")
    print(f"score, with the unit tests too: {pct(unit)}")
' "$OUT"
for stage in checks heavy sim unit; do echo "stage $stage took ${secs[$stage]} s"; done
echo "stages run after checks: $STAGES"

# Every survivor must be accepted, with its reason. Accepted names leave out the line and column,
# which move with every edit.
unexplained=$(python3 -c '
import re, sys
accepted = set()
for line in open(sys.argv[2]):
    if line.strip() and not line.startswith("#"):
        accepted.add(" | ".join(line.split(" | ")[1:-1]).strip())
for line in open(sys.argv[1]):
    name = re.sub(r"^([^:]+):\d+:\d+: ", r"\1: ", line.strip())
    if name and name not in accepted:
        print(line.strip())
' "$OUT/missed-unit.txt" scripts/mutants-accepted.txt)
if [ -n "$unexplained" ]; then
    echo
    echo "survivors not in scripts/mutants-accepted.txt:"
    echo "$unexplained"
    exit 1
fi
echo "every survivor is accepted in scripts/mutants-accepted.txt"
