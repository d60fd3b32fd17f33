#!/usr/bin/env python3
"""Runs benches/norm.rs and benches/torch_norm.py on the same shapes and
prints one Markdown table with the ratios.

    python3 benches/compare.py                          # flex vs PyTorch CPU
    python3 benches/compare.py --device wgpu --large    # wgpu vs PyTorch CUDA
    python3 benches/compare.py --bin PATH ...           # a prebuilt bench binary

    python3 benches/compare.py --label "wgpu, fusion" ...  # the column title
    python3 benches/compare.py --chain 10 ...           # 10 chained layers per read-back
    python3 benches/compare.py --torch-rows FILE ...    # reuse (or save) PyTorch's rows

Ratios: burn-norm / PyTorch (<= 1 means as fast or faster) and
burn-nn / burn-norm (the speed-up over Burn's own layers). The forward
rows also give burn-norm's achieved bandwidth, counting one read of x and
one write of y (the least any normalization moves). The last column is the
harness alone (an identity layer): the product y * g, the sum, its
backward and the read-back, which every row's time includes; the one
after it compares the layers alone (each row less its own framework's
harness).
"""
import json
import os
import subprocess
import sys


def rows(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    args = sys.argv[1:]
    device = args[args.index("--device") + 1] if "--device" in args else "flex"
    large = ["--large"] if "--large" in args else []
    if "--chain" in args:
        large += ["--chain", args[args.index("--chain") + 1]]
    label = args[args.index("--label") + 1] if "--label" in args else device
    if "--bin" in args:
        burn_cmd = [args[args.index("--bin") + 1]]
    else:
        burn_cmd = ["cargo", "bench", "-q", "--bench", "norm", "--"]
    here = os.path.dirname(os.path.abspath(__file__))
    burn = rows(burn_cmd + ["--json", "--device", device] + large)
    torch_cmd = [sys.executable, os.path.join(here, "torch_norm.py"), "--json"] + large
    if device != "flex" and device != "ndarray":
        torch_cmd.append("--cuda")
    cache = args[args.index("--torch-rows") + 1] if "--torch-rows" in args else None
    if cache and os.path.exists(cache):
        with open(cache) as f:
            torch = [json.loads(line) for line in f if line.startswith("{")]
    else:
        torch = rows(torch_cmd)
        if cache:
            with open(cache, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in torch)
    memory = [r for r in burn if "mib" in r]
    table = {}
    for r in [r for r in burn if "mib" not in r] + torch:
        table.setdefault((r["op"], r["shape"]), {})[r["impl"]] = r
    print(f"| op | shape | pass | burn-norm {label} | burn-nn {label} | PyTorch | burn-norm / PyTorch | burn-nn / burn-norm | burn-norm GB/s (fwd: x + y) | harness alone: Burn {label} / PyTorch | layers alone: burn-norm / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
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
            # without Burn's and PyTorch's sum, product and read-back.
            alone = "-"
            if None not in (ours, pt, base, pt_base) and ours > base and pt > pt_base:
                alone = ratio(ours - base, pt - pt_base)
            print(f"| {op} | {shape} | {pass_name} | {fmt(ours)} | {fmt(nn)} | {fmt(pt)} | {ratio(ours, pt)} | {ratio(nn, ours)} | {bandwidth} | {fmt(base)} / {fmt(pt_base)} | {alone} |")
    for r in memory:
        print(f"\n{r['op']} {r['shape']}, {r['impl']}: +{r['mib']} MiB", end="")
    if memory:
        print()


if __name__ == "__main__":
    main()
