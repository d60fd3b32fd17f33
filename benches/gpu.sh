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
# Sections, all by default, or those named, in the order named:
# `bash benches/gpu.sh suite steady tables`.
# - (always) the card, PyTorch's copy bandwidth on it and a plain CubeCL
#   copy's through wgpu (benches/copy.rs): the ceiling on this runtime;
#   both also at the small tables' sizes, per call: the least one launch
#   costs on each;
# - probe: where LayerNorm's forward spends its time (`norm --probe`:
#   chains of 10 and 100 layers, the host's enqueue time, without gamma and
#   beta, then the training step per layer), also with CubeCL submitting
#   every 4 tasks (CUBECL_WGPU_MAX_TASKS=4, its default is 32), with
#   burn-norm leaving its launches to CubeCL's batching (BURN_NORM_FLUSH=0;
#   by default operations on 16 million values or more submit at once),
#   with those submissions paced, at most one per 100 or 300 us
#   (BURN_NORM_FLUSH_INTERVAL_US),
#   with teams of 8 values per unit, and the training step with the
#   backward's older second pass (BURN_NORM_ONE_PASS=0); BatchNorm's
#   training-mode forward in chains of 10 and 100 with and without its
#   running statistics (`norm --probe-batch-norm`); the host's cost per
#   layer with every launch dropped (`norm --probe-host`, CubeCL's dry
#   run: the least a layer can take through Burn's runtime, on the small
#   shapes; also the small BatchNorm with one team per channel,
#   BURN_NORM_GROUP_BLOCKS=0, one launch instead of three); with an
#   older build, both builds alternated at 512 and 32768 rows;
# - kernels: the device's own time per launch of each kernel (CubeCL's
#   profiling, benches/kernel_times.py), ours and burn-nn's, on each GPU
#   shape: how much of a row's time the kernels take, and how much the host;
#   then the small BatchNorm's with one team per channel (one launch on 16
#   cubes, against three launches in blocks);
# - suite: the suite's wgpu tests, one at a time (plane reductions where
#   the card has them); suite-shared: the same with shared memory forced
#   and LayerNorm's backward sweeping several rows per team;
# - tables: benches/compare.py on the issue's GPU shapes (--large), 10
#   chained layers per wait (--chain 10): burn-norm and burn-nn with
#   Burn's fusion + autotune, without fusion (--unfused), burn-norm
#   submitting every operation's launches at once (BURN_NORM_FLUSH=1), the
#   older build (--before), PyTorch CUDA
#   once for all; BatchNorm's training forward with one layer per wait;
# - medians (on request): the steady table's first compare as medians of 3
#   alternating runs, PyTorch rerun each time (three tables: about 2
#   minutes, going by the 2026-11-28 run's 40 s a table);
# - ab: the probe of burn-norm alone in fresh processes, alternating four
#   settings (as built, CUBECL_WGPU_MAX_TASKS=4, BURN_NORM_FLUSH=0,
#   BURN_NORM_PER_UNIT=8), three rounds; then the tables with
#   CUBECL_WGPU_MAX_TASKS=4 at 10 and 100 layers per wait;
# - steady: the same tables with 100 layers per wait (--chain 100),
#   where the GPU's time dominates the host's and the wait's, then
#   burn-norm's backward with its second pass (BURN_NORM_ONE_PASS=0),
#   alone and with its row sums over vectors (BURN_NORM_ROW_SUM_VECTORS=1),
#   GroupNorm's groups of several channels taking their parameter sums in
#   the same pass (BURN_NORM_SUMMED_CHANNELS=16), and the older build; then
#   groups too long to hold (--long-groups: GroupNorm, InstanceNorm, and
#   LayerNorm over rows of 2,097,152 values) as built (256 groups streamed,
#   8 rows in blocks), in smaller blocks (BURN_NORM_BLOCK_CUBES=1024) and
#   all streamed (BURN_NORM_GROUP_BLOCKS=0), with PyTorch.
# (Both reduction paths were timed on an H100 on 2026-11-27, level within
# the spread: docs/benchmarks.md.)
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/gpu.log
exec > >(tee "$log") 2>&1
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
sections=${*:-probe kernels suite suite-shared tables steady}  # medians, ab: on request
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
# The small tables' sizes: LayerNorm [4096, 128] and BatchNorm
# [128, 16, 28, 28] hold as many values as [683, 768] and [2091, 768].
for rows in (683, 2091):
    x = torch.empty(rows * 768, device="cuda")
    for _ in range(3): x.clone()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(100): x.clone()
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 100
    print(f"PyTorch clone of [{rows}, 768] f32: {dt * 1e6:.1f} us per call")
