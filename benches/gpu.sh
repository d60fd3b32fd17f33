#!/usr/bin/env bash
# GPU benchmark, in one go, for a machine with an NVIDIA GPU, CUDA PyTorch
# and no Rust toolchain (the device machines some sessions are lent).
#
# Here, before the run (x86-64), the benchmark in both of Burn's wgpu
# configurations (the second build compiles Burn again, about 15 minutes):
#   bench() { cargo bench --bench norm --no-run --message-format=json "$@" |
#     python3 -c 'import json,sys; print([json.loads(l)["executable"] for l in sys.stdin
#       if "\"executable\":\"" in l and "/norm-" in l][-1])'; }
#   mkdir -p vendor-bin
#   cp "$(bench)" vendor-bin/norm                                        # fusion + autotune (Burn's default)
#   cp "$(bench --no-default-features --features wgpu)" vendor-bin/norm-unfused  # plain CubeBackend
#   # the Vulkan loader, once (see the device tool's README):
#   echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
# There: bash benches/gpu.sh   (carry vendor-bin and .gl)
#
# Prints the copy bandwidth PyTorch reaches on the card, then the tables of
# benches/compare.py on the issue's GPU shapes (--large): burn-norm and
# burn-nn on wgpu (Vulkan) with Burn's fusion + autotune, then without
# fusion, PyTorch on CUDA, in the same run; burn-norm's forward bandwidth is
# a column of each table.
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
python3 benches/compare.py --device wgpu --large --bin vendor-bin/norm --label "wgpu (fusion + autotune)"
if [ -x vendor-bin/norm-unfused ]; then
  python3 benches/compare.py --device wgpu --large --bin vendor-bin/norm-unfused --label "wgpu (no fusion)"
fi
