#!/usr/bin/env python3
"""Mutation check of the kernels: does the suite notice a broken kernel?

Each mutation below breaks one path of the kernels on purpose (a sum that
skips a value, a wrong stride, a missing correction): mostly the CubeCL
kernels (`crates/burn-norm/src/backend/cube_*.rs`), whose paths depend on
shapes and settings, and a few of the CPU kernel's. For each one this script
applies it, builds the suite, runs the suite's tests of that backend (wgpu
and fused-vs-composed in each of CI's kernel settings, `.ci/run`; flex and
ndarray for the CPU) until one fails, and restores the file. A mutation that
nothing kills is a path the tests do not check. Lavapipe runs the CubeCL
kernels, so this takes about two minutes a mutation on a 2-core machine, and
more for one that survives several settings (44 minutes for all of them on
2026-12-08); it is a tool to rerun after changing the kernels or their
tests, not part of CI.

    python3 tests/mutations.py            # all of them
    python3 tests/mutations.py NAME ...   # those named
    python3 tests/mutations.py --list

Exits 1 if any survives. Set CARGO_TARGET_DIR, CUBECL_WGPU_DEFAULT_DEVICE=Cpu
and XDG_RUNTIME_DIR as `.ci/run` does.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass

KERNELS = "crates/burn-norm/src/backend/cube_kernels.rs"
BLOCKS = "crates/burn-norm/src/backend/cube_blocks.rs"
CPU_BACKWARD = "crates/burn-norm/src/backend/cpu/backward.rs"
CPU_FORWARD = "crates/burn-norm/src/backend/cpu/forward.rs"
CPU_LONG_GROUPS = "crates/burn-norm/src/backend/cpu/long_groups.rs"
FILES = [KERNELS, BLOCKS, CPU_BACKWARD, CPU_FORWARD, CPU_LONG_GROUPS]

# CI's settings for the suite's wgpu tests (keep in step with `.ci/run`).
SETTINGS = [
    {},
    {"BURN_NORM_PLANE_REDUCE": "1"},
    {
        "BURN_NORM_PER_UNIT": "8",
        "BURN_NORM_FLUSH": "1",
        "BURN_NORM_SWEEP_UNITS": "64",
        "BURN_NORM_BLOCK_CUBES": "1",
        "BURN_NORM_SUMMED_CHANNELS": "16",
    },
    {
        "BURN_NORM_ONE_PASS": "0",
        "BURN_NORM_ROW_SUM_VECTORS": "1",
        "BURN_NORM_GROUP_BLOCKS": "0",
    },
]
FILTERS = ["wgpu", "fused::"]
CPU_SETTINGS = [{}]
CPU_FILTERS = ["flex", "ndarray", "fused::"]


@dataclass
class Mutation:
    name: str
    file: str
    old: str
    new: str
    what: str
    settings: list = None
    filters: list = None

    def runs(self):
        """The tests' settings and filters: CI's wgpu runs unless given."""
        return self.settings or SETTINGS, self.filters or FILTERS


MUTATIONS = [
    Mutation(
        "running-var-biased",
        KERNELS,
        "(batch_var * F::cast_from(correction)) * factor",
        "batch_var * factor",
        "the running variance takes the biased batch variance",
    ),
    Mutation(
        "group-channel-parameter",
        KERNELS,
        "(g % (e.c / e.k)) * e.k + j / e.s",
        "(g % (e.c / e.k)) * e.k",
        "GroupNorm's values all take their group's first channel's gamma",
    ),
    Mutation(
        "planes-first-only",
        KERNELS,
        "for i in 0..comptime!(team / plane) as usize {",
        "for i in 0..1usize {",
        "a team of several planes adds its first plane's sum only",
    ),
    Mutation(
        "no-shift",
        KERNELS,
        "shift = x[value_index(0, g, e, layout)].extract(0usize);",
        "shift = F::new(0.0_f32);",
        "the kernels' moments unshifted (large means lose their digits)",
    ),
    Mutation(
        "swept-dbeta",
        KERNELS,
        "columns[held as usize + i] += d;",
        "columns[held as usize + i] += d + d;",
        "a swept backward doubles dbeta",
    ),
    Mutation(
        "held-channel-sums",
        KERNELS,
        "if (lane + i * team as usize) / e.s == ch {",
        "if (lane + i * team as usize) / e.s == ch && i > 0 {",
        "held groups' per-channel sums skip each unit's first slot",
    ),
    Mutation(
        "streamed-channel-sums",
        KERNELS,
        "range_stepped(ch * e.s + lane, (ch + 1) * e.s, team as usize)",
        "range_stepped(ch * e.s + lane, (ch + 1) * e.s - 1, team as usize)",
        "streamed groups' per-channel sums skip each channel's last vector",
    ),
    Mutation(
        "streamed-one-channel-dbeta",
        KERNELS,
        "            sum_d += d;\n        }\n    }\n    let size_f",
        "            sum_d += d + d;\n        }\n    }\n    let size_f",
        "streamed one-channel groups double their dbeta sums",
    ),
    Mutation(
        "forward-streamed-variance",
        KERNELS,
        "        for j in range_stepped(lane, size, team as usize) {\n"
        "            let d = (x[value_index(j, g, &e, layout)] - sv) - mv;",
        "        for j in range_stepped(lane + team as usize, size, team as usize) {\n"
        "            let d = (x[value_index(j, g, &e, layout)] - sv) - mv;",
        "a streamed forward's variance skips each unit's first vector",
    ),
    Mutation(
        "forward-held-variance-padding",
        KERNELS,
        "            if lane + i * (team as usize) < size {\n"
        "                let d = (values[i] - sv) - mv;",
        "            if lane + i * (team as usize) <= size {\n"
        "                let d = (values[i] - sv) - mv;",
        "a held forward's variance counts the slot past the group's end",
    ),
    Mutation(
        "streamed-mean",
        KERNELS,
        "            for j in range_stepped(lane, size, team as usize) {\n"
        "                acc += x[value_index(j, g, e, layout)] - sv;",
        "            for j in range_stepped(lane + team as usize, size, team as usize) {\n"
        "                acc += x[value_index(j, g, e, layout)] - sv;",
        "a streamed group's mean skips each unit's first vector",
    ),
    Mutation(
        "hold-one-past",
        KERNELS,
        "        if active && j < size {\n            v = x[value_index(j, g, e, layout)];",
        "        if active && j <= size {\n            v = x[value_index(j, g, e, layout)];",
        "a held group reads one vector past its end",
    ),
    Mutation(
        "cube-columns",
        KERNELS,
        "total_gamma += shared[t * team as usize + unit];",
        "total_gamma += shared[unit];",
        "a cube's teams add the first team's dgamma columns only",
    ),
    Mutation(
        "row-grads-last-row",
        KERNELS,
        "let mut last = first + rows_per_block as usize;",
        "let mut last = first + rows_per_block as usize - 1;",
        "the second pass's row sums skip each block's last row",
    ),
    Mutation(
        "column-sums-last-block",
        KERNELS,
        "for b in range_stepped(lane, blocks as usize, lanes as usize) {",
        "for b in range_stepped(lane, blocks as usize - 1, lanes as usize) {",
        "the column sums skip the last block",
    ),
    Mutation(
        "channel-grads-last",
        KERNELS,
        "for i in range_stepped(run * s + lane, (run + 1) * s, team as usize) {",
        "for i in range_stepped(run * s + lane, (run + 1) * s - 1, team as usize) {",
        "the second pass's channel sums skip each channel's last vector",
    ),
    Mutation(
        "blocks-last-count",
        BLOCKS,
        "let last = F::cast_from((run_values - (blocks - 1) * block_values as usize) as u32);",
        "let last = full;",
        "the merge counts a run's last, partial block as full",
    ),
    Mutation(
        "blocks-spread-unweighted",
        BLOCKS,
        "+ block_count::<F>(p, blocks, full, last) * gap * gap,",
        "+ gap * gap,",
        "the merge weighs the blocks' mean gaps by 1, not their counts",
    ),
    Mutation(
        "blocks-merge-one-partial",
        BLOCKS,
        "        for p in range_stepped(unit, k * blocks, team as usize) {\n            let gap",
        "        for p in range_stepped(unit, k * blocks, k * blocks) {\n            let gap",
        "each merge unit adds one block's spread, not every 64th",
    ),
    Mutation(
        "blocks-backward-one-block",
        BLOCKS,
        "run_sums::<F>(partial, run, blocks, m, unit, team as usize)",
        "run_sums::<F>(partial, run, blocks, m, unit, blocks)",
        "the backward merge's units add one block each, not every 64th",
    ),
    Mutation(
        "blocks-padding-variance",
        BLOCKS,
        "} else if lane + i * (team as usize) < count {",
        "} else if lane + i * (team as usize) <= count {",
        "a block's variance counts the slot past its end",
    ),
    Mutation(
        "blocks-group-shift",
        BLOCKS,
        "        (run / k) * k * s\n    }",
        "        run * s\n    }",
        "a GroupNorm block shifts by its own channel's first value, the merge by the group's",
    ),
    Mutation(
        "cpu-rows-drain",
        CPU_BACKWARD,
        "if (g + 1) % param_rows == 0 || g + 1 == groups.end {",
        "if (g + 1) % param_rows == 0 {",
        "the CPU backward drops a chunk's last rows' parameter sums",
        CPU_SETTINGS,
        CPU_FILTERS,
    ),
    Mutation(
        "cpu-aligned-bulk",
        CPU_FORWARD,
        "write_values(y_bulk, &row.slice(head..row.x.len()));",
        "write_values(y_bulk, &row.slice(0..row.x.len() - head));",
        "the CPU forward writes a long row's bulk from the row's start",
        CPU_SETTINGS,
        CPU_FILTERS,
    ),
    Mutation(
        "cpu-long-groups-last-tile",
        CPU_LONG_GROUPS,
        "part[row * tiles..(row + 1) * tiles]",
        "part[row * tiles..(row + 1) * tiles - 1]",
        "the CPU's long groups drop their last tile's sums",
        CPU_SETTINGS,
        CPU_FILTERS,
    ),
]


def build() -> str:
    """Builds the suite; returns its binary's path."""
    out = subprocess.run(
        ["cargo", "test", "--release", "--workspace", "--test", "suite", "--no-run"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"the build failed:\n{out.stderr[-4000:]}")
    found = re.findall(r"\(([^)]*/suite-[0-9a-f]+)\)", out.stderr)
    if not found:
        sys.exit(f"no suite binary in cargo's output:\n{out.stderr[-2000:]}")
    return found[-1]


def failing(binary: str, settings: dict, filters: list) -> list:
    """Runs the tests in `settings`; returns the failed tests' names."""
    env = {**os.environ, **settings}
    try:
        out = subprocess.run(
            [binary, *filters], capture_output=True, text=True, env=env, timeout=1200
        )
    except subprocess.TimeoutExpired:
        return ["(timed out after 20 minutes)"]
    if out.returncode == 0:
        return []
    names = re.findall(r"^    (\S+)$", out.stdout, re.MULTILINE)
    return names or ["(the run failed; no test named)"]


def check(mutation: Mutation) -> str:
    with open(mutation.file) as f:
        original = f.read()
    if original.count(mutation.old) != 1:
        return f"not applied: the text is in {mutation.file} {original.count(mutation.old)} times"
    try:
        with open(mutation.file, "w") as f:
            f.write(original.replace(mutation.old, mutation.new))
        binary = build()
        all_settings, filters = mutation.runs()
        for settings in all_settings:
            names = failing(binary, settings, filters)
            if names:
                shown = " ".join(f"{k}={v}" for k, v in settings.items()) or "default"
                return f"killed ({shown}): {', '.join(names[:3])}"
        return "SURVIVED"
    finally:
        with open(mutation.file, "w") as f:
            f.write(original)


def main() -> None:
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = sys.argv[1:]
    if args == ["--list"]:
        for m in MUTATIONS:
            print(f"{m.name}: {m.what}")
        return
    chosen = [m for m in MUTATIONS if not args or m.name in args]
    unknown = set(args) - {m.name for m in MUTATIONS}
    if unknown:
        sys.exit(f"no such mutation: {', '.join(sorted(unknown))} (--list)")
    dirty = subprocess.run(
        ["git", "status", "--porcelain", *FILES], capture_output=True, text=True
    ).stdout
    if dirty:
        sys.exit(f"commit or stash the kernels' changes first:\n{dirty}")
    survived = 0
    for m in chosen:
        result = check(m)
        survived += result == "SURVIVED"
        print(f"{m.name}: {result}", flush=True)
    # Leave the suite built from the files as they are.
    build()
    print(f"{len(chosen) - survived} of {len(chosen)} killed")
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
