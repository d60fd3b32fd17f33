#!/usr/bin/env python3
"""Runs benches/norm.rs and benches/torch_norm.py on the same shapes and
prints one Markdown table with the ratios.

    python3 benches/compare.py                          # flex vs PyTorch CPU
    python3 benches/compare.py --device wgpu --large    # wgpu vs PyTorch CUDA
    python3 benches/compare.py --bin PATH ...           # a prebuilt bench binary

    python3 benches/compare.py --label "wgpu, fusion" ...  # the column title
    python3 benches/compare.py --chain 10 ...           # 10 chained layers per wait
    python3 benches/compare.py --long-groups ...        # also groups too long to hold
    python3 benches/compare.py --only TEXT ...          # the cases whose name and shape contain TEXT
    python3 benches/compare.py --torch-rows FILE ...    # reuse (or save) PyTorch's rows
    python3 benches/compare.py --runs 5 ...             # medians of 5 alternating runs
    python3 benches/compare.py --phase ...              # whether the cores shared a cache,
                                                        # and the ratios by that state

With --runs N the Rust bench and PyTorch run in turn N times and every
cell is the median of its N figures: on a machine whose speed drifts
(this 2-core one has slow stretches of seconds), one run can put a slow
stretch under one framework only.

Ratios: burn-norm / PyTorch (<= 1 means as fast or faster) and
burn-nn / burn-norm (the speed-up over Burn's own layers); with several
runs, "per run" is the range of burn-norm / PyTorch over the runs. The
forward rows also give burn-norm's achieved bandwidth, counting one read
of x and one write of y (the least any normalization moves). Then the
harness alone (an identity layer): the wait for the device and, in the
training step, the product y * g, the sum and its backward, which every
row's time includes; the last column compares the layers alone (each row
less its own framework's harness). Neither framework reduces a forward's
result: until the twentieth session both summed it, and Burn's sum (one
thread below 4M values on burn-flex) was timed as if it were the layer's.
"""
import json
import os
import statistics
import subprocess
import sys


