#!/usr/bin/env python3
"""The device's own time per kernel, from CubeCL's profiling log.

    cd "$(mktemp -d)" && printf '[profiling.logger]\\nlevel = "basic"\\nstdout = true\\n' > cubecl.toml
    BENCH_IMPL=burn-norm BIN --device wgpu --only "LayerNorm [4096, 128]" | python3 PATH/kernel_times.py

With that `cubecl.toml` in the working folder, CubeCL times every launch
(on the device's timestamps where the adapter has them) and prints a line
`| 12.3µs | KernelName` for each. This prints, per kernel, how many
launches it saw and the median and least time of one launch: set against a
layer's time per call in `compare.py`, it says how much of that time the
kernels take and how much is the host's (`benches/gpu.sh kernels`). The
first launch of each kernel (its compilation, autotune) counts like any
other; the median leaves it out of the figure. Random inputs' kernels
(`PrngKernel`) and CubeCL's measurements of the device for autotune
(cubecl-std's throughput runners) are left out.
"""
import re
import statistics
import sys

UNITS = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
LINE = re.compile(r"^\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(.+?)\s*$")
LEFT_OUT = ("PrngKernel", "MemoryDirectThroughput", "ComputeDirectThroughput", "LaunchOverhead", "PrimeBuffer")


def main():
    times = {}
    for line in sys.stdin:
        match = LINE.match(line)
        if not match:
            if "fwd+bwd" in line:
                print(line.rstrip())  # the bench's own row, for the layer's time
            continue
        value, unit, name = match.groups()
        if name.startswith(LEFT_OUT):
            continue
        times.setdefault(name, []).append(float(value) * UNITS[unit])
    if not times:
        print("no kernel timings (is cubecl.toml's [profiling.logger] in the working folder?)")
        return
    print("| kernel | launches | median us | least us |")
    print("|---|---|---|---|")
    for name, values in sorted(times.items(), key=lambda kv: -statistics.median(kv[1]) * len(kv[1])):
        print(f"| {name} | {len(values)} | {statistics.median(values):.1f} | {min(values):.1f} |")


if __name__ == "__main__":
    main()
