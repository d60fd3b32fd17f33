//! CubeCL kernels of the group normalization (wgpu, and any other CubeCL
//! runtime): the GPU counterpart of [`cpu`](super::cpu).
//!
//! The input is `[n, g, k, s]`, row-major, grouped as the compile-time
//! [`Layout`] describes: a group is one `[s]` row (LayerNorm, RMSNorm), one
//! channel's `n` rows of `s` values, `c * s` apart (training BatchNorm,
//! `k = 1`), or `k` channels of one sample (GroupNorm, InstanceNorm).
//! BatchNorm's channels longer than a cube holds go to
//! [`cube_blocks`](super::cube_blocks) instead (blocks in parallel), as do
//! GroupNorm's and InstanceNorm's groups too long to hold.
//!
//! - [`normalize_forward`]: one *team* of units per group, several teams
//!   per cube when groups are short (a transformer's 128-wide rows: eight
//!   rows per 256-unit cube), so that short rows neither leave units idle
//!   nor pay a whole cube's barriers each.
//! - [`normalize_backward`]: the same teams compute `dx` and what the
//!   parameter gradients need ([`ParameterSums`]): for groups of one
//!   channel their sums (BatchNorm's `dgamma`, `dbeta` themselves,
//!   InstanceNorm's per sample); for rows held in registers (LayerNorm,
//!   RMSNorm up to 2,048 vectors: 8,192 values in vectors of 4) per-column sums over the rows each cube
//!   sweeps; otherwise each group's shift and mean, for
//!   [`row_parameter_grads`] (longer rows: sums down the columns in blocks
//!   of rows) or [`channel_parameter_grads`] (GroupNorm: one team per
//!   channel and sample). [`column_sums`] adds the cubes', blocks' or
//!   samples' partial sums.
//!   (Not Burn's `sum_dim`: on wgpu, Burn 0.22.1's returns 65,532 for the
//!   sum of 70,007 ones down a column.)
//!
//! Values move as vectors of `N` (4, 2 or 1: the largest that divides a
//! channel's run of `s` contiguous values, so that a vector never straddles
//! two channels); `e.s` and every index count vectors.
//!
//! Two ways to walk a group, chosen when the kernel is compiled:
//! - *held* (groups of at most [`MAX_HELD_FORWARD`] vectors per unit in
//!   the forward, [`MAX_HELD_BACKWARD`] of each of `x` and `dy` in the
//!   backward): each unit
//!   loads its values into registers once; the shifted mean, the variance
//!   and the output (or the backward's sums and `dx`) are computed from the
//!   registers, so the input is read from memory once.
//! - *streamed* (longer groups): each pass reads the group again.
//!
//! Teams are [`team_size`] units, a power of two near a quarter of the
//! group's vectors ([`per_unit`]). They add up through plane (subgroup) sums and one
//! exchange in shared memory where the device has planes, else through a
//! tree in shared memory (see [`team_sum2`]; the launch chooses, and
//! `BURN_NORM_SHARED_REDUCE=1` forces the tree). CubeCL gives lavapipe no
//! planes, so it takes the tree; CI runs the suite's wgpu tests again with
//! its planes of 8 forced on (`BURN_NORM_PLANE_REDUCE=1`), and
//! `benches/gpu.sh` runs them both ways on a GPU. Cubes are numbered
//! `CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X` so that more than 65,535 of
//! them fit one launch.

use super::layout::{Centering, Grouping, Layout};
use super::statistics::Statistics;
use cubecl::prelude::*;

/// Most units per cube.
pub const MAX_CUBE_SIZE: u32 = 256;

/// Most values per unit that BatchNorm's channel blocks hold in registers,
/// and a swept backward ([`ParameterSums::Swept`], which keeps two sums
/// per held vector besides `x` and `dy`).
pub const MAX_HELD: usize = 8;

/// Most values per unit that the forward holds in registers (`x` alone):
/// groups of up to 4,096 vectors (GroupNorm [64, 128, 56, 56]'s 32 groups
/// of 3,136 vectors of 4, LayerNorm's rows up to 16,384 values) are read
/// from memory once instead of three times (mean, variance, output).
pub const MAX_HELD_FORWARD: usize = 16;

/// Most vectors per unit that the backward holds in registers, of `x` and
/// of `dy` each: the same groups read once instead of three times (the
/// mean, the sums, `dx`), for twice the registers of the forward's.
pub const MAX_HELD_BACKWARD: usize = 16;

/// Values (or vectors) per unit that [`team_size`] aims at: enough loads in
/// flight per unit, few idle units on short rows.
pub const PER_UNIT: usize = 4;

/// [`PER_UNIT`], or `BURN_NORM_PER_UNIT` (1 to [`MAX_HELD`]) where set: a
/// tuning aid for GPU runs. With 8, a 768-wide row of 192 vectors gets a
/// team of 32 units (one plane on NVIDIA: its sums need no shared memory
/// and no barrier) holding 6 vectors each, against 64 units holding 3.
/// `benches/gpu.sh` times both; other values are ignored.
pub fn per_unit() -> usize {
    static PER_UNIT_SET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PER_UNIT_SET.get_or_init(|| {
        super::settings::count("BURN_NORM_PER_UNIT", 1..=MAX_HELD).unwrap_or(PER_UNIT)
    })
}

/// Units per group for groups of `size` values (or vectors), aiming at
/// `per_unit` each: a power of two (the tree reduction halves it) near
/// `size / per_unit`, at least 32 (a GPU's smallest warp), at most
/// [`MAX_CUBE_SIZE`].
pub fn team_size(size: usize, per_unit: usize) -> u32 {
    size.div_ceil(per_unit)
        .next_power_of_two()
        .clamp(32, MAX_CUBE_SIZE as usize) as u32
}

