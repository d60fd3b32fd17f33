#!/usr/bin/env python3
"""Compares two builds of benches/norm.rs (burn-norm's rows only) in pairs.

    python3 benches/ab.py BEFORE AFTER                 # 8 pairs, every shape
    python3 benches/ab.py BEFORE AFTER --pairs 12 -- --only "LayerNorm"
    python3 benches/ab.py BIN@burn-nn BIN@burn-norm    # two layers, one build
    python3 benches/ab.py BEFORE AFTER --phase CROSS_CORE ...  # split by phase

BEFORE and AFTER are bench binaries (target/release/deps/norm-*, copied
aside after each build), each optionally followed by `@IMPL`: the row
to take (burn-norm, burn-nn or identity; burn-norm by default). Each
process runs one implementation alone (`BENCH_IMPL`). Each pair runs
both, in alternating order; each cell is the median over the pairs of
AFTER / BEFORE, with its range. On a machine whose speed drifts, a ratio
taken within a pair is steadier than a ratio of two medians taken
minutes apart.

With `--phase CROSS_CORE` (the binary of benches/cross_core.rs) each pair
is tagged with the cores' sharing measured just before it, and the pairs
taken while the cores did not share a cache (ratio >= 1.6) are summarized
apart from the others: this machine spends stretches in that state, and a
change of schedule can help in one and hurt in the other.
"""
import json
import os
import re
import statistics
import subprocess
import sys


def timings(side, extra):
    binary, _, impl = side.partition("@")
    impl = impl or "burn-norm"
    env = dict(os.environ, BENCH_IMPL=impl)
    out = subprocess.run([binary] + extra, env=env, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(.*?)\s+" + re.escape(impl) + r"\s+fwd\s+([\d.]+) ms\s+fwd\+bwd\s+([\d.]+) ms", line)
        if m:
            rows[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)))
    return rows


def main():
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    pairs = 8
    if "--pairs" in args:
        i = args.index("--pairs")
        pairs = int(args[i + 1])
        args = args[:i] + args[i + 2 :]
    phase = None
    if "--phase" in args:
        i = args.index("--phase")
        phase = args[i + 1]
        args = args[:i] + args[i + 2 :]
    before, after = args[:2]
    runs, apart = [], []
    for i in range(pairs):
        if phase:
            out = subprocess.run([phase, "--json"], check=True, capture_output=True, text=True).stdout
            ratio = json.loads(out)["ratio"]
        order = (before, after) if i % 2 == 0 else (after, before)
        run = {b: timings(b, extra) for b in order}
        (apart if phase and ratio >= 1.6 else runs).append(run)
    if phase:
        summarize(runs, before, after, "pairs while the cores shared a cache")
        summarize(apart, before, after, "pairs while they did not (cross_core ratio >= 1.6)")
    else:
        summarize(runs, before, after, "pairs")


def summarize(runs, before, after, what):
    print(f"{len(runs)} {what}, after / before: median of the pairs' ratios (range)")
    if not runs:
        return
    for shape in runs[0][before]:
        cells = []
        for i, name in ((0, "fwd"), (1, "fwd+bwd")):
            ratios = [r[after][shape][i] / r[before][shape][i] for r in runs]
            b = statistics.median(r[before][shape][i] for r in runs)
            a = statistics.median(r[after][shape][i] for r in runs)
            cells.append(f"{name} {b:.3f} -> {a:.3f} ms {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"{shape:<38} " + "   ".join(cells))


if __name__ == "__main__":
    main()
