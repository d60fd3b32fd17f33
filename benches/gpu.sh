#!/usr/bin/env bash
# GPU benchmark, in one go, for a machine with an NVIDIA GPU, CUDA PyTorch
# and no Rust toolchain (the device machines some sessions are lent).
#
# Here, before the run (x86-64):
#   cargo bench --bench norm --no-run && mkdir -p vendor-bin &&
#     cp "$(ls -t target/release/deps/norm-* | grep -v '\.d$' | head -1)" vendor-bin/norm
#   # the Vulkan loader, once (see the device tool's README):
#   echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
# There: bash benches/gpu.sh   (carry vendor-bin and .gl)
#
# Prints the copy bandwidth PyTorch reaches on the card, then the table of
# benches/compare.py on the issue's GPU shapes (--large): burn-norm and
# burn-nn on wgpu (Vulkan), PyTorch on CUDA, in the same run.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY'
import torch, time
x = torch.empty(32768 * 768, device="cuda")
for _ in range(3): x.clone()
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(50): x.clone()
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 50
print(f"copy bandwidth (PyTorch clone of [32768, 768] f32, read + write): {2 * x.numel() * 4 / dt / 1e9:.0f} GB/s")
PY
python3 benches/compare.py --device wgpu --large --bin vendor-bin/norm
