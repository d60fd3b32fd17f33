#!/usr/bin/env python3
"""PyTorch reference timings for benches/norm.rs: same shapes, same harness.

    python3 benches/torch_norm.py                   # CPU
    python3 benches/torch_norm.py --cuda --large    # GPU shapes, where there is one
    python3 benches/torch_norm.py --json            # one JSON object per line
    python3 benches/torch_norm.py --chain 10        # 10 chained layers per wait
    python3 benches/torch_norm.py --long-groups     # also groups too long to hold
    python3 benches/torch_norm.py --only TEXT       # the cases whose name and shape contain TEXT

Median of 20 timed runs after 3 warm-ups; each timed call ends by waiting
for the device (on CUDA, torch.cuda.synchronize()) with its result held, as
the Rust bench does; no reduction of the result is timed.
Forward: LayerNorm, RMSNorm, GroupNorm and InstanceNorm without autograd
(inference), BatchNorm in training mode.
Forward + backward: backward of sum(y * g), waiting for the input gradient.
With --chain K each timed call runs K layers in a chain (the output, or the
input gradient, feeds the next) before the wait, and the time is
divided by K, as benches/norm.rs does.
"""
import json
import statistics
import sys
import time

import torch


def median(f):
    for _ in range(3):
        f()
    times = []
    for _ in range(20):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wait(device, t):
    """Waits for the device's work, `t` (the result) still held."""
    if device == "cuda":
        torch.cuda.synchronize()
    return t


def bench(op, layer, shape, device, as_json, name="pytorch", chain=1):
    x = torch.rand(shape, device=device)
    g = torch.rand(shape, device=device)

    def fwd():
        with torch.no_grad():
            y = x
            for _ in range(chain):
                y = layer(y)
            wait(device, y)

    def fwd_bwd():
        inp = x
        for _ in range(chain):
            xg = inp.clone().requires_grad_(True)
            (layer(xg) * g).sum().backward()
            inp = xg.grad
        wait(device, inp)

    f, fb = median(fwd) * 1e3 / chain, median(fwd_bwd) * 1e3 / chain
    shape_text = "[" + ", ".join(str(s) for s in shape) + "]"
    if as_json:
        print(json.dumps({"op": op, "shape": shape_text, "impl": name, "fwd_ms": round(f, 4), "fwd_bwd_ms": round(fb, 4)}))
    else:
        print(f"{op + ' ' + shape_text:<44} {name:<10} fwd {f:>9.3f} ms   fwd+bwd {fb:>9.3f} ms")


def main():
    device = "cuda" if "--cuda" in sys.argv else "cpu"
    as_json = "--json" in sys.argv
    scale = 8 if "--large" in sys.argv else 1
    chain = int(sys.argv[sys.argv.index("--chain") + 1]) if "--chain" in sys.argv else 1
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if not as_json:
        print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    ln = lambda d: torch.nn.LayerNorm(d).to(device)
    bn = lambda c: torch.nn.BatchNorm2d(c).to(device).train()
    identity = torch.nn.Identity()
    for op, layer, shape in [
        ("LayerNorm", ln(768), [4096 * scale, 768]),
        ("LayerNorm", ln(128), [4096, 128]),
        ("BatchNorm2d train", bn(128), [8 * scale, 128, 56, 56]),
        ("BatchNorm2d train", bn(16), [128, 16, 28, 28]),
        ("RMSNorm", torch.nn.RMSNorm(768, eps=1e-5).to(device), [4096 * scale, 768]),
        ("GroupNorm 32 groups", torch.nn.GroupNorm(32, 128).to(device), [8 * scale, 128, 56, 56]),
        ("InstanceNorm2d", torch.nn.InstanceNorm2d(64, affine=True).to(device), [8 * scale, 64, 56, 56]),
    ] + ([
        # Groups longer than a GPU team holds, as benches/norm.rs.
        ("GroupNorm 32 groups", torch.nn.GroupNorm(32, 128).to(device), [scale, 128, 128, 128]),
        ("InstanceNorm2d", torch.nn.InstanceNorm2d(32, affine=True).to(device), [scale, 32, 256, 256]),
        ("LayerNorm", ln(128 * 128 * 128), [scale, 128 * 128 * 128]),
    ] if "--long-groups" in sys.argv else []):
        if only is not None and only not in f"{op} [{', '.join(str(s) for s in shape)}]":
            continue
        bench(op, layer, shape, device, as_json, chain=chain)
        # What the harness itself costs, as the Rust bench's identity row.
        bench(op, identity, shape, device, as_json, name="pytorch-identity", chain=chain)


if __name__ == "__main__":
    main()