/// How one launch of [`normalize_forward`] or [`normalize_backward`]
/// covers `groups` groups of `size` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Teams {
    /// Units per group.
    pub team: u32,
    /// Groups per cube.
    pub per_cube: u32,
    /// Values per unit kept in registers, or 0 to stream the group.
    pub held: u32,
}

impl Teams {
    /// Teams aiming at [`per_unit`] values per unit, holding up to
    /// `max_held` ([`MAX_HELD`] or [`MAX_HELD_FORWARD`]).
    pub fn new(groups: usize, size: usize, max_held: usize) -> Self {
        Self::aiming_at(groups, size, per_unit(), max_held)
    }

    /// Teams aiming at `per_unit` values per unit, holding up to
    /// `max_held`.
    pub fn aiming_at(groups: usize, size: usize, per_unit: usize, max_held: usize) -> Self {
        let team = team_size(size, per_unit);
        let per_cube = ((MAX_CUBE_SIZE / team) as usize).min(groups.max(1)) as u32;
        let per_unit = size.div_ceil(team as usize);
        let held = if per_unit <= max_held {
            per_unit as u32
        } else {
            0
        };
        Teams {
            team,
            per_cube,
            held,
        }
    }

    /// Units per cube.
    pub fn units(&self) -> u32 {
        self.team * self.per_cube
    }
}

/// Rows per block of [`row_parameter_grads`] for `rows` rows: 64, or more
/// so that there are at most [`MAX_BLOCKS`] blocks.
pub fn rows_per_block(rows: usize) -> usize {
    64.max(rows.div_ceil(MAX_BLOCKS))
}

/// Most blocks of [`row_parameter_grads`]: one grid dimension holds 65,535
/// cubes.
pub const MAX_BLOCKS: usize = 65_535;

/// The extents of an `[n, g, k, s]` input that the kernels index with.
#[derive(CubeType, Clone)]
pub struct Extents {
    /// Channels, `g * k`.
    c: usize,
    /// Channels per block.
    k: usize,
    /// Values per channel and sample.
    s: usize,
}

/// [`Extents`] from the launch's scalars.
#[cube]
fn extents(c: u32, k: u32, s: u32) -> Extents {
    Extents {
        c: c as usize,
        k: k as usize,
        s: s as usize,
    }
}

/// Flat index of the `j`-th value of group `g`.
#[cube]
fn value_index(j: usize, g: usize, e: &Extents, #[comptime] layout: Layout) -> usize {
    let block = e.k * e.s;
    if comptime!(layout.grouping.is_rows()) {
        g * e.s + j
    } else if comptime!(layout.grouping == Grouping::Channels) {
        (j / block) * e.c * e.s + g * block + j % block
    } else {
        g * block + j
    }
}

/// Vectors per group: a row, a channel block's `n` rows, or a channel block
/// of one sample (`e.s` counts vectors too).
#[cube]
fn group_size<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    e: &Extents,
    #[comptime] layout: Layout,
) -> usize {
    if comptime!(layout.grouping.is_rows()) {
        e.s
    } else if comptime!(layout.grouping == Grouping::Channels) {
        (x.len() / (e.c * e.s)) * e.k * e.s
    } else {
        e.k * e.s
    }
}

/// This unit's group and its lane in the group's team.
#[cube]
fn team_position(#[comptime] team: u32) -> (usize, usize) {
    let cube = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let teams = CUBE_DIM_X as usize / team as usize;
    let unit = UNIT_POS_X as usize;
    (cube * teams + unit / team as usize, unit % team as usize)
}

/// The sum of a vector's values.
#[cube]
fn total<F: Float, N: Size>(v: Vector<F, N>) -> F {
    let mut sum = F::new(0.0_f32);
    #[unroll]
    for i in 0..N::value() {
        sum += v.extract(i);
    }
    sum
}

/// Sums of the values of vectors `a` and of `b` over each team's units,
/// returned to every unit of the team; `scratch` holds `2 * CUBE_DIM_X`
/// values. Every unit of the
/// cube calls it, also those whose team has no group (they add zeros).
///
/// With `plane > 0` (the plane size, which divides the team) each plane
/// sums in registers (`plane_sum`), and only the planes' totals meet in
/// shared memory: two barriers, none for a team of one plane. With
/// `plane = 0` one tree in shared memory, a barrier per level for both sums.
#[cube]
// CubeCL's kernel language has `%`, not `is_multiple_of`.
#[allow(clippy::manual_is_multiple_of)]
pub(super) fn team_sum2<F: Float, N: Size>(
    a: Vector<F, N>,
    b: Vector<F, N>,
    scratch: &mut Shared<[F]>,
    #[comptime] team: u32,
    #[comptime] plane: u32,
) -> (F, F) {
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let base = unit - unit % team as usize;
    let mut total_a = total::<F, N>(a);
    let mut total_b = total::<F, N>(b);
    if comptime!(plane > 0) {
        total_a = plane_sum(total_a);
        total_b = plane_sum(total_b);
        if comptime!(team > plane) {
            let p = unit / plane as usize;
            if unit % plane as usize == 0 {
                scratch[p] = total_a;
                scratch[units + p] = total_b;
            }
            sync_cube();
            let first = base / plane as usize;
            total_a = F::new(0.0_f32);
            total_b = F::new(0.0_f32);
            #[unroll]
            for i in 0..comptime!(team / plane) as usize {
                total_a += scratch[first + i];
                total_b += scratch[units + first + i];
            }
            // Everyone has read the totals before the scratch is written again.
            sync_cube();
        }
    } else {
        scratch[unit] = total_a;
        scratch[units + unit] = total_b;
        sync_cube();
        // One level per halving of the team, unrolled: `team` is known when
        // the kernel is compiled.
        #[unroll]
        for level in 0..comptime!(team.trailing_zeros()) {
            let width = (team as usize / 2) >> level as usize;
            if unit - base < width {
                let other_a = scratch[unit + width];
                let other_b = scratch[units + unit + width];
                scratch[unit] += other_a;
                scratch[units + unit] += other_b;
            }
            sync_cube();
        }
        total_a = scratch[base];
        total_b = scratch[units + base];
        sync_cube();
    }
    (total_a, total_b)
}

