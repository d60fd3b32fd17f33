//! BatchNorm's long channels on CubeCL, in blocks: the GPU path for a
//! channel of more values than one cube holds in registers.
//!
//! One cube per channel (what [`normalize_forward`] does for every group)
//! would leave a GPU mostly idle on BatchNorm's shapes: `[64, 128, 56, 56]`
//! is 128 channels of 200,704 values, `[128, 16, 28, 28]` 16 of 100,352.
//! Here each channel is cut into blocks of [`BLOCK_VALUES`]; three launches:
//!
//! 1. [`channel_block_sums`], one cube per block and channel: the block's
//!    values go to registers once, in vectors of up to 4 as in stage 3; from them its mean (of `x - shift`, the
//!    shift being the channel's first value, as everywhere) and, exactly
//!    around that mean, either its sum of squares (forward) or `Σ dy` and
//!    `Σ dy (x - shift - mean_b)` (backward).
//! 2. [`channel_merge`], one unit per channel: the blocks combined with
//!    Chan's formulas (`M2 = Σ M2_b + n_b (mean_b - mean)²`,
//!    `Σ dy xc = Σ P_b + (mean_b - mean) Σ dy_b`), no cancellation of large
//!    sums; writes the statistics or `dgamma`/`dbeta`, and per channel the
//!    coefficients of one affine map.
//! 3. [`channel_apply`]: `out = C (x - shift - mean) + B [+ A dy]`, element
//!    by element over vectors of up to 4 values (a channel's `s` values are
//!    contiguous, so a vector never straddles two channels).
//!
//! Traffic: the forward reads `x` twice and writes `y` once, the backward
//! reads `x` and `dy` twice and writes `dx` once: what PyTorch's CUDA
//! BatchNorm moves.
//!
//! [`normalize_forward`]: super::cube_kernels::normalize_forward

use super::cube_kernels::{MAX_CUBE_SIZE, MAX_HELD, team_sum, team_sum2};
use cubecl::prelude::*;

/// Values per block: a full cube's registers.
pub const BLOCK_VALUES: usize = MAX_CUBE_SIZE as usize * MAX_HELD;

/// Per-channel coefficients of [`channel_apply`]: shift, mean, A, B, C.
pub const COEFFICIENTS: usize = 5;

/// Partial sums per block: mean, and M2 (forward) or `Σ dy` and `Σ dy xc`
/// (backward).
pub const PARTIALS: usize = 3;

/// Flat index of value `j` (over samples, then positions) of channel `ch`
/// in an `[n, c, s]` tensor.
#[cube]
fn channel_index(j: usize, ch: usize, c: usize, s: usize) -> usize {
    (j / s) * c * s + ch * s + j % s
}

/// Stage one: block `CUBE_POS_X` of channel `CUBE_POS_Y`; writes
/// `partial[(ch * blocks + b) * PARTIALS ..]`. With `backward`, `dy` is
/// read and the gradient sums written; else `dy` is not read. Values move
/// as vectors of `N` (a channel's runs of `s` values split into whole
/// vectors, `s_vectors = s / N`), each unit holding [`MAX_HELD`] values.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn channel_block_sums<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    dy: &Tensor<Vector<F, N>>,
    partial: &mut Tensor<F>,
    c: u32,
    s_vectors: u32,
    #[comptime] backward: bool,
    #[comptime] plane: u32,
    #[define(F)] _dtype: ElemType,
) {
    let (c, s) = (c as usize, s_vectors as usize);
    // Vectors per channel, per block, and in this block.
    let size = (x.len() / (c * s)) * s;
    let vector = N::value().comptime();
    let held = comptime!(MAX_HELD / vector);
    let block = comptime!(BLOCK_VALUES / vector);
    let (b, ch) = (CUBE_POS_X as usize, CUBE_POS_Y as usize);
    let blocks = CUBE_COUNT_X as usize;
    let lane = UNIT_POS_X as usize;
    let first = b * block;
    let mut count = size - first;
    if count > block {
        count = block;
    }
    let team = comptime!(MAX_CUBE_SIZE);
    let mut scratch = Shared::new_slice(2 * MAX_CUBE_SIZE as usize);
    let shift = x[channel_index(0, ch, c, s)].extract(0usize);
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
            let index = channel_index(first + j, ch, c, s);
            v = x[index];
            if comptime!(backward) {
                d = dy[index];
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
        let at = (ch * blocks + b) * PARTIALS;
        partial[at] = m;
        partial[at + 1] = total_a;
        partial[at + 2] = total_b;
    }
}

