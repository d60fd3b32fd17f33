#!/usr/bin/env bash
# Prepares what benches/gpu.sh needs on a GPU machine that has no Rust
# toolchain: run it here (x86-64) before asking for the device, so that
# device time goes to the run alone.
#
#   bash benches/gpu-prepare.sh                 # bench (fusion + autotune) and suite
#   bash benches/gpu-prepare.sh --unfused       # also the bench without Burn's fusion
#                                               # (a second full build of Burn's wgpu)
#   bash benches/gpu-prepare.sh --before BIN    # also an older bench binary to compare
#   bash benches/gpu-prepare.sh --before-commit REV
#                                               # the same, built from commit REV (a
#                                               # git worktree, the same target folder)
#
# Writes vendor-gpu/*.xz (stripped, compressed: the device tool carries
# 64 MiB in all) and .gl/*.deb (the Vulkan loader and glvnd: NVIDIA's Vulkan
# driver is libGLX_nvidia, which needs them), both ignored by git. Then,
# with the device tool: carry ["vendor-gpu", ".gl"], run `bash benches/gpu.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
unfused=0 before= before_commit=
while [ $# -gt 0 ]; do
  case "$1" in
    --unfused) unfused=1 ;;
    --before) before=$2; shift ;;
    --before-commit) before_commit=$2; shift ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/burn-norm-ci-target}"

# The path of the executable a cargo command builds (its last one).
exe() {
  cargo "$@" --message-format=json | python3 -c 'import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")]
print(paths[-1])'
}

rm -rf vendor-gpu && mkdir -p vendor-gpu
cp "$(exe bench --bench norm --no-run)" vendor-gpu/norm
cp "$(exe bench --bench copy --no-run)" vendor-gpu/copy
cp "$(exe test --release --test suite --no-run)" vendor-gpu/suite
if [ "$unfused" = 1 ]; then
  cp "$(exe bench --bench norm --no-run --no-default-features --features wgpu)" vendor-gpu/norm-unfused
fi
if [ -n "$before_commit" ]; then
  tree=$(mktemp -d)/before
  git worktree add -q --detach "$tree" "$before_commit"
  # Both builds time with today's harness (benches/), or a change of the
  # harness would read as a change of speed. A library too old for it
  # builds with its own, and says so.
  cp -r benches/. "$tree/benches/"
  before=$(cd "$tree" && exe bench --bench norm --no-run) || {
    echo "warning: $before_commit builds with its own harness, not today's" >&2
    (cd "$tree" && git checkout -q -- benches && git clean -qfd benches)
    before=$(cd "$tree" && exe bench --bench norm --no-run)
  }
  cp "$before" vendor-gpu/norm-before
  git worktree remove --force "$tree"
elif [ -n "$before" ]; then
  cp "$before" vendor-gpu/norm-before
fi
strip vendor-gpu/*
xz -T2 -6 vendor-gpu/*

if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64-lists/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists)
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libgles2 libopengl0)
fi
du -ch vendor-gpu/* .gl/* | tail -1
echo "ready: carry [\"vendor-gpu\", \".gl\"] and run: bash benches/gpu.sh"