/// Sum of the values of vector `value` over each team's units; see
/// [`team_sum2`].
#[cube]
pub(super) fn team_sum<F: Float, N: Size>(
    value: Vector<F, N>,
    scratch: &mut Shared<[F]>,
    #[comptime] team: u32,
    #[comptime] plane: u32,
) -> F {
    let zero = Vector::<F, N>::new(F::new(0.0_f32));
    let (total, _) = team_sum2::<F, N>(value, zero, scratch, team, plane);
    total
}

/// Fills `values` (at least one slot: a zero-length array is not valid
/// SPIR-V; the streamed path, `held = 0`, never reads it) with the held
/// values of one unit: value `lane + i * team` of group `g` in slot `i`, or
/// `fill` past the group's end (or for a team without a group).
#[cube]
#[allow(clippy::too_many_arguments)]
fn hold<F: Float, N: Size>(
    values: &mut Array<Vector<F, N>>,
    x: &Tensor<Vector<F, N>>,
    g: usize,
    lane: usize,
    size: usize,
    e: &Extents,
    active: bool,
    fill: Vector<F, N>,
    #[comptime] layout: Layout,
    #[comptime] team: u32,
    #[comptime] held: u32,
) {
    #[unroll]
    for i in 0..held as usize {
        let j = lane + i * team as usize;
        let mut v = fill;
        if active && j < size {
            v = x[value_index(j, g, e, layout)];
        }
        values[i] = v;
    }
}

/// The shift of group `g`: its first value, or 0 where the layout does not
/// center (then the "mean" below is 0 too).
#[cube]
fn group_shift<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    g: usize,
    e: &Extents,
    active: bool,
    #[comptime] layout: Layout,
) -> F {
    let mut shift = F::new(0.0_f32);
    if comptime!(layout.centering == Centering::Mean) && active {
        shift = x[value_index(0, g, e, layout)].extract(0usize);
    }
    shift
}

/// The mean of `x - shift`, as in the CPU kernel: shift and mean kept
/// apart keep the digits of data far from zero. With `held > 0` the values
/// come from `values`, else from memory; 0 where the layout does not center.
#[cube]
#[allow(clippy::too_many_arguments)]
fn shifted_mean<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    values: &Array<Vector<F, N>>,
    shift: F,
    g: usize,
    lane: usize,
    size: usize,
    e: &Extents,
    active: bool,
    scratch: &mut Shared<[F]>,
    #[comptime] layout: Layout,
    #[comptime] team: u32,
    #[comptime] held: u32,
    #[comptime] plane: u32,
) -> F {
    let mut mean = F::new(0.0_f32);
    if comptime!(layout.centering == Centering::Mean) {
        let sv = Vector::<F, N>::new(shift);
        let mut acc = Vector::<F, N>::new(F::new(0.0_f32));
        if comptime!(held > 0) {
            // Slots past the group's end hold `shift`: they add nothing.
            #[unroll]
            for i in 0..held as usize {
                acc += values[i] - sv;
            }
        } else if active {
            for j in range_stepped(lane, size, team as usize) {
                acc += x[value_index(j, g, e, layout)] - sv;
            }
        }
        mean =
            team_sum::<F, N>(acc, scratch, team, plane) / F::cast_from((size * N::value()) as u32);
    }
    mean
}

/// `y = (x - mean) * rstd * gamma + beta` per group, with the biased
/// variance (`mean = 0` where the layout does not center); writes each
/// group's `mean`, `var` and `rstd` where `statistics` returns them (the
/// updated `running_mean` and `running_var` in `mean` and `var` for
/// [`Statistics::Running`], see [`write_statistics`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn normalize_forward<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    y: &mut Tensor<Vector<F, N>>,
    mean: &mut Tensor<F>,
    var: &mut Tensor<F>,
    rstd: &mut Tensor<F>,
    running_mean: &Tensor<F>,
    running_var: &Tensor<F>,
    groups: u32,
    c: u32,
    k: u32,
    s: u32,
    epsilon: f32,
    keep: f32,
    factor: f32,
    correction: f32,
    #[comptime] layout: Layout,
    #[comptime] has_gamma: bool,
    #[comptime] has_beta: bool,
    #[comptime] statistics: Statistics,
    #[comptime] units: u32,
    #[comptime] team: u32,
    #[comptime] held: u32,
    #[comptime] plane: u32,
    #[define(F)] _dtype: ElemType,
) {
    let (g, lane) = team_position(team);
    // Units of a team without a group still take part in the barriers.
    let active = g < groups as usize;
    let e = extents(c, k, s);
    let size = group_size::<F, N>(x, &e, layout);
    let mut scratch = Shared::new_slice(2 * units as usize);
    let shift = group_shift::<F, N>(x, g, &e, active, layout);
    let sv = Vector::<F, N>::new(shift);
    let mut values = Array::<Vector<F, N>>::new(comptime!(held.max(1)) as usize);
    hold::<F, N>(
        &mut values,
        x,
        g,
        lane,
        size,
        &e,
        active,
        sv,
        layout,
        team,
        held,
    );
    let m = shifted_mean::<F, N>(
        x,
        &values,
        shift,
        g,
        lane,
        size,
        &e,
        active,
        &mut scratch,
        layout,
        team,
        held,
        plane,
    );

    let mv = Vector::<F, N>::new(m);
    let mut acc = Vector::<F, N>::new(F::new(0.0_f32));
    if comptime!(held > 0) {
        #[unroll]
        for i in 0..held as usize {
            if lane + i * (team as usize) < size {
                let d = (values[i] - sv) - mv;
                acc += d * d;
            }
        }
    } else if active {
        for j in range_stepped(lane, size, team as usize) {
            let d = (x[value_index(j, g, &e, layout)] - sv) - mv;
            acc += d * d;
        }
    }
    let v =
        team_sum::<F, N>(acc, &mut scratch, team, plane) / F::cast_from((size * N::value()) as u32);
    let r = F::new(1.0_f32) / (v + F::cast_from(epsilon)).sqrt();
    let rv = Vector::<F, N>::new(r);
    if !active {
        terminate!();
    }

    if comptime!(held > 0) {
        #[unroll]
        for i in 0..held as usize {
            let j = lane + i * team as usize;
            if j < size {
                y[value_index(j, g, &e, layout)] = affine::<F, N>(
                    ((values[i] - sv) - mv) * rv,
                    gamma,
                    beta,
                    parameter(g, j, &e, layout),
                    layout,
                    has_gamma,
                    has_beta,
                );
            }
        }
    } else {
        for j in range_stepped(lane, size, team as usize) {
            let index = value_index(j, g, &e, layout);
            y[index] = affine::<F, N>(
                ((x[index] - sv) - mv) * rv,
                gamma,
                beta,
                parameter(g, j, &e, layout),
                layout,
                has_gamma,
                has_beta,
            );
        }
    }
    if comptime!(statistics != Statistics::Discarded) && lane == 0 {
        write_statistics::<F>(
            mean,
            var,
            rstd,
            running_mean,
            running_var,
            g,
            shift + m,
            v,
            r,
            keep,
            factor,
            correction,
            statistics,
        );
    }
}