def rows(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def median_rows(runs):
    """One row per (op, shape, impl): each timing the median over `runs`
    (lists of rows); memory rows come from the first run."""
    grouped = {}
    for run in runs:
        for r in run:
            key = (r["op"], r["shape"], r["impl"], "mib" in r)
            grouped.setdefault(key, []).append(r)
    out = []
    for same in grouped.values():
        row = dict(same[0])
        for key in ("fwd_ms", "fwd_bwd_ms"):
            if key in row:
                row[key] = statistics.median(r[key] for r in same)
        out.append(row)
    return out


def main():
    args = sys.argv[1:]
    device = args[args.index("--device") + 1] if "--device" in args else "flex"
    large = ["--large"] if "--large" in args else []
    for flag in ("--chain", "--only"):
        if flag in args:
            large += [flag, args[args.index(flag) + 1]]
    if "--long-groups" in args:
        large.append("--long-groups")
    label = args[args.index("--label") + 1] if "--label" in args else device
    if "--bin" in args:
        burn_cmd = [args[args.index("--bin") + 1]]
    else:
        burn_cmd = ["cargo", "bench", "-q", "--bench", "norm", "--"]
    here = os.path.dirname(os.path.abspath(__file__))
    torch_cmd = [sys.executable, os.path.join(here, "torch_norm.py"), "--json"] + large
    if device != "flex" and device != "ndarray":
        torch_cmd.append("--cuda")
    cache = args[args.index("--torch-rows") + 1] if "--torch-rows" in args else None
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 1
    phase_cmd = ["cargo", "bench", "-q", "--bench", "cross_core", "--", "--json"] if "--phase" in args else None
    burn_runs, torch_runs, phases = [], [], []
    for _ in range(runs):
        if phase_cmd:
            phases.append([rows(phase_cmd)[0]["ratio"]])
        burn_runs.append(rows(burn_cmd + ["--json", "--device", device] + large))
        if cache and os.path.exists(cache):
            with open(cache) as f:
                torch_runs.append([json.loads(line) for line in f if line.startswith("{")])
        else:
            torch_runs.append(rows(torch_cmd))
            if cache:
                with open(cache, "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in torch_runs[-1])
        if phase_cmd:
            phases[-1].append(rows(phase_cmd)[0]["ratio"])
    burn, torch = median_rows(burn_runs), median_rows(torch_runs)
    memory = [r for r in burn if "mib" in r]
    table = {}
    for r in [r for r in burn if "mib" not in r] + torch:
        table.setdefault((r["op"], r["shape"]), {})[r["impl"]] = r
    # Run i of the bench against run i of PyTorch: how far the ratio moves.
    pairs = [
        {(r["op"], r["shape"], r["impl"]): r for r in b + t if "mib" not in r}
        for b, t in zip(burn_runs, torch_runs)
    ]

    def per_run(op, shape, key):
        """burn-norm / PyTorch in each run that has both rows, with the
        run's index."""
        ours, theirs = (op, shape, "burn-norm"), (op, shape, "pytorch")
        return [(p[ours][key] / p[theirs][key], i) for i, p in enumerate(pairs) if ours in p and theirs in p]

    def spread(op, shape, key):
        values = [v for v, _ in per_run(op, shape, key)]
        return f"{min(values):.2f}-{max(values):.2f}x" if len(values) > 1 else "-"

    # With --phase: whether run i touched a stretch where the cores did not
    # share a cache (cross_core's ratio >= 1.6 before or after it).
    unshared = [max(p) >= 1.6 for p in phases]

    def by_state(op, shape, key):
        """burn-norm / PyTorch, the median over the runs of each state: a
        training step's loss sum runs on one thread in Burn below 4M values
        and pulls the other thread's half of the product into its core,
        which costs most where the cores do not share a cache; PyTorch's sum
        is split as its layer (docs/benchmarks.md, tenth session)."""
        cells = []
        for state in (False, True):
            values = [v for v, i in per_run(op, shape, key) if unshared[i] == state]
            cells.append(f"{statistics.median(values):.2f}x ({len(values)})" if values else "-")
        return " / ".join(cells)

    if runs > 1:
        print(f"Medians of {runs} alternating runs (bench, then PyTorch).\n")
    print(f"| op | shape | pass | burn-norm {label} | burn-nn {label} | PyTorch | burn-norm / PyTorch | per run | burn-nn / burn-norm | burn-norm GB/s (fwd: x + y) | harness alone: Burn {label} / PyTorch | layers alone: burn-norm / PyTorch |" + (" burn-norm / PyTorch: shared cache / not (runs) |" if phases else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if phases else ""))
    for (op, shape), impls in table.items():
        for key, pass_name in [("fwd_ms", "fwd"), ("fwd_bwd_ms", "fwd+bwd")]:
            ours, nn, pt, base, pt_base = (
                impls.get(k, {}).get(key) for k in ("burn-norm", "burn-nn", "pytorch", "identity", "pytorch-identity")
            )
            fmt = lambda v: f"{v:.3f} ms" if v is not None else "-"
            ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
            numel = 1
            for extent in json.loads(shape):
                numel *= extent
            bandwidth = f"{2 * numel * 4 / (ours * 1e-3) / 1e9:.0f}" if ours and key == "fwd_ms" else "-"
            # Each row less its own framework's harness: the layers compared
            # without the wait and the training step's product and sum.
            alone = "-"
            if None not in (ours, pt, base, pt_base) and ours > base and pt > pt_base:
                alone = ratio(ours - base, pt - pt_base)
            print(f"| {op} | {shape} | {pass_name} | {fmt(ours)} | {fmt(nn)} | {fmt(pt)} | {ratio(ours, pt)} | {spread(op, shape, key)} | {ratio(nn, ours)} | {bandwidth} | {fmt(base)} / {fmt(pt_base)} | {alone} |" + (f" {by_state(op, shape, key)} |" if phases else ""))
    for r in memory:
        print(f"\n{r['op']} {r['shape']}, {r['impl']}: +{r['mib']} MiB", end="")
    if memory:
        print()
    if phases:
        split = sum(unshared)
        each = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in phases)
        print(f"\nCores not sharing a cache (cross_core ratio >= 1.6 before or after): {split} of {len(phases)} runs ({each})")


if __name__ == "__main__":
    main()
