//! CubeCL kernels of the group normalization (wgpu, and any other CubeCL
//! runtime): the GPU counterpart of [`groups`](super::groups).
//!
//! The input is `[n, c, s]`, row-major; a *group* is one `[s]` row
//! (LayerNorm, `per_channel = false`) or one channel's `n` rows of `s`
//! values, `c * s` apart (training BatchNorm, `per_channel = true`).
//!
//! - [`normalize_forward`]: one cube per group. The group is read three
//!   times (shifted mean, variance, output) but only the first read comes
//!   from memory for a LayerNorm row; the output is written once.
//! - [`normalize_backward`]: one cube per group computes `dx` (and, per
//!   channel, `dgamma`, `dbeta`); for rows it also records each row's shift
//!   and mean for [`row_parameter_grads`], which sums `dgamma`, `dbeta` down
//!   the columns in blocks of rows, and [`column_sums`] adds the blocks.
//!   (Not Burn's `sum_dim`: on wgpu, Burn 0.22.1's returns 65,532 for the
//!   sum of 70,007 ones down a column.)
//!
//! Cubes have [`cube_size`] units, a power of two no larger than the group
//! (so short rows leave no unit idle), and reduce through shared memory,
//! several sums per tree where a pass needs several (every level of the
//! tree is a barrier). Groups are numbered `CUBE_POS_Y * CUBE_COUNT_X +
//! CUBE_POS_X` so that more than 65,535 of them fit one launch.

use cubecl::prelude::*;

/// Most units per cube.
pub const MAX_CUBE_SIZE: u32 = 256;

/// Units per cube for groups of `size` values: a power of two (the tree
/// reduction halves it), at least 32 (a GPU's smallest warp), at most
/// [`MAX_CUBE_SIZE`].
pub fn cube_size(size: usize) -> u32 {
    size.next_power_of_two().clamp(32, MAX_CUBE_SIZE as usize) as u32
}

/// Rows per block of [`row_parameter_grads`] for `rows` rows: 64, or more
/// so that there are at most [`MAX_BLOCKS`] blocks.
pub fn rows_per_block(rows: usize) -> usize {
    64.max(rows.div_ceil(MAX_BLOCKS))
}

/// Most blocks of [`row_parameter_grads`]: one grid dimension holds 65,535
/// cubes.
pub const MAX_BLOCKS: usize = 65_535;

/// Flat index of the `k`-th value of group `g`.
#[cube]
fn value_index(k: usize, g: usize, c: usize, s: usize, #[comptime] per_channel: bool) -> usize {
    if per_channel {
        (k / s) * c * s + g * s + k % s
    } else {
        g * s + k
    }
}

/// Values per group: a row, or a channel's `n` rows.
#[cube]
fn group_size<F: Float>(x: &Tensor<F>, c: usize, s: usize, #[comptime] per_channel: bool) -> usize {
    if per_channel {
        (x.len() / (c * s)) * s
    } else {
        s
    }
}

/// The group this cube works on.
#[cube]
fn group_index() -> usize {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize
}

/// Sum of `value` over the cube's units, returned to every unit.
#[cube]
fn cube_sum<F: Float>(value: F, scratch: &mut Shared<[F]>) -> F {
    let (total, _) = cube_sum2::<F>(value, F::new(0.0_f32), scratch);
    total
}

/// Sums of `a` and of `b` over the cube's units in one tree in shared
/// memory (one barrier per level for both), returned to every unit;
/// `scratch` holds `2 * CUBE_DIM_X` values.
///
/// No plane (subgroup) reduction: lavapipe, where CI runs these kernels,
/// has none through wgpu, and a path that no test runs is not shipped.
#[cube]
fn cube_sum2<F: Float>(a: F, b: F, scratch: &mut Shared<[F]>) -> (F, F) {
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    scratch[unit] = a;
    scratch[units + unit] = b;
    sync_cube();
    let mut width = units / 2;
    while width > 0 {
        if unit < width {
            let other_a = scratch[unit + width];
            let other_b = scratch[units + unit + width];
            scratch[unit] += other_a;
            scratch[units + unit] += other_b;
        }
        sync_cube();
        width /= 2;
    }
    let totals = (scratch[0], scratch[units]);
    // Everyone has read the totals before the scratch is written again.
    sync_cube();
    totals
}

