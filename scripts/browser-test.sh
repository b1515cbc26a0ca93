#!/usr/bin/env bash
# Loads stateright's Explorer for a watermark configuration in headless Chromium, checks that the
# page rendered the model's states (a broker's HWM and ISR in the DOM), and keeps a screenshot.
#
# Usage: scripts/browser-test.sh OUT_DIR STEPS [explore knob flags...]
#   OUT_DIR  where dom.html, explorer.png and explore.log go (created)
#   STEPS    the Explorer path to open, e.g. 0/1/3 (what `watermark check` prints after
#            "Explorer path: /#/steps/"), or 0 for the initial state
# Environment: WATERMARK, the binary (default target/release/watermark); WINDOW_SIZE, the
# browser window as W,H (default 1600,1400).
# Installs Debian's chromium with apt-get when it is absent (about 20 s, 112 MB).
set -euo pipefail
out=${1:?OUT_DIR}
steps=${2?STEPS}
shift 2
watermark=${WATERMARK:-target/release/watermark}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! command -v chromium >/dev/null; then
    echo "browser-test: chromium is absent; installing Debian's chromium package" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "browser-test: cannot install chromium: not root (apt-get install chromium)" >&2
        exit 3
    fi
    start=$(date +%s)
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >"$out/apt.log" 2>&1 ||
        { apt-get update >>"$out/apt.log" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >>"$out/apt.log" 2>&1; } ||
        { echo "browser-test: apt-get install chromium failed; see $out/apt.log" >&2; exit 3; }
    echo "browser-test: installed chromium in $(( $(date +%s) - start )) s" >&2
fi

# The Explorer, on a free loopback port; stopped on exit whatever happens.
"$watermark" explore --addr 127.0.0.1:0 "$@" >"$out/explore.log" 2>&1 &
explore_pid=$!
profile=$(mktemp -d)
cleanup() {
    kill "$explore_pid" 2>/dev/null || true
    wait "$explore_pid" 2>/dev/null || true
    rm -rf "$profile"
}
trap cleanup EXIT

url=
for _ in $(seq 100); do # at most 10 s
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$out/explore.log" | head -n 1 || true)
    [ -n "$url" ] && break
    kill -0 "$explore_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "browser-test: watermark explore did not start:" >&2
    cat "$out/explore.log" >&2
    exit 1
fi
page="${url}#/steps${steps:+/$steps}"
echo "browser-test: loading $page" >&2

chromium_flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
    --disable-component-update --no-first-run --user-data-dir="$profile"
    --window-size="${WINDOW_SIZE:-1600,1400}" --virtual-time-budget=10000)
timeout 120 chromium "${chromium_flags[@]}" --dump-dom "$page" >"$out/dom.html" 2>"$out/chromium.log"
timeout 120 chromium "${chromium_flags[@]}" --screenshot="$out/explorer.png" "$page" \
    >>"$out/chromium.log" 2>&1

# The page rendered the model's states: the current state's text names a broker's HWM and ISR.
for text in 'HWM' 'ISR' 'leader epoch' 'broker 1'; do
    if ! grep -q "$text" "$out/dom.html"; then
        echo "browser-test: the rendered page lacks '$text'; see $out/dom.html" >&2
        exit 1
    fi
done
[ -s "$out/explorer.png" ] || { echo "browser-test: no screenshot" >&2; exit 1; }
echo "browser-test: ok; screenshot $out/explorer.png, DOM $out/dom.html"
