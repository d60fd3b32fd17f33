//! Groups too long for one cube's registers, in blocks: the GPU path for
//! a training BatchNorm's channels, for GroupNorm's and InstanceNorm's
//! long groups, and for LayerNorm's and RMSNorm's long rows where they are
//! few.
//!
//! One team per group (what [`normalize_forward`] does) would leave a GPU
//! mostly idle on these shapes and stream the group from memory once per
//! pass: BatchNorm `[64, 128, 56, 56]` is 128 channels of 200,704 values,
//! InstanceNorm `[1, 64, 256, 256]` 64 instances of 65,536, a diffusion
//! model's GroupNorm `[1, 128, 256, 256]` 32 groups of 262,144. Here a group
//! is cut into *runs* and each run into blocks of one cube's registers (8
//! to 64 values per unit, as large as still keeps a GPU full: the launch
//! chooses):
//!
//! - BatchNorm ([`Grouping::Channels`]): a group is one channel, and its
//!   one run is the channel's `n * s` values (`c * s` apart between
//!   samples; a block may span two samples).
//! - GroupNorm and InstanceNorm ([`Grouping::SampleChannels`]): a group is
//!   `k` channels of one sample, and each channel of it a run of `s`
//!   contiguous values, so that a block lies in one channel and its sums
//!   are that channel's (the parameter gradients are per channel).
//! - LayerNorm and RMSNorm ([`Grouping::Rows`]): a group is a row, and its
//!   one run the row. `gamma` and `beta` vary along it, so the backward's
//!   block sums weigh `dy` by `gamma` there and the apply stage scales by
//!   them; their gradients are column sums over the rows, which the
//!   launch takes after the three stages. RMSNorm's statistics are taken
//!   around 0 (no shift, no mean), the merge's formulas unchanged.
//!
//! Three launches:
//!
//! 1. [`block_sums`], one cube per block of each run: the block's values go
//!    to registers once, in vectors of up to 4; from them its mean (of
//!    `x - shift`, the shift being the group's first value, as everywhere)
//!    and, exactly around that mean, either its sum of squares (forward) or
//!    `Σ dy` and `Σ dy (x - shift - mean_b)` (backward).
//! 2. [`block_merge`], one cube per group: the blocks combined with Chan's
//!    formulas (`M2 = Σ M2_b + n_b (mean_b - mean)²`,
//!    `Σ dy xc = Σ P_b + (mean_b - mean) Σ dy_b`), no cancellation of large
//!    sums; writes the statistics (forward) or each run's parameter
//!    gradient sums (backward), and per run the coefficients of one affine
//!    map.
//! 3. [`block_apply`]: `out = C (x - shift - mean) + B [+ A dy]`, element
//!    by element over vectors of up to 4 values (a channel's `s` values are
//!    contiguous, so a vector never straddles two runs).
//!
//! Traffic: the forward reads `x` twice and writes `y` once, the backward
//! reads `x` and `dy` twice and writes `dx` once: what PyTorch's CUDA
//! BatchNorm moves, and one read of `x` fewer than a streamed group's
//! passes (mean, variance and output; mean, sums and `dx`).
//!
//! [`normalize_forward`]: super::cube_kernels::normalize_forward

use super::cube_kernels::{
    MAX_CUBE_SIZE, MAX_HELD, affine, team_sum, team_sum2, weighted, write_statistics,
};
use super::layout::{Centering, Grouping, Layout};
use super::statistics::Statistics;
use cubecl::prelude::*;

/// Values of the smallest block, 8 per unit.
pub const BLOCK_VALUES: usize = MAX_CUBE_SIZE as usize * MAX_HELD;

/// Per-run coefficients of [`block_apply`]: shift, mean, A, B, C.
pub const COEFFICIENTS: usize = 5;

/// Partial sums per block: mean, and M2 (forward) or `Σ dy` and `Σ dy xc`
/// (backward).
pub const PARTIALS: usize = 3;

/// Units per cube of [`block_merge`].
pub const MERGE_UNITS: u32 = 64;

/// Vectors per run: a channel's `n` rows of `s` (BatchNorm), or one
/// channel's `s` (GroupNorm, InstanceNorm).
#[cube]
fn run_size<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    c: usize,
    s: usize,
    #[comptime] grouping: Grouping,
) -> usize {
    if comptime!(grouping == Grouping::Channels) {
        (x.len() / (c * s)) * s
    } else {
        s
    }
}

