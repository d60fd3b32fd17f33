#!/usr/bin/env python3
"""PyTorch reference timings for benches/norm.rs: same shapes, same harness.

    python3 benches/torch_norm.py            # CPU
    python3 benches/torch_norm.py --cuda     # GPU, where there is one

Median of 20 timed runs after 3 warm-ups; each timed call ends by reading
back a sum (as the Rust bench does, which also synchronizes the GPU).
Forward: LayerNorm without autograd (inference), BatchNorm in training mode.
Forward + backward: backward of sum(y * g), reading back the input gradient.
"""
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


def bench(name, layer, shape, device):
    x = torch.rand(shape, device=device)
    g = torch.rand(shape, device=device)

    def fwd():
        with torch.no_grad():
            layer(x).sum().item()

    def fwd_bwd():
        xg = x.clone().requires_grad_(True)
        (layer(xg) * g).sum().backward()
        xg.grad.sum().item()

    print(f"{name:<36} {'pytorch':<10} fwd {median(fwd) * 1e3:>9.3f} ms   fwd+bwd {median(fwd_bwd) * 1e3:>9.3f} ms")


def main():
    device = "cuda" if "--cuda" in sys.argv else "cpu"
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench("LayerNorm fwd [4096, 768]", torch.nn.LayerNorm(768).to(device), [4096, 768], device)
    bench("BatchNorm2d train [8, 128, 56, 56]", torch.nn.BatchNorm2d(128).to(device).train(), [8, 128, 56, 56], device)


if __name__ == "__main__":
    main()