/// Shift (the group's first value) and the mean of `x - shift`, as in the
/// CPU kernel: the two parts keep the digits of data far from zero.
#[cube]
fn shifted_mean<F: Float>(
    x: &Tensor<F>,
    g: usize,
    c: usize,
    s: usize,
    size: usize,
    scratch: &mut Shared<[F]>,
    #[comptime] per_channel: bool,
) -> (F, F) {
    let shift = x[value_index(0, g, c, s, per_channel)];
    let mut acc = F::new(0.0_f32);
    let mut k = UNIT_POS_X as usize;
    while k < size {
        acc += x[value_index(k, g, c, s, per_channel)] - shift;
        k += CUBE_DIM_X as usize;
    }
    let mean = cube_sum::<F>(acc, scratch) / F::cast_from(size as u32);
    (shift, mean)
}

/// `y = (x - mean) * rstd * gamma + beta` per group, with the biased
/// variance; writes each group's `mean`, `var` and `rstd`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn normalize_forward<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    y: &mut Tensor<F>,
    mean: &mut Tensor<F>,
    var: &mut Tensor<F>,
    rstd: &mut Tensor<F>,
    groups: u32,
    c: u32,
    s: u32,
    epsilon: f32,
    #[comptime] per_channel: bool,
    #[comptime] has_gamma: bool,
    #[comptime] has_beta: bool,
    #[comptime] units: u32,
    #[define(F)] _dtype: ElemType,
) {
    let g = group_index();
    if g >= groups as usize {
        terminate!();
    }
    let (c, s) = (c as usize, s as usize);
    let size = group_size::<F>(x, c, s, per_channel);
    let mut scratch = Shared::new_slice(2 * units as usize);
    let (shift, m) = shifted_mean::<F>(x, g, c, s, size, &mut scratch, per_channel);
    let mut acc = F::new(0.0_f32);
    let mut k = UNIT_POS_X as usize;
    while k < size {
        let d = (x[value_index(k, g, c, s, per_channel)] - shift) - m;
        acc += d * d;
        k += CUBE_DIM_X as usize;
    }
    let v = cube_sum::<F>(acc, &mut scratch) / F::cast_from(size as u32);
    let r = F::new(1.0_f32) / (v + F::cast_from(epsilon)).sqrt();

    let mut k = UNIT_POS_X as usize;
    while k < size {
        let i = value_index(k, g, c, s, per_channel);
        // The parameter of this value: along the row, or one per channel.
        let p = if per_channel { g } else { k };
        let mut out = ((x[i] - shift) - m) * r;
        if has_gamma {
            out *= gamma[p];
        }
        if has_beta {
            out += beta[p];
        }
        y[i] = out;
        k += CUBE_DIM_X as usize;
    }
    if UNIT_POS_X == 0 {
        mean[g] = shift + m;
        var[g] = v;
        rstd[g] = r;
    }
}