/// Writes group `g`'s statistics (`batch_mean`, `batch_var`, `r`): as they
/// are, or with [`Statistics::Running`] `mean` and `var` as the running
/// statistics updated with them (`keep`, `factor`, `correction`: `1 - f`,
/// `f` and `n / (n - 1)` of [`RunningUpdate`](super::RunningUpdate), in the
/// composed update's order of operations).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn write_statistics<F: Float>(
    mean: &mut Tensor<F>,
    var: &mut Tensor<F>,
    rstd: &mut Tensor<F>,
    running_mean: &Tensor<F>,
    running_var: &Tensor<F>,
    g: usize,
    batch_mean: F,
    batch_var: F,
    r: F,
    keep: f32,
    factor: f32,
    correction: f32,
    #[comptime] statistics: Statistics,
) {
    if comptime!(statistics == Statistics::Running) {
        let (keep, factor) = (F::cast_from(keep), F::cast_from(factor));
        // Per group, or per channel for every sample's groups.
        let at = g % running_mean.len();
        mean[g] = running_mean[at] * keep + batch_mean * factor;
        var[g] = running_var[at] * keep + (batch_var * F::cast_from(correction)) * factor;
    } else {
        mean[g] = batch_mean;
        var[g] = batch_var;
    }
    rstd[g] = r;
}

/// The parameter index of vector `j` of group `g`: its position along the
/// row (in vectors), or its channel.
#[cube]
fn parameter(g: usize, j: usize, e: &Extents, #[comptime] layout: Layout) -> usize {
    if comptime!(layout.grouping.is_rows()) {
        j
    } else if comptime!(layout.grouping == Grouping::Channels) {
        g * e.k + (j % (e.k * e.s)) / e.s
    } else {
        (g % (e.c / e.k)) * e.k + j / e.s
    }
}

/// The parameters of vector `p` (as [`parameter`] numbers them): the `N`
/// values from `N * p` along a row, or channel `p`'s value broadcast.
#[cube]
pub fn parameters<F: Float, N: Size>(
    params: &Tensor<F>,
    p: usize,
    #[comptime] layout: Layout,
) -> Vector<F, N> {
    let mut out = Vector::<F, N>::new(F::new(0.0_f32));
    if comptime!(layout.grouping.is_rows()) {
        #[unroll]
        for i in 0..N::value() {
            out.insert(i, params[p * N::value() + i]);
        }
    } else {
        out = Vector::<F, N>::new(params[p]);
    }
    out
}

/// `xhat * gamma + beta` with the parameters of vector `p`.
#[cube]
pub fn affine<F: Float, N: Size>(
    xhat: Vector<F, N>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    p: usize,
    #[comptime] layout: Layout,
    #[comptime] has_gamma: bool,
    #[comptime] has_beta: bool,
) -> Vector<F, N> {
    let mut out = xhat;
    if has_gamma {
        out *= parameters::<F, N>(gamma, p, layout);
    }
    if has_beta {
        out += parameters::<F, N>(beta, p, layout);
    }
    out
}

/// `dy * gamma` with the parameters of vector `p` (`dy` without gamma).
#[cube]
pub fn weighted<F: Float, N: Size>(
    d: Vector<F, N>,
    gamma: &Tensor<F>,
    p: usize,
    #[comptime] layout: Layout,
    #[comptime] has_gamma: bool,
) -> Vector<F, N> {
    let mut dw = d;
    if has_gamma {
        dw *= parameters::<F, N>(gamma, p, layout);
    }
    dw
}

/// Most channels per group whose sums [`normalize_backward`] can take
/// itself ([`ParameterSums::PerChannel`]; the launch chooses how many it
/// does); groups of more take [`channel_parameter_grads`].
pub const MAX_SUMMED_CHANNELS: usize = 16;