/// Flat index of vector `j` of run `run` in an `[n, c, s]` tensor (`s` in
/// vectors): over samples, then positions, of channel `run` (BatchNorm);
/// position `j` of the `run`-th channel run (GroupNorm, InstanceNorm).
#[cube]
fn run_index(j: usize, run: usize, c: usize, s: usize, #[comptime] grouping: Grouping) -> usize {
    if comptime!(grouping == Grouping::Channels) {
        (j / s) * c * s + run * s + j % s
    } else {
        run * s + j
    }
}

/// Flat index of the first vector of the group of run `run`, whose first
/// value is the group's shift: runs are `k` per group.
#[cube]
fn group_start(run: usize, k: usize, s: usize, #[comptime] grouping: Grouping) -> usize {
    if comptime!(grouping == Grouping::Channels) {
        run * s
    } else {
        (run / k) * k * s
    }
}

/// The shift of run `run`'s group: its first value, or 0 where the layout
/// does not center (RMSNorm's mean square is taken around 0).
#[cube]
fn group_shift<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    run: usize,
    k: usize,
    s: usize,
    #[comptime] layout: Layout,
) -> F {
    let mut shift = F::new(0.0_f32);
    if comptime!(layout.centering == Centering::Mean) {
        shift = x[group_start(run, k, s, layout.grouping)].extract(0usize);
    }
    shift
}

/// Stage one: block `CUBE_POS_X` of run `CUBE_POS_Y`; writes
/// `partial[(run * blocks + b) * PARTIALS ..]`. With `backward`, `dy` is
/// read and the gradient sums written (of `dy gamma` along rows, where
/// `gamma` is read); else `dy` and `gamma` are not read. Values move as
/// vectors of `N` (a channel's runs of `s` values split into whole
/// vectors, `s_vectors = s / N`), each unit holding `held` vectors.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn block_sums<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    dy: &Tensor<Vector<F, N>>,
    gamma: &Tensor<F>,
    partial: &mut Tensor<F>,
    c: u32,
    k: u32,
    s_vectors: u32,
    #[comptime] layout: Layout,
    #[comptime] backward: bool,
    #[comptime] has_gamma: bool,
    #[comptime] held: u32,
    #[comptime] plane: u32,
    #[define(F)] _dtype: ElemType,
) {
    let grouping = comptime!(layout.grouping);
    // Per channel, gamma factors out of a run's sums (the merge applies
    // it); along a row it does not.
    let row_gamma = comptime!(has_gamma && grouping.is_rows());
    let (c, k, s) = (c as usize, k as usize, s_vectors as usize);
    let size = run_size::<F, N>(x, c, s, grouping);
    let vector = N::value().comptime();
    let held = held as usize;
    let block = comptime!(MAX_CUBE_SIZE as usize * held);
    let (b, run) = (CUBE_POS_X as usize, CUBE_POS_Y as usize);
    let blocks = CUBE_COUNT_X as usize;
    let lane = UNIT_POS_X as usize;
    let first = b * block;
    let mut count = size - first;
    if count > block {
        count = block;
    }
    let team = comptime!(MAX_CUBE_SIZE);
    let mut scratch = Shared::new_slice(2 * MAX_CUBE_SIZE as usize);
    let shift = group_shift::<F, N>(x, run, k, s, layout);
    let sv = Vector::<F, N>::new(shift);
    let zero = Vector::<F, N>::new(F::new(0.0_f32));
    // Slots past the block's end hold `shift` (and `dy = 0`): they add
    // nothing to any sum below.
    let mut values = Array::<Vector<F, N>>::new(held);
    let mut grads = Array::<Vector<F, N>>::new(held);
    #[unroll]
    for i in 0..held {
        let j = lane + i * team as usize;
        let mut v = sv;
        let mut d = zero;
        if j < count {
            let index = run_index(first + j, run, c, s, grouping);
            v = x[index];
            if comptime!(backward) {
                d = weighted::<F, N>(dy[index], gamma, first + j, layout, row_gamma);
            }
        }
        values[i] = v - sv;
        grads[i] = d;
    }
    let mut acc = zero;
    #[unroll]
    for i in 0..held {
        acc += values[i];
    }
    let m =
        team_sum::<F, N>(acc, &mut scratch, team, plane) / F::cast_from((count * vector) as u32);
    let mv = Vector::<F, N>::new(m);
    let mut acc_a = zero;
    let mut acc_b = zero;
    #[unroll]
    for i in 0..held {
        let xc = values[i] - mv;
        if comptime!(backward) {
            acc_a += grads[i];
            acc_b += grads[i] * xc;
        } else if lane + i * (team as usize) < count {
            acc_a += xc * xc;
        }
    }
    let (total_a, total_b) = team_sum2::<F, N>(acc_a, acc_b, &mut scratch, team, plane);
    if lane == 0 {
        let at = (run * blocks + b) * PARTIALS;
        partial[at] = m;
        partial[at + 1] = total_a;
        partial[at + 2] = total_b;
    }
}