PY
# The same copy as a plain CubeCL kernel through wgpu: the ceiling of any
# kernel of ours on this runtime, and at the small tables' sizes the least
# one launch costs through it (no fusion, nothing allocated), against
# PyTorch's clone above and its layers' rows; then where our forward's
# time goes.
[ -x "$bin/copy" ] && timeout 60 "$bin/copy" | grep -v "^device"
for rows in 683 2091; do
  [ -x "$bin/copy" ] && timeout 60 "$bin/copy" --rows "$rows" | grep -v "^device"
done
section_probe() {
  echo "## where LayerNorm's forward spends its time (fusion + autotune)"
  timeout 90 "$bin/norm" --device wgpu --probe
  echo "## the same, CUBECL_WGPU_MAX_TASKS=4"
  CUBECL_WGPU_MAX_TASKS=4 timeout 90 "$bin/norm" --device wgpu --probe | grep -v "^device"
  echo "## burn-norm, BURN_NORM_FLUSH=0, then teams of 8 values per unit"
  BURN_NORM_FLUSH=0 BENCH_IMPL=burn-norm timeout 90 "$bin/norm" --device wgpu --probe | grep burn-norm
  BURN_NORM_PER_UNIT=8 BENCH_IMPL=burn-norm timeout 90 "$bin/norm" --device wgpu --probe | grep burn-norm
  # Submitting at once costs the host time (about 50 us a layer on the
  # H200); at most one submission per interval spreads that cost.
  for us in 100 300; do
    echo "## burn-norm, submissions paced (BURN_NORM_FLUSH_INTERVAL_US=$us)"
    BURN_NORM_FLUSH_INTERVAL_US=$us BENCH_IMPL=burn-norm timeout 90 "$bin/norm" --device wgpu --probe |
      grep burn-norm
  done
  echo "## burn-norm's training step, the older two-pass backward (BURN_NORM_ONE_PASS=0)"
  BURN_NORM_ONE_PASS=0 BENCH_IMPL=burn-norm timeout 90 "$bin/norm" --device wgpu --probe | grep step
  echo "## BatchNorm's training-mode forward, chains of 10 and 100, with and without running statistics"
  timeout 60 "$bin/norm" --device wgpu --probe-batch-norm
  # The floor the host sets: every launch dropped (CubeCL's dry run), on
  # the small shapes whose PyTorch forwards take 13-57 us.
  echo "## the host's cost alone, launches dropped (norm --probe-host)"
  timeout 90 "$bin/norm" --device wgpu --probe-host
  # BatchNorm [128, 16, 28, 28]'s 16 channels go in blocks: three launches
  # a forward. One team per channel is one launch on 16 cubes.
  echo "## the same, burn-norm's BatchNorm with one team per channel (BURN_NORM_GROUP_BLOCKS=0)"
  BURN_NORM_GROUP_BLOCKS=0 BENCH_IMPL=burn-norm timeout 90 "$bin/norm" --device wgpu --probe-host |
    grep -A1 "^BatchNorm"
  if [ -x "$bin/norm-before" ]; then
    # The host's cost per operation: 512 rows keep the GPU's share small.
    for round in 1 2; do
      for build in norm-before norm; do
        echo "## $build, burn-norm alone, round $round (512 rows, then 32768)"
        BENCH_IMPL=burn-norm timeout 90 "$bin/$build" --device wgpu --probe --rows 512 | grep "burn-norm  "
        BENCH_IMPL=burn-norm timeout 90 "$bin/$build" --device wgpu --probe | grep "burn-norm  "
      done
    done
  fi
}
section_kernels() {
  # With a cubecl.toml in the working folder that asks for it, CubeCL times
  # every launch on the device: the kernels' own time per call, against
  # the row's time per call (one layer per wait, printed above each table).
  local dir
  dir=$(mktemp -d)
  printf '[profiling.logger]\nlevel = "basic"\nstdout = true\n' > "$dir/cubecl.toml"
  for only in "LayerNorm [32768" "LayerNorm [4096" "BatchNorm2d train [64" "BatchNorm2d train [128" \
    RMSNorm GroupNorm InstanceNorm2d; do
    for impl in burn-norm burn-nn; do
      echo "## $impl's kernels, $only (the forward's, then the training step's)"
      (cd "$dir" && BENCH_IMPL=$impl timeout 40 "$bin/norm" --device wgpu --large --only "$only") |
        python3 benches/kernel_times.py
    done
  done
  # Blocks against one team per channel where a GPU's host sets the pace:
  # the small BatchNorm's three launches, or one launch on 16 cubes.
  echo "## burn-norm's kernels, BatchNorm2d train [128, one team per channel (BURN_NORM_GROUP_BLOCKS=0)"
  (cd "$dir" && BURN_NORM_GROUP_BLOCKS=0 BENCH_IMPL=burn-norm timeout 40 "$bin/norm" --device wgpu --large \
    --only "BatchNorm2d train [128") | python3 benches/kernel_times.py
}
# The suite finds its fixtures through the checkout it was built in, baked
# into the binary (not always /work/main: a cached build may come from
# another clone), so that path is linked to this one.
link_fixtures() {
  local root
  root=$(grep -a -o -m1 '/[A-Za-z0-9_.+/-]*/tests/fixtures/' "$bin/suite" | head -1)
  root=${root%/tests/fixtures/}
  [ -n "$root" ] && [ ! -e "$root" ] && mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"
  return 0
}
section_suite() {
  [ -x "$bin/suite" ] || return 0
  link_fixtures
  # One test at a time: a GPU failure can take the device down for every
  # test after it in the process, so that a parallel run blames the wrong
  # tests (the first run here, on an H100, 2026-11-27, also had a panic in
  # Burn 0.22.1's autotune timing, "Failed to map buffer", with 8 threads).
  echo "## suite, wgpu (plane reductions where the card has them)"
  timeout 150 "$bin/suite" --test-threads=1 wgpu fused:: 2>&1 | grep -E -A3 "FAILED|panicked|test result"
}
# The shared-memory path is what lavapipe runs in CI (CubeCL turns planes
# off on CPU adapters); here it is forced on the GPU.
section_suite_shared() {
  [ -x "$bin/suite" ] || return 0
  link_fixtures
  echo "## suite, wgpu, BURN_NORM_SHARED_REDUCE=1 BURN_NORM_SWEEP_UNITS=64"
  BURN_NORM_SHARED_REDUCE=1 BURN_NORM_SWEEP_UNITS=64 timeout 150 "$bin/suite" --test-threads=1 wgpu fused:: 2>&1 |
    grep -E -A3 "FAILED|panicked|test result"
}
compare() { timeout 150 python3 benches/compare.py --device wgpu --large --torch-rows "/tmp/torch-rows-$chain.json" --chain "$chain" "$@"; }
section_tables() {
  chain=10
  echo "## fusion + autotune"; compare --bin "$bin/norm" --label "wgpu (fusion + autotune)"
  if [ -x "$bin/norm-unfused" ]; then
    echo "## no fusion"; compare --bin "$bin/norm-unfused" --label "wgpu (no fusion)"
  fi
  echo "## burn-norm, BURN_NORM_FLUSH=1"
  BURN_NORM_FLUSH=1 BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "every op submits"
  if [ -x "$bin/norm-before" ]; then
    echo "## burn-norm, the older build"; BENCH_IMPL=burn-norm compare --bin "$bin/norm-before" --label "before"
  fi
  echo "## BatchNorm's training forward, one layer per wait (--chain 1)"
  timeout 60 "$bin/norm" --device wgpu --large --only "BatchNorm2d train [64" --chain 1
}
section_steady() {
  chain=100
  echo "## fusion + autotune, 100 layers per wait"; compare --bin "$bin/norm" --label "wgpu (fusion + autotune)"
  echo "## burn-norm, BURN_NORM_ONE_PASS=0, then with BURN_NORM_ROW_SUM_VECTORS=1, 100 layers per wait"
  BURN_NORM_ONE_PASS=0 BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "two-pass backward"
  BURN_NORM_ONE_PASS=0 BURN_NORM_ROW_SUM_VECTORS=1 BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "two passes, row sums in vectors"
  echo "## burn-norm, BURN_NORM_SUMMED_CHANNELS=16, 100 layers per wait"
  BURN_NORM_SUMMED_CHANNELS=16 BENCH_IMPL=burn-norm compare --bin "$bin/norm" --label "groups sum their channels"
  if [ -x "$bin/norm-before" ]; then
    echo "## burn-norm, the older build, 100 layers per wait"
    BENCH_IMPL=burn-norm compare --bin "$bin/norm-before" --label "before"
  fi
  echo "## groups and rows too long to hold, as built, with BURN_NORM_BLOCK_CUBES=1024, then all streamed, 100 layers per wait"
  long() { timeout 150 python3 benches/compare.py --device wgpu --large --long-groups --only "[8, " --torch-rows /tmp/torch-rows-long.json --chain 100 "$@"; }
  long --bin "$bin/norm" --label "as built"
  BURN_NORM_BLOCK_CUBES=1024 BENCH_IMPL=burn-norm long --bin "$bin/norm" --label "smaller blocks"
  BURN_NORM_GROUP_BLOCKS=0 BENCH_IMPL=burn-norm long --bin "$bin/norm" --label "streamed"
}
# The steady table's medians: one run of a table is good to about a
# quarter either way on a forward (an H200, 2026-11-28), so the figures to
# report come from alternating runs, PyTorch's rerun each time.
section_medians() {
  echo "## medians of 3 alternating runs (bench, then PyTorch), fusion + autotune, 100 layers per wait"
  timeout 400 python3 benches/compare.py --device wgpu --large --chain 100 --runs 3 \
    --bin "$bin/norm" --label "wgpu (fusion + autotune)"
}
section_ab() {
  echo "## alternating probes, burn-norm alone"
  for round in 1 2 3; do
    for setting in "" CUBECL_WGPU_MAX_TASKS=4 BURN_NORM_FLUSH=0 BURN_NORM_PER_UNIT=8; do
      echo "round $round: ${setting:-as built}"
      env $setting BENCH_IMPL=burn-norm timeout 60 "$bin/norm" --device wgpu --probe | grep burn-norm
    done
  done
  for chain in 10 100; do
    echo "## CUBECL_WGPU_MAX_TASKS=4, $chain layers per wait"
    CUBECL_WGPU_MAX_TASKS=4 compare --bin "$bin/norm" --label "wgpu, 4 tasks per submit"
  done
}
# The sections in the order named, each with the seconds it took, so that a
# run cut short by the device's time limit has done the first ones whole.
for section in $sections; do
  start=$SECONDS
  "section_${section//-/_}"
  echo "(section $section: $((SECONDS - start)) s)"
done