/// Where [`normalize_backward`] leaves what the parameter gradients need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterSums {
    /// `Σ dy * xhat` and `Σ dy` of each of a group's `channels` channels
    /// in `dgamma[g * channels + ch]`, `dbeta[..]`, as team sums:
    /// BatchNorm's (one channel per group, the gradients themselves),
    /// InstanceNorm's and GroupNorm's (`[n, c]` partial sums for
    /// [`column_sums`]). One team sum per channel, written out
    /// ([`MAX_SUMMED_CHANNELS`] at most).
    PerChannel {
        /// Channels per group, `k`.
        channels: u32,
    },
    /// Each group's shift and shifted mean in `centers` (`[2 * groups]`),
    /// for [`row_parameter_grads`] or [`channel_parameter_grads`] to read
    /// `x` and `dy` again.
    Centers,
    /// Rows held in registers: each team sweeps `steps` rows (the launch's
    /// teams apart), keeps `Σ dy * xhat` and `Σ dy` per column for the
    /// values it holds, and the cube's teams add theirs into row `cube` of
    /// `dgamma` and `dbeta` (`[cubes, s]` partial sums for
    /// [`column_sums`]). `x` and `dy` are read once, and one launch fewer.
    Swept,
}

/// Backward of [`normalize_forward`], per group:
/// `dx = rstd * (dy * gamma - mean(dy * gamma) - xhat * mean(dy * gamma * xhat))`
/// (no `mean(dy * gamma)` term where the layout does not center), and what
/// the parameter gradients need, as `sums` says. Each team takes `steps`
/// groups (1 unless `sums` is [`ParameterSums::Swept`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn normalize_backward<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    rstd: &Tensor<F>,
    gamma: &Tensor<F>,
    dy: &Tensor<Vector<F, N>>,
    dx: &mut Tensor<Vector<F, N>>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    centers: &mut Tensor<F>,
    groups: u32,
    c: u32,
    k: u32,
    s: u32,
    #[comptime] layout: Layout,
    #[comptime] has_gamma: bool,
    #[comptime] sums: ParameterSums,
    #[comptime] steps: u32,
    #[comptime] units: u32,
    #[comptime] team: u32,
    #[comptime] held: u32,
    #[comptime] plane: u32,
    #[define(F)] _dtype: ElemType,
) {
    let (first, lane) = team_position(team);
    let e = extents(c, k, s);
    let size = group_size::<F, N>(x, &e, layout);
    let mut scratch = Shared::new_slice(2 * units as usize);
    // A sweep's sums per column: `Σ dy * xhat` in slots `..held`, `Σ dy`
    // in the next `held`.
    let mut columns = Array::<Vector<F, N>>::new(comptime!(2 * held.max(1)) as usize);
    #[unroll]
    for i in 0..comptime!(2 * held.max(1)) as usize {
        columns[i] = Vector::<F, N>::new(F::new(0.0_f32));
    }
    // Unrolled: lavapipe ran a swept backward 1.4x slower with a loop
    // around the barriers than with its one pass written out.
    let stride = (CUBE_COUNT_X * CUBE_COUNT_Y) as usize * comptime!(units / team) as usize;
    #[unroll]
    for step in 0..steps as usize {
        group_backward::<F, N>(
            x,
            rstd,
            gamma,
            dy,
            dx,
            dgamma,
            dbeta,
            centers,
            first + step * stride,
            lane,
            groups as usize,
            size,
            &e,
            &mut scratch,
            &mut columns,
            layout,
            has_gamma,
            sums,
            team,
            held,
            plane,
        );
    }
    if comptime!(sums == ParameterSums::Swept) {
        cube_columns::<F, N>(&columns, dgamma, dbeta, size, units, team, held);
    }
}