/// Stage two, one unit per channel: merges the channel's `blocks` partial
/// sums. Forward: writes `mean`, `var`, `rstd` and the coefficients of
/// `y = rstd gamma (x - shift - mean') + beta`. Backward (`rstd` read, not
/// written): writes `dgamma = rstd Σ dy xc`, `dbeta = Σ dy` and those of
/// `dx = A dy + B + C (x - shift - mean')`, with `A = rstd gamma`,
/// `B = -A Σ dy / N`, `C = -A rstd² Σ dy xc / N`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn channel_merge<F: Float>(
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
    c: u32,
    s: u32,
    blocks: u32,
    epsilon: f32,
    #[comptime] backward: bool,
    #[comptime] has_gamma: bool,
    #[comptime] has_beta: bool,
    #[define(F)] _dtype: ElemType,
) {
    let ch = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let (c, s) = (c as usize, s as usize);
    if ch >= c {
        terminate!();
    }
    let blocks = blocks as usize;
    let size = (x.len() / (c * s)) * s;
    let shift = x[channel_index(0, ch, c, s)];
    let full = F::cast_from(BLOCK_VALUES as u32);
    let last = F::cast_from((size - (blocks - 1) * BLOCK_VALUES) as u32);
    let n = F::cast_from(size as u32);
    let base = ch * blocks * PARTIALS;
    let mut weighted = F::new(0.0_f32);
    for b in 0..blocks {
        let mut count = full;
        if b + 1 == blocks {
            count = last;
        }
        weighted += count * partial[base + b * PARTIALS];
    }
    let m = weighted / n;
    let mut sum_a = F::new(0.0_f32);
    let mut sum_b = F::new(0.0_f32);
    for b in 0..blocks {
        let at = base + b * PARTIALS;
        let gap = partial[at] - m;
        if comptime!(backward) {
            sum_a += partial[at + 1];
            sum_b += partial[at + 2] + gap * partial[at + 1];
        } else {
            let mut count = full;
            if b + 1 == blocks {
                count = last;
            }
            sum_a += partial[at + 1] + count * gap * gap;
        }
    }
    let mut g = F::new(1.0_f32);
    if comptime!(has_gamma) {
        g = gamma[ch];
    }
    let at = ch * COEFFICIENTS;
    coefficients[at] = shift;
    coefficients[at + 1] = m;
    if comptime!(backward) {
        let r = rstd[ch];
        dgamma[ch] = r * sum_b;
        dbeta[ch] = sum_a;
        let a = r * g;
        coefficients[at + 2] = a;
        coefficients[at + 3] = -a * sum_a / n;
        coefficients[at + 4] = -a * r * r * sum_b / n;
    } else {
        let v = sum_a / n;
        let r = F::new(1.0_f32) / (v + F::cast_from(epsilon)).sqrt();
        mean[ch] = shift + m;
        var[ch] = v;
        rstd[ch] = r;
        let mut b0 = F::new(0.0_f32);
        if comptime!(has_beta) {
            b0 = beta[ch];
        }
        coefficients[at + 2] = F::new(0.0_f32);
        coefficients[at + 3] = b0;
        coefficients[at + 4] = r * g;
    }
}

/// Stage three: `out = C (x - shift - mean') + B`, plus `A dy` with
/// `backward`, over vectors of `N` values; `s_vectors = s / N`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn channel_apply<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    dy: &Tensor<Vector<F, N>>,
    coefficients: &Tensor<F>,
    out: &mut Tensor<Vector<F, N>>,
    c: u32,
    s_vectors: u32,
    #[comptime] backward: bool,
    #[define(F)] _dtype: ElemType,
) {
    let i = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X) as usize;
    if i >= out.len() {
        terminate!();
    }
    let ch = (i / s_vectors as usize) % c as usize;
    let at = ch * COEFFICIENTS;
    let centred = (x[i] - Vector::new(coefficients[at])) - Vector::new(coefficients[at + 1]);
    let mut value = centred * Vector::new(coefficients[at + 4]) + Vector::new(coefficients[at + 3]);
    if comptime!(backward) {
        value += dy[i] * Vector::new(coefficients[at + 2]);
    }
    out[i] = value;
}
