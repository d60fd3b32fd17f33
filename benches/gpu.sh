#!/usr/bin/env bash
# GPU check and benchmark, in one go, for a machine with an NVIDIA GPU, CUDA
# PyTorch and no Rust toolchain (the device machines some sessions are lent).
#
# Here, before the run (x86-64): `bash benches/gpu-prepare.sh` builds the
# bench binary in Burn's default wgpu configuration (fusion + autotune) and
# the test suite, optionally the bench without fusion (--unfused) and an
# older build to compare against (--before BIN), strips and compresses them
# into vendor-gpu/ (the device tool carries 64 MiB), and downloads the
# Vulkan loader with glvnd into .gl/ (see the device tool's README).
# There: bash benches/gpu.sh   (carry vendor-gpu and .gl; $OUT gets the log)
#
# Prints the card and PyTorch's copy bandwidth on it; runs the suite's wgpu
# tests twice (plane reductions where the card has them, then shared memory
# forced); then the tables of benches/compare.py on the issue's GPU shapes
# (--large), 10 chained layers per read-back (--chain 10): burn-norm and
# burn-nn with Burn's fusion + autotune, without fusion, burn-norm's
# shared-memory reductions, its teams at 8 values per unit, the older
# build, and PyTorch CUDA once for all.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/gpu.log
exec > >(tee "$log") 2>&1
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
bin=/tmp/burn-norm-bin
mkdir -p "$bin"
for f in vendor-gpu/*.xz; do xz -dc "$f" > "$bin/$(basename "$f" .xz)"; done
chmod +x "$bin"/*
date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY'
import torch, time
x = torch.empty(32768 * 768, device="cuda")
for _ in range(3): x.clone()
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(50): x.clone()
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 50
print(f"copy bandwidth (PyTorch clone of [32768, 768] f32, read + write): {2 * x.numel() * 4 / dt / 1e9:.0f} GB/s")
PY
if [ -x "$bin/suite" ]; then
  # The fixtures are found through the path the suite was built at.
  mkdir -p /work && [ -e /work/main ] || ln -s "$PWD" /work/main
  # One test at a time: a GPU failure can take the device down for every
  # test after it in the process, so that a parallel run blames the wrong
  # tests (the first run here, on an H100, 2026-11-27, also had a panic in
  # Burn 0.22.1's autotune timing, "Failed to map buffer", with 8 threads).
  echo "## suite, wgpu (plane reductions where the card has them)"
  timeout 150 "$bin/suite" --test-threads=1 wgpu fused:: 2>&1 | grep -E -A3 "FAILED|panicked|test result"
  echo "## suite, wgpu, BURN_NORM_SHARED_REDUCE=1"
  BURN_NORM_SHARED_REDUCE=1 timeout 150 "$bin/suite" --test-threads=1 wgpu fused:: 2>&1 |
    grep -E -A3 "FAILED|panicked|test result"
fi
compare() { timeout 120 python3 benches/compare.py --device wgpu --large --chain 10 --torch-rows /tmp/torch-rows.json "$@"; }
echo "## fusion + autotune"; compare --bin "$bin/norm" --label "wgpu (fusion + autotune)"
if [ -x "$bin/norm-unfused" ]; then
  echo "## no fusion"; compare --bin "$bin/norm-unfused" --label "wgpu (no fusion)"
fi
# burn-norm alone: shared-memory reductions forced, then plane reductions
# again, twice, alternating: the two paths in one sitting, and the spread
# between runs of the same build.
for pass in 1 2; do
  echo "## burn-norm, shared-memory reductions forced (pass $pass)"
  BURN_NORM_SHARED_REDUCE=1 BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "shared memory"
  if [ "$pass" = 1 ]; then
    echo "## burn-norm, plane reductions (pass 2)"
    BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "plane"
  fi
done
# Teams of one plane for 768-wide rows (32 units holding 6 vectors each,
# no shared memory or barrier in their sums) against the default (64
# units holding 3): see cube_kernels::per_unit.
echo "## burn-norm, BURN_NORM_PER_UNIT=8"
BURN_NORM_PER_UNIT=8 BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "8 per unit"
if [ -x "$bin/norm-before" ]; then
  echo "## burn-norm, the older build"; BENCH_IMPL=burn-norm compare --bin "$bin/norm-before" --label "before"
fi
echo "## BatchNorm's training forward, one layer per read-back (--chain 1)"
timeout 60 "$bin/norm" --device wgpu --large --only "BatchNorm2d train [64" --chain 1