/// [`normalize_backward`] of group `g` by its team; a team without a group
/// (`g >= groups`) still takes part in the barriers, and adds zeros.
#[cube]
#[allow(clippy::too_many_arguments)]
fn group_backward<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    rstd: &Tensor<F>,
    gamma: &Tensor<F>,
    dy: &Tensor<Vector<F, N>>,
    dx: &mut Tensor<Vector<F, N>>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    centers: &mut Tensor<F>,
    g: usize,
    lane: usize,
    groups: usize,
    size: usize,
    e: &Extents,
    scratch: &mut Shared<[F]>,
    columns: &mut Array<Vector<F, N>>,
    #[comptime] layout: Layout,
    #[comptime] has_gamma: bool,
    #[comptime] sums: ParameterSums,
    #[comptime] team: u32,
    #[comptime] held: u32,
    #[comptime] plane: u32,
) {
    let active = g < groups;
    // Channels whose sums this kernel takes (0: none).
    let channels = comptime!(match sums {
        ParameterSums::PerChannel { channels } => channels,
        _ => 0,
    });
    let shift = group_shift::<F, N>(x, g, e, active, layout);
    let sv = Vector::<F, N>::new(shift);
    let mut r = F::new(0.0_f32);
    if active {
        r = rstd[g];
    }
    let mut values = Array::<Vector<F, N>>::new(comptime!(held.max(1)) as usize);
    hold::<F, N>(
        &mut values,
        x,
        g,
        lane,
        size,
        e,
        active,
        sv,
        layout,
        team,
        held,
    );
    // Past the group's end `dy` is 0: those slots add nothing to the sums.
    let mut grads = Array::<Vector<F, N>>::new(comptime!(held.max(1)) as usize);
    hold::<F, N>(
        &mut grads,
        dy,
        g,
        lane,
        size,
        e,
        active,
        Vector::<F, N>::new(F::new(0.0_f32)),
        layout,
        team,
        held,
    );
    let m = shifted_mean::<F, N>(
        x, &values, shift, g, lane, size, e, active, scratch, layout, team, held, plane,
    );

    // Σ dy·w, Σ dy·w·xhat, and per channel Σ dy·xhat, Σ dy.
    let (mv, rv) = (Vector::<F, N>::new(m), Vector::<F, N>::new(r));
    let mut sum_g = Vector::<F, N>::new(F::new(0.0_f32));
    let mut sum_gx = Vector::<F, N>::new(F::new(0.0_f32));
    let mut sum_dx = Vector::<F, N>::new(F::new(0.0_f32));
    let mut sum_d = Vector::<F, N>::new(F::new(0.0_f32));
    if comptime!(held > 0) {
        #[unroll]
        for i in 0..held as usize {
            let j = lane + i * team as usize;
            let h = ((values[i] - sv) - mv) * rv;
            let d = grads[i];
            let mut dw = d;
            if active && j < size {
                dw = weighted::<F, N>(d, gamma, parameter(g, j, e, layout), layout, has_gamma);
            }
            sum_g += dw;
            sum_gx += dw * h;
            sum_dx += d * h;
            sum_d += d;
            if comptime!(sums == ParameterSums::Swept) {
                columns[i] += d * h;
                columns[held as usize + i] += d;
            }
        }
        if comptime!(channels > 1) {
            // Each channel's sums over the slots that hold its values.
            #[unroll]
            for ch in 0..channels as usize {
                let mut acc_dx = Vector::<F, N>::new(F::new(0.0_f32));
                let mut acc_d = Vector::<F, N>::new(F::new(0.0_f32));
                #[unroll]
                for i in 0..held as usize {
                    // Past the group's end `j / s >= k`: no channel's.
                    if (lane + i * team as usize) / e.s == ch {
                        let d = grads[i];
                        acc_dx += d * (((values[i] - sv) - mv) * rv);
                        acc_d += d;
                    }
                }
                channel_sums::<F, N>(
                    acc_dx, acc_d, dgamma, dbeta, g, ch, active, lane, scratch, channels, team,
                    plane,
                );
            }
        }
    } else if comptime!(channels > 1) {
        // Channel by channel, so that each channel's sums come from the
        // same reads as the group's.
        #[unroll]
        for ch in 0..channels as usize {
            let mut acc_dx = Vector::<F, N>::new(F::new(0.0_f32));
            let mut acc_d = Vector::<F, N>::new(F::new(0.0_f32));
            if active {
                for j in range_stepped(ch * e.s + lane, (ch + 1) * e.s, team as usize) {
                    let index = value_index(j, g, e, layout);
                    let h = ((x[index] - sv) - mv) * rv;
                    let d = dy[index];
                    let dw =
                        weighted::<F, N>(d, gamma, parameter(g, j, e, layout), layout, has_gamma);
                    sum_g += dw;
                    sum_gx += dw * h;
                    acc_dx += d * h;
                    acc_d += d;
                }
            }
            channel_sums::<F, N>(
                acc_dx, acc_d, dgamma, dbeta, g, ch, active, lane, scratch, channels, team, plane,
            );
        }
    } else if active {
        for j in range_stepped(lane, size, team as usize) {
            let index = value_index(j, g, e, layout);
            let h = ((x[index] - sv) - mv) * rv;
            let d = dy[index];
            let dw = weighted::<F, N>(d, gamma, parameter(g, j, e, layout), layout, has_gamma);
            sum_g += dw;
            sum_gx += dw * h;
            sum_dx += d * h;
            sum_d += d;
        }
    }
    let size_f = F::cast_from((size * N::value()) as u32);
    let (total_g, total_gx) = team_sum2::<F, N>(sum_g, sum_gx, scratch, team, plane);
    let mut mean_g = F::new(0.0_f32);
    if comptime!(layout.centering == Centering::Mean) {
        mean_g = total_g / size_f;
    }
    let mean_gx = total_gx / size_f;
    if comptime!(channels == 1) {
        channel_sums::<F, N>(
            sum_dx, sum_d, dgamma, dbeta, g, 0, active, lane, scratch, 1u32, team, plane,
        );
    } else if comptime!(sums == ParameterSums::Centers) && active && lane == 0 {
        centers[2 * g] = shift;
        centers[2 * g + 1] = m;
    }

    if active {
        let (mean_gv, mean_gxv) = (Vector::<F, N>::new(mean_g), Vector::<F, N>::new(mean_gx));
        // A centred group of one value has `xhat = 0` whatever `x`: its
        // `dx` is exactly 0. The formula gives `r (dw - mean(dw))`, and a
        // GPU compiler that fuses `dy * gamma - mean` into one FMA leaves
        // the product's rounding there, times `r = 1 / sqrt(eps)` (seen on
        // an H100).
        let mut scale = rv;
        if comptime!(layout.centering == Centering::Mean) && size * N::value() == 1 {
            scale = Vector::<F, N>::new(F::new(0.0_f32));
        }
        if comptime!(held > 0) {
            #[unroll]
            for i in 0..held as usize {
                let j = lane + i * team as usize;
                if j < size {
                    let h = ((values[i] - sv) - mv) * rv;
                    let dw = weighted::<F, N>(
                        grads[i],
                        gamma,
                        parameter(g, j, e, layout),
                        layout,
                        has_gamma,
                    );
                    dx[value_index(j, g, e, layout)] = scale * ((dw - mean_gv) - h * mean_gxv);
                }
            }
        } else {
            for j in range_stepped(lane, size, team as usize) {
                let index = value_index(j, g, e, layout);
                let h = ((x[index] - sv) - mv) * rv;
                let dw = weighted::<F, N>(
                    dy[index],
                    gamma,
                    parameter(g, j, e, layout),
                    layout,
                    has_gamma,
                );
                dx[index] = scale * ((dw - mean_gv) - h * mean_gxv);
            }
        }
    }
}