/// The values of block `p` of a group's blocks, run by run: `full`, or
/// `last` for the last block of a run.
#[cube]
fn block_count<F: Float>(p: usize, blocks: usize, full: F, last: F) -> F {
    let mut count = full;
    if p % blocks + 1 == blocks {
        count = last;
    }
    count
}

/// The channel of run `run`: BatchNorm's run is its channel; GroupNorm's
/// runs are the channels of each sample in turn.
#[cube]
fn run_channel(run: usize, c: usize, #[comptime] grouping: Grouping) -> usize {
    if comptime!(grouping == Grouping::Channels) {
        run
    } else {
        run % c
    }
}

/// Gamma of run `run`'s channel, or 1 without gamma, and along rows
/// (whose gamma the block sums and the apply stage take).
#[cube]
fn run_gamma<F: Float>(
    gamma: &Tensor<F>,
    run: usize,
    c: usize,
    #[comptime] grouping: Grouping,
    #[comptime] has_gamma: bool,
) -> F {
    let mut w = F::new(1.0_f32);
    if comptime!(has_gamma && !grouping.is_rows()) {
        w = gamma[run_channel(run, c, grouping)];
    }
    w
}

/// Run `run`'s `Σ dy` and `Σ dy xc` (around the group's shifted mean `m`,
/// Chan's correction per block) over its blocks `first, first + step, ..`.
#[cube]
fn run_sums<F: Float>(
    partial: &Tensor<F>,
    run: usize,
    blocks: usize,
    m: F,
    first: usize,
    step: usize,
) -> (F, F) {
    let mut sum_d = F::new(0.0_f32);
    let mut sum_p = F::new(0.0_f32);
    for b in range_stepped(first, blocks, step) {
        let at = (run * blocks + b) * PARTIALS;
        sum_d += partial[at + 1];
        sum_p += partial[at + 2] + (partial[at] - m) * partial[at + 1];
    }
    (sum_d, sum_p)
}

/// Writes run `run`'s parameter gradient sums from its `Σ dy` and
/// `Σ dy xc` (not for rows: theirs are column sums, taken after), and
/// returns them weighted by its gamma, for the group's sums.
#[cube]
#[allow(clippy::too_many_arguments)]
fn record_run<F: Float>(
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    gamma: &Tensor<F>,
    run: usize,
    c: usize,
    r: F,
    sum_d: F,
    sum_p: F,
    #[comptime] grouping: Grouping,
    #[comptime] has_gamma: bool,
) -> (F, F) {
    if comptime!(!grouping.is_rows()) {
        dgamma[run] = r * sum_p;
        dbeta[run] = sum_d;
    }
    let w = run_gamma::<F>(gamma, run, c, grouping, has_gamma);
    (w * sum_d, w * sum_p)
}

/// Blocks per run past which [`block_merge`]'s backward adds a run's
/// blocks with the whole team (a team sum per run) rather than with one
/// unit per run: for BatchNorm's 98 blocks per channel one unit would wait
/// on 98 loads in turn.
const COOPERATIVE_BLOCKS: usize = 8;