/// Backward of [`normalize_forward`], per group:
/// `dx = rstd * (dy * gamma - mean(dy * gamma) - xhat * mean(dy * gamma * xhat))`.
/// Per channel it also writes `dgamma[g] = Σ dy * xhat`, `dbeta[g] = Σ dy`;
/// per row it writes the row's shift and shifted mean to `centers`
/// (`[2 * groups]`) for [`row_parameter_grads`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn normalize_backward<F: Float>(
    x: &Tensor<F>,
    rstd: &Tensor<F>,
    gamma: &Tensor<F>,
    dy: &Tensor<F>,
    dx: &mut Tensor<F>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    centers: &mut Tensor<F>,
    groups: u32,
    c: u32,
    s: u32,
    #[comptime] per_channel: bool,
    #[comptime] has_gamma: bool,
    #[comptime] units: u32,
    #[define(F)] _dtype: ElemType,
) {
    let g = group_index();
    if g >= groups as usize {
        terminate!();
    }
    let (c, s) = (c as usize, s as usize);
    let size = group_size::<F>(x, c, s, per_channel);
    let mut scratch = Shared::new_slice(2 * units as usize);
    let (shift, m) = shifted_mean::<F>(x, g, c, s, size, &mut scratch, per_channel);
    let r = rstd[g];
    // Σ dy·w, Σ dy·w·xhat, and per channel Σ dy·xhat, Σ dy.
    let mut sum_g = F::new(0.0_f32);
    let mut sum_gx = F::new(0.0_f32);
    let mut sum_dx = F::new(0.0_f32);
    let mut sum_d = F::new(0.0_f32);
    let mut k = UNIT_POS_X as usize;
    while k < size {
        let i = value_index(k, g, c, s, per_channel);
        let p = if per_channel { g } else { k };
        let h = ((x[i] - shift) - m) * r;
        let d = dy[i];
        let mut dw = d;
        if has_gamma {
            dw *= gamma[p];
        }
        sum_g += dw;
        sum_gx += dw * h;
        sum_dx += d * h;
        sum_d += d;
        k += CUBE_DIM_X as usize;
    }
    let size_f = F::cast_from(size as u32);
    let (total_g, total_gx) = cube_sum2::<F>(sum_g, sum_gx, &mut scratch);
    let (mean_g, mean_gx) = (total_g / size_f, total_gx / size_f);
    if per_channel {
        let (total_dx, total_d) = cube_sum2::<F>(sum_dx, sum_d, &mut scratch);
        if UNIT_POS_X == 0 {
            dgamma[g] = total_dx;
            dbeta[g] = total_d;
        }
    } else if UNIT_POS_X == 0 {
        centers[2 * g] = shift;
        centers[2 * g + 1] = m;
    }

    let mut k = UNIT_POS_X as usize;
    while k < size {
        let i = value_index(k, g, c, s, per_channel);
        let p = if per_channel { g } else { k };
        let h = ((x[i] - shift) - m) * r;
        let mut dw = dy[i];
        if has_gamma {
            dw *= gamma[p];
        }
        dx[i] = r * ((dw - mean_g) - h * mean_gx);
        k += CUBE_DIM_X as usize;
    }
}

/// Stage one of the row-wise `dgamma = Σ dy * xhat`, `dbeta = Σ dy` (sums
/// over rows, one value per column): unit `j` of block `b` sums column `j`
/// over rows `b * rows_per_block ..`, reading consecutive columns across
/// units (coalesced); cubes of [`MAX_CUBE_SIZE`] units. Writes `[blocks, s]` partial sums.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn row_parameter_grads<F: Float>(
    x: &Tensor<F>,
    rstd: &Tensor<F>,
    centers: &Tensor<F>,
    dy: &Tensor<F>,
    dgamma: &mut Tensor<F>,
    dbeta: &mut Tensor<F>,
    rows: u32,
    s: u32,
    rows_per_block: u32,
    #[define(F)] _dtype: ElemType,
) {
    let j = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let s = s as usize;
    if j >= s {
        terminate!();
    }
    let block = CUBE_POS_Y as usize;
    let first = block * rows_per_block as usize;
    let mut last = first + rows_per_block as usize;
    if last > rows as usize {
        last = rows as usize;
    }
    let mut acc_gamma = F::new(0.0_f32);
    let mut acc_beta = F::new(0.0_f32);
    for row in first..last {
        let i = row * s + j;
        let d = dy[i];
        acc_gamma += d * (((x[i] - centers[2 * row]) - centers[2 * row + 1]) * rstd[row]);
        acc_beta += d;
    }
    dgamma[block * s + j] = acc_gamma;
    dbeta[block * s + j] = acc_beta;
}

/// Stage two: `out[j] = Σ_b partial[b, j]` over the `blocks` rows of
/// `partial` (`[blocks, s]`), one unit per column.
#[cube(launch)]
pub fn column_sums<F: Float>(
    partial: &Tensor<F>,
    out: &mut Tensor<F>,
    blocks: u32,
    s: u32,
    #[define(F)] _dtype: ElemType,
) {
    let j = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let s = s as usize;
    if j >= s {
        terminate!();
    }
    let mut total = F::new(0.0_f32);
    for b in 0..blocks as usize {
        total += partial[b * s + j];
    }
    out[j] = total;
}
