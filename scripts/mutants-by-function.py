#!/usr/bin/env python3
"""Tallies a cargo-mutants run (its mutants.out/outcomes.json) by function: viable, caught,
timed out, missed. Usage: scripts/mutants-by-function.py DIR/mutants.out [more dirs...]"""
import collections
import json
import sys

rows = collections.defaultdict(collections.Counter)
for d in sys.argv[1:]:
    for o in json.load(open(f"{d}/outcomes.json"))["outcomes"]:
        m = o["scenario"]
        if not isinstance(m, dict) or "Mutant" not in m:
            continue  # the baseline
        m = m["Mutant"]
        fn = (m.get("function") or {}).get("function_name", "(no function)")
        key = f'{m["file"]} {fn}'
        summary = {"CaughtMutant": "caught", "MissedMutant": "missed", "Timeout": "timeout",
                   "Unviable": "unviable"}.get(o["summary"], o["summary"])
        rows[key][summary] += 1

total = collections.Counter()
print(f'{"function":70} {"viable":>6} {"caught":>6} {"timeout":>7} {"missed":>6}')
for key in sorted(rows):
    c = rows[key]
    viable = c["caught"] + c["timeout"] + c["missed"]
    total.update(c)
    print(f'{key:70} {viable:6} {c["caught"]:6} {c["timeout"]:7} {c["missed"]:6}')
viable = total["caught"] + total["timeout"] + total["missed"]
if viable:
    print(f'{"all":70} {viable:6} {total["caught"]:6} {total["timeout"]:7} {total["missed"]:6}'
          f'   caught {100 * total["caught"] / viable:.1f}%,'
          f' with timeouts {100 * (total["caught"] + total["timeout"]) / viable:.1f}%'
          f' ({total["unviable"]} unviable)')