/// Channel `ch` of group `g`'s `Σ dy * xhat` and `Σ dy` from each unit's
/// `dx_part` and `d_part`, summed over the team, to
/// `dgamma[g * channels + ch]` and `dbeta[..]`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn channel_sums<F: Float, N: Size>(
    dx_part: Vector<F, N>,
    d_part: Vector<F, N>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    g: usize,
    ch: usize,
    active: bool,
    lane: usize,
    scratch: &mut Shared<[F]>,
    #[comptime] channels: u32,
    #[comptime] team: u32,
    #[comptime] plane: u32,
) {
    let (total_dx, total_d) = team_sum2::<F, N>(dx_part, d_part, scratch, team, plane);
    if active && lane == 0 {
        dgamma[g * channels as usize + ch] = total_dx;
        dbeta[g * channels as usize + ch] = total_d;
    }
}

/// The end of a sweep ([`ParameterSums::Swept`]): the cube's teams hold
/// per-column sums for the same columns (vector `lane + i * team` of a
/// row in slot `i`); they meet in shared memory, and the first team writes
/// their totals to row `cube` of `dgamma` and `dbeta` (`[cubes, s]`).
#[cube]
fn cube_columns<F: Float, N: Size>(
    columns: &Array<Vector<F, N>>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    size: usize,
    #[comptime] units: u32,
    #[comptime] team: u32,
    #[comptime] held: u32,
) {
    let unit = UNIT_POS_X as usize;
    let cube = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let mut shared = Shared::<[Vector<F, N>]>::new_slice(comptime!(2 * units) as usize);
    #[unroll]
    for i in 0..held as usize {
        shared[unit] = columns[i];
        shared[units as usize + unit] = columns[held as usize + i];
        sync_cube();
        let j = unit + i * team as usize;
        if unit < team as usize && j < size {
            let mut total_gamma = shared[unit];
            let mut total_beta = shared[units as usize + unit];
            #[unroll]
            for t in 1..comptime!(units / team) as usize {
                total_gamma += shared[t * team as usize + unit];
                total_beta += shared[units as usize + t * team as usize + unit];
            }
            let at = (cube * size + j) * N::value();
            #[unroll]
            for v in 0..N::value() {
                dgamma[at + v] = total_gamma.extract(v);
                dbeta[at + v] = total_beta.extract(v);
            }
        }
        // Everyone has read the slot before the next one is written.
        sync_cube();
    }
}

/// For channel groups of several channels (GroupNorm): `dgamma`, `dbeta` of one
/// channel of one sample, `Σ dy * xhat` and `Σ dy` over its `s` values, one
/// team of units per channel and sample (consecutive units read consecutive
/// vectors of `N` values; `s_vectors = s / N`), several teams per cube for
/// small `s`; writes `[n, c]` partial sums for [`column_sums`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn channel_parameter_grads<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    rstd: &Tensor<F>,
    centers: &Tensor<F>,
    dy: &Tensor<Vector<F, N>>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    runs: u32,
    k: u32,
    s_vectors: u32,
    #[comptime] units: u32,
    #[comptime] team: u32,
    #[comptime] plane: u32,
    #[define(F)] _dtype: ElemType,
) {
    let (run, lane) = team_position(team);
    let active = run < runs as usize;
    let s = s_vectors as usize;
    let mut scratch = Shared::new_slice(2 * units as usize);
    let mut acc_gamma = Vector::<F, N>::new(F::new(0.0_f32));
    let mut acc_beta = Vector::<F, N>::new(F::new(0.0_f32));
    if active {
        // Channel `run % c` of sample `run / c` is in group `run / k`.
        let group = run / k as usize;
        let shift = Vector::<F, N>::new(centers[2 * group]);
        let m = Vector::<F, N>::new(centers[2 * group + 1]);
        let r = Vector::<F, N>::new(rstd[group]);
        for i in range_stepped(run * s + lane, (run + 1) * s, team as usize) {
            let d = dy[i];
            acc_gamma += d * (((x[i] - shift) - m) * r);
            acc_beta += d;
        }
    }
    let (total_gamma, total_beta) =
        team_sum2::<F, N>(acc_gamma, acc_beta, &mut scratch, team, plane);
    if active && lane == 0 {
        dgamma[run] = total_gamma;
        dbeta[run] = total_beta;
    }
}

/// Stage one of the row-wise `dgamma = Σ dy * xhat`, `dbeta = Σ dy` (sums
/// over rows, one value per column): unit `j` (of the cubes numbered
/// `y * CUBE_COUNT_X + x`) of block `b` (cube `z`) sums the `N`
/// columns of vector `j` over rows `b * rows_per_block ..`, reading
/// consecutive vectors across units (coalesced); cubes of
/// [`MAX_CUBE_SIZE`] units; `s_vectors = s / N`. Row `r`'s shift and
/// shifted mean are `centers[r * stride]` and the value after it
/// ([`normalize_backward`]'s centres, or the blocks' coefficients). Writes
/// `[blocks, s]` partial sums. The launch takes `N = 1` unless told
/// otherwise (see `row_sum_vector` in `cube.rs`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn row_parameter_grads<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    rstd: &Tensor<F>,
    centers: &Tensor<F>,
    dy: &Tensor<Vector<F, N>>,
    dgamma: &mut Tensor<Vector<F, N>>,
    dbeta: &mut Tensor<Vector<F, N>>,
    rows: u32,
    s_vectors: u32,
    rows_per_block: u32,
    stride: u32,
    #[define(F)] _dtype: ElemType,
) {
    let j = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X) as usize;
    let s = s_vectors as usize;
    if j >= s {
        terminate!();
    }
    let block = CUBE_POS_Z as usize;
    let first = block * rows_per_block as usize;
    let mut last = first + rows_per_block as usize;
    if last > rows as usize {
        last = rows as usize;
    }
    let mut acc_gamma = Vector::<F, N>::new(F::new(0.0_f32));
    let mut acc_beta = Vector::<F, N>::new(F::new(0.0_f32));
    for row in first..last {
        let i = row * s + j;
        let d = dy[i];
        let at = row * stride as usize;
        let centred = (x[i] - Vector::new(centers[at])) - Vector::new(centers[at + 1]);
        acc_gamma += d * (centred * Vector::new(rstd[row]));
        acc_beta += d;
    }
    dgamma[block * s + j] = acc_gamma;
    dbeta[block * s + j] = acc_beta;
}