/// Stage two, one cube of [`MERGE_UNITS`] per group (`k` runs of
/// `blocks` blocks each, runs of `run_values` values): merges the group's
/// partial sums. Forward: writes `mean`, `var`, `rstd` (see
/// [`write_statistics`]: `statistics` says whether `mean` and `var` are the
/// batch's or `running_mean` and `running_var` updated) and each run's
/// coefficients of `y = rstd gamma (x - shift - mean') + beta`. Backward
/// (`rstd` read, not written): writes each run's `dgamma = rstd Σ dy xc`
/// and `dbeta = Σ dy` (BatchNorm's gradients; GroupNorm's and
/// InstanceNorm's per sample and channel, `[n, c]`; nothing for rows)
/// and the coefficients of `dx = A dy + B + C (x - shift - mean')`, with
/// `A = rstd gamma`, `B = -rstd Σ gamma dy / N`,
/// `C = -rstd³ Σ gamma dy xc / N` over the group's `N` values (along rows
/// `A = rstd`, the apply stage multiplying by gamma). Where the layout
/// does not center, `shift = mean' = B = 0`: Chan's formulas around 0 give
/// the mean square and `Σ gamma dy x`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn block_merge<F: Float>(
    x: &Tensor<F>,
    partial: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    mean: &mut Tensor<F>,
    var: &mut Tensor<F>,
    rstd: &mut Tensor<F>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    coefficients: &mut Tensor<F>,
    running_mean: &Tensor<F>,
    running_var: &Tensor<F>,
    groups: u32,
    c: u32,
    k: u32,
    s: u32,
    blocks: u32,
    block_values: u32,
    run_values: u32,
    epsilon: f32,
    keep: f32,
    factor: f32,
    correction: f32,
    #[comptime] layout: Layout,
    #[comptime] backward: bool,
    #[comptime] has_gamma: bool,
    #[comptime] has_beta: bool,
    #[comptime] statistics: Statistics,
    #[comptime] plane: u32,
    #[define(F)] _dtype: ElemType,
) {
    let grouping = comptime!(layout.grouping);
    let centered = comptime!(layout.centering == Centering::Mean);
    let g = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    // The whole cube has the same group: it leaves together.
    if g >= groups as usize {
        terminate!();
    }
    let (c, k, s) = (c as usize, k as usize, s as usize);
    let blocks = blocks as usize;
    let unit = UNIT_POS_X as usize;
    let team = comptime!(MERGE_UNITS);
    let mut scratch = Shared::<[F]>::new_slice(2 * MERGE_UNITS as usize);
    let first_run = g * k;
    let mut shift = F::new(0.0_f32);
    if comptime!(centered) {
        shift = x[group_start(first_run, k, s, grouping)];
    }
    let full = F::cast_from(block_values);
    let run_values = run_values as usize;
    let last = F::cast_from((run_values - (blocks - 1) * block_values as usize) as u32);
    let n = F::cast_from((k * run_values) as u32);
    let base = first_run * blocks * PARTIALS;
    let zero = Vector::<F, Const<1>>::new(F::new(0.0_f32));
    let mut m = F::new(0.0_f32);
    if comptime!(centered) {
        let mut counted = zero;
        for p in range_stepped(unit, k * blocks, team as usize) {
            counted += Vector::<F, Const<1>>::new(
                block_count::<F>(p, blocks, full, last) * partial[base + p * PARTIALS],
            );
        }
        m = team_sum::<F, Const<1>>(counted, &mut scratch, team, plane) / n;
    }
    if comptime!(backward) {
        let r = rstd[g];
        // Each run's `Σ dy` and `Σ dy xc`: with many blocks per run (a
        // BatchNorm channel, a long InstanceNorm instance) the team adds
        // each run's blocks together, one run after the other; with few,
        // each unit adds its runs' blocks alone.
        let mut acc_d = zero;
        let mut acc_p = zero;
        if blocks > COOPERATIVE_BLOCKS * k {
            for i in 0..k {
                let run = first_run + i;
                let (part_d, part_p) = run_sums::<F>(partial, run, blocks, m, unit, team as usize);
                let (sum_d, sum_p) = team_sum2::<F, Const<1>>(
                    Vector::new(part_d),
                    Vector::new(part_p),
                    &mut scratch,
                    team,
                    plane,
                );
                if unit == 0 {
                    let (d, p) = record_run::<F>(
                        dgamma, dbeta, gamma, run, c, r, sum_d, sum_p, grouping, has_gamma,
                    );
                    acc_d += Vector::new(d);
                    acc_p += Vector::new(p);
                }
            }
        } else {
            for i in range_stepped(unit, k, team as usize) {
                let run = first_run + i;
                let (sum_d, sum_p) = run_sums::<F>(partial, run, blocks, m, 0, 1);
                let (d, p) = record_run::<F>(
                    dgamma, dbeta, gamma, run, c, r, sum_d, sum_p, grouping, has_gamma,
                );
                acc_d += Vector::new(d);
                acc_p += Vector::new(p);
            }
        }
        let (sum_d, sum_p) = team_sum2::<F, Const<1>>(acc_d, acc_p, &mut scratch, team, plane);
        let mut b = F::new(0.0_f32);
        if comptime!(centered) {
            b = -r * sum_d / n;
        }
        for i in range_stepped(unit, k, team as usize) {
            let run = first_run + i;
            let w = run_gamma::<F>(gamma, run, c, grouping, has_gamma);
            let at = run * COEFFICIENTS;
            coefficients[at] = shift;
            coefficients[at + 1] = m;
            coefficients[at + 2] = r * w;
            coefficients[at + 3] = b;
            coefficients[at + 4] = -r * r * r * sum_p / n;
        }
    } else {
        let mut spread = zero;
        for p in range_stepped(unit, k * blocks, team as usize) {
            let gap = partial[base + p * PARTIALS] - m;
            spread += Vector::<F, Const<1>>::new(
                partial[base + p * PARTIALS + 1]
                    + block_count::<F>(p, blocks, full, last) * gap * gap,
            );
        }
        let v = team_sum::<F, Const<1>>(spread, &mut scratch, team, plane) / n;
        let r = F::new(1.0_f32) / (v + F::cast_from(epsilon)).sqrt();
        if unit == 0 {
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
        for i in range_stepped(unit, k, team as usize) {
            let run = first_run + i;
            let w = run_gamma::<F>(gamma, run, c, grouping, has_gamma);
            let mut b0 = F::new(0.0_f32);
            if comptime!(has_beta && !grouping.is_rows()) {
                b0 = beta[run_channel(run, c, grouping)];
            }
            let at = run * COEFFICIENTS;
            coefficients[at] = shift;
            coefficients[at + 1] = m;
            coefficients[at + 2] = F::new(0.0_f32);
            coefficients[at + 3] = b0;
            coefficients[at + 4] = r * w;
        }
    }
}

/// Stage three: `out = C (x - shift - mean') + B`, plus `A dy` with
/// `backward`, over vectors of `N` values, with the coefficients of the
/// vector's run; `s_vectors = s / N`. Along rows, `gamma` and `beta` at
/// the vector's position too: `out = C gamma (..) + B + beta` forward,
/// `A gamma dy` backward (`gamma`, `beta` are not read otherwise).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn block_apply<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    dy: &Tensor<Vector<F, N>>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    coefficients: &Tensor<F>,
    out: &mut Tensor<Vector<F, N>>,
    c: u32,
    s_vectors: u32,
    #[comptime] layout: Layout,
    #[comptime] backward: bool,
    #[comptime] has_gamma: bool,
    #[comptime] has_beta: bool,
    #[define(F)] _dtype: ElemType,
) {
    let grouping = comptime!(layout.grouping);
    let rows = comptime!(grouping.is_rows());
    let i = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X) as usize;
    if i >= out.len() {
        terminate!();
    }
    let mut run = i / s_vectors as usize;
    if comptime!(grouping == Grouping::Channels) {
        run %= c as usize;
    }
    let at = run * COEFFICIENTS;
    let centred = (x[i] - Vector::new(coefficients[at])) - Vector::new(coefficients[at + 1]);
    let scaled = centred * Vector::new(coefficients[at + 4]);
    let bias = Vector::new(coefficients[at + 3]);
    let mut value = scaled + bias;
    // Along a row, the parameters at the vector's position.
    if comptime!(backward) {
        let mut a = dy[i] * Vector::new(coefficients[at + 2]);
        if comptime!(rows && has_gamma) {
            a = weighted::<F, N>(a, gamma, i % s_vectors as usize, layout, true);
        }
        value += a;
    } else if comptime!(rows) {
        let p = i % s_vectors as usize;
        value = affine::<F, N>(scaled, gamma, beta, p, layout, has_gamma, has_beta) + bias;
    }
    out[i] = value;
}