/// Units per column of [`column_sums`] where the partial sums have more
/// rows than this, each over every `SUM_LANES`-th row.
pub const SUM_LANES: u32 = 8;

/// Units per column of [`column_sums`] for `rows` rows of partial sums:
/// [`SUM_LANES`], or one where no lane would add more than one row (a
/// LayerNorm over rows of 2,097,152 values has one row of partial sums
/// per 64 rows; lanes and a barrier for each 32 columns made 131,072
/// cubes, and lavapipe took 350 ms for the backward).
pub fn sum_lanes(rows: usize) -> u32 {
    if rows <= SUM_LANES as usize {
        1
    } else {
        SUM_LANES
    }
}

/// Stage two: `dgamma[j] = Σ_b partial_gamma[b, j]`, and `dbeta` from
/// `partial_beta` the same way, over the `blocks` rows of the partial
/// sums (`[blocks, s]`). One launch takes both (cubes `(x, y, 0)` gamma's,
/// `(x, y, 1)` beta's, tile `y * CUBE_COUNT_X + x` of columns): on wgpu
/// every launch is a task for CubeCL's server thread, a fixed cost that
/// small shapes measure. A cube of [`MAX_CUBE_SIZE`] units takes
/// `MAX_CUBE_SIZE / lanes` consecutive columns (a coalesced read per row);
/// with `lanes` ([`sum_lanes`]) units per column they split the rows and
/// meet in shared memory, so that no unit walks all the rows alone.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn column_sums<F: Float>(
    partial_gamma: &Tensor<F>,
    partial_beta: &Tensor<F>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    blocks: u32,
    s: u32,
    #[comptime] lanes: u32,
    #[define(F)] _dtype: ElemType,
) {
    let columns = comptime!((MAX_CUBE_SIZE / lanes) as usize);
    let (column, lane) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
    let tile = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let j = tile * columns + column;
    let s = s as usize;
    let beta = CUBE_POS_Z == 1;
    let mut total = F::new(0.0_f32);
    if j < s {
        for b in range_stepped(lane, blocks as usize, lanes as usize) {
            if beta {
                total += partial_beta[b * s + j];
            } else {
                total += partial_gamma[b * s + j];
            }
        }
    }
    if comptime!(lanes > 1) {
        let mut scratch = Shared::new_slice(comptime!(MAX_CUBE_SIZE as usize));
        scratch[lane * columns + column] = total;
        sync_cube();
        if lane == 0 {
            total = F::new(0.0_f32);
            #[unroll]
            for l in 0..lanes as usize {
                total += scratch[l * columns + column];
            }
        }
    }
    if lane == 0 && j < s {
        if beta {
            dbeta[j] = total;
        } else {
            dgamma[j] = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_HELD, MAX_HELD_FORWARD, PER_UNIT, Teams};

    /// `(team, per_cube, held)` for `groups` groups of `size` vectors, in
    /// the backward.
    fn teams(groups: usize, size: usize, per_unit: usize) -> (u32, u32, u32) {
        let Teams {
            team,
            per_cube,
            held,
        } = Teams::aiming_at(groups, size, per_unit, MAX_HELD);
        (team, per_cube, held)
    }

    #[test]
    fn teams_cover_short_long_and_streamed_groups() {
        let teams = |groups, size| teams(groups, size, PER_UNIT);
        // A transformer's rows of 128 values as 32 vectors of 4: eight
        // teams of one plane per cube, one vector each.
        assert_eq!(teams(4096, 32), (32, 8, 1));
        // Fewer groups than a cube could take: no empty teams beyond them.
        assert_eq!(teams(3, 4), (32, 3, 1));
        // 768 values as 192 vectors: four teams of 64, three vectors each.
        assert_eq!(teams(6, 192), (64, 4, 3));
        // Long groups: one cube, values held in registers up to 8 per unit.
        assert_eq!(teams(6, 768), (256, 1, 3));
        assert_eq!(teams(6, 2048), (256, 1, 8));
        // Past that the group is streamed.
        assert_eq!(teams(6, 2049), (256, 1, 0));
        assert_eq!(teams(128, 25_088), (256, 1, 0));
    }

    /// The forward holds `x` alone: up to 16 vectors per unit.
    #[test]
    fn the_forward_holds_groups_twice_as_long() {
        let forward = |groups, size| {
            let Teams { team, held, .. } =
                Teams::aiming_at(groups, size, PER_UNIT, MAX_HELD_FORWARD);
            (team, held)
        };
        assert_eq!(forward(6, 192), (64, 3));
        // GroupNorm [64, 128, 56, 56], 32 groups: 3,136 vectors of 4.
        assert_eq!(forward(2048, 3136), (256, 13));
        assert_eq!(forward(6, 4096), (256, 16));
        assert_eq!(forward(6, 4097), (256, 0));
    }

    /// `BURN_NORM_PER_UNIT=8`: 768-wide rows get one plane of 32 units
    /// holding six vectors each; short rows are unchanged.
    #[test]
    fn eight_per_unit_gives_768_wide_rows_one_plane() {
        assert_eq!(teams(4096, 192, 8), (32, 8, 6));
        assert_eq!(teams(4096, 32, 8), (32, 8, 1));
        assert_eq!(teams(6, 2048, 8), (256, 1, 8));
    }
}
