//! The backward pass: each group's sums and parameter gradients, then `dx`.

use super::chunks::for_each_chunk;
use super::long_groups;
use super::real::Real;
use super::shared::{Shared, written};
use super::sums::{RowTerms, sum, sum2};
use super::{
    BACKWARD_BLOCK_VALUES, BLOCK_GROUPS, GroupPass, along_row, group_mean, groups_per_block, simd,
};
use crate::backend::layout::{Centering, Groups};
use std::ops::Range;

/// The backward pass over a chunk of groups.
#[derive(Clone, Copy)]
struct Backward<'a, T> {
    x: &'a [T],
    groups: Groups,
    rstd: &'a [T],
    gamma: Option<&'a [T]>,
    size: T,
    /// `dx` is written over `dy`.
    in_place: bool,
    input: Shared<T>,
    out: Shared<T>,
}

/// A task's own sums of the parameter gradients (f64, added up across
/// tasks at the end), and a row of ones.
struct Partials<T> {
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
    /// Along rows: the current block's sums ([`PARAM_ROWS`]), in `T`.
    ///
    /// [`PARAM_ROWS`]: super::PARAM_ROWS
    block_dgamma: Vec<T>,
    block_dbeta: Vec<T>,
    /// Along a row without gamma the weights are ones (one shared row, so
    /// that both cases use the same vectorized loops).
    ones: Vec<T>,
}

/// What the first pass over a group leaves for the second.
#[derive(Clone, Copy)]
pub(super) struct GroupSums<T> {
    /// The group's shift and mean of `x - shift` ([`group_mean`]).
    pub shift: T,
    pub m: T,
    /// The group's `rstd`.
    pub r: T,
    /// `mean(g)` (0 without centering) and `mean(g * xhat)`.
    mean_g: T,
    mean_gx: T,
}

impl<T: Real> GroupSums<T> {
    /// A group's sums from `Σ g` and `Σ g * xhat` over its `size` values.
    #[inline(always)]
    pub(super) fn new(
        (shift, m, r): (T, T, T),
        (sum_g, sum_gx): (T, T),
        size: T,
        centering: Centering,
    ) -> Self {
        GroupSums {
            shift,
            m,
            r,
            mean_g: match centering {
                Centering::Mean => sum_g / size,
                // Without centering the output does not depend on the mean.
                Centering::None => T::ZERO,
            },
            mean_gx: sum_gx / size,
        }
    }

    /// `dx` of value `v` with upstream gradient `d` and weight `w`.
    #[inline(always)]
    pub(super) fn dx(&self, v: T, d: T, w: T) -> T {
        let h = ((v - self.shift) - self.m) * self.r;
        self.r * ((d * w - self.mean_g) - h * self.mean_gx)
    }
}

impl<T: Real> GroupPass for Backward<'_, T> {
    type State = Partials<T>;

    fn groups(&self) -> Groups {
        self.groups
    }

    #[inline(always)]
    fn with_groups(&self, groups: Groups) -> Self {
        Backward { groups, ..*self }
    }

    /// Short groups go in blocks, as in the forward: the means of up to
    /// [`BLOCK_GROUPS`] groups, then their sums, then their `dx`. Group by
    /// group, each stage waited on the horizontal sum and division before
    /// it (a row of 128 values is a few dozen instructions per stage); in a
    /// block the groups' chains overlap. Same operations, same results.
    #[inline(always)]
    fn run(&self, state: &mut Partials<T>, groups: Range<usize>) {
        let s = self.groups.s;
        let row = along_row(&self.groups);
        if row && self.gamma.is_none() && state.ones.len() != s {
            state.ones.clear();
            state.ones.resize(s, T::ONE);
        }
        if row && state.block_dgamma.len() != s {
            state.block_dgamma = vec![T::ZERO; s];
            state.block_dbeta = vec![T::ZERO; s];
        }
        let param_rows = self.groups.param_rows();
        let Partials {
            dgamma,
            dbeta,
            block_dgamma,
            block_dbeta,
            ones,
        } = state;
        let w_row: &[T] = self.gamma.filter(|_| row).unwrap_or(ones);
        let per_block = groups_per_block(self.groups.size(), BACKWARD_BLOCK_VALUES);
        let zero = (T::ZERO, T::ZERO);
        let mut means = [zero; BLOCK_GROUPS];
        let mut sums = [GroupSums {
            shift: T::ZERO,
            m: T::ZERO,
            r: T::ZERO,
            mean_g: T::ZERO,
            mean_gx: T::ZERO,
        }; BLOCK_GROUPS];
        for first in groups.clone().step_by(per_block) {
            let block = first..(first + per_block).min(groups.end);
            for (g, mean) in block.clone().zip(&mut means) {
                *mean = group_mean(self.x, &self.groups, g);
            }
            for ((g, &mean), sums) in block.clone().zip(&means).zip(&mut sums) {
                if !row {
                    *sums = self.channel_sums(g, mean, dgamma, dbeta);
                    continue;
                }
                *sums = self.row_sums(g, mean, w_row, block_dgamma, block_dbeta);
                // Blocks end at multiples of `param_rows` or at the chunk's
                // end, which is one too, or the end of all rows.
                if (g + 1) % param_rows == 0 || g + 1 == groups.end {
                    drain(block_dgamma, dgamma);
                    drain(block_dbeta, dbeta);
                }
            }
            for (g, sums) in block.zip(&sums) {
                if row {
                    self.write_row(g, sums, w_row);
                } else {
                    self.write_channels(g, sums);
                }
            }
        }
    }
}

/// Adds a block's sums to the f64 sums and clears them for the next block.
#[inline(always)]
pub(super) fn drain<T: Real>(block: &mut [T], total: &mut [f64]) {
    for (part, total) in block.iter_mut().zip(total) {
        *total += part.to_f64();
        *part = T::ZERO;
    }
}

impl<T: Real> Backward<'_, T> {
    /// Pass 1 over row `g` (LayerNorm, RMSNorm: one contiguous row, `w`
    /// along it), reading only: its sums, and its terms of the parameter
    /// gradients added to the block's `dgamma`, `dbeta`.
    #[inline(always)]
    fn row_sums(
        &self,
        g: usize,
        (shift, m): (T, T),
        w: &[T],
        dgamma: &mut [T],
        dbeta: &mut [T],
    ) -> GroupSums<T> {
        let s = self.groups.s;
        let r = self.rstd[g];
        let terms = RowTerms {
            x: &self.x[g * s..(g + 1) * s],
            // SAFETY: no one writes this group's values during this pass.
            dy: unsafe { self.input.range(g * s, s) as &[T] },
            w,
            shift,
            m,
            r,
        };
        let sums = T::row_sums(terms, dgamma, dbeta);
        self.group_sums(shift, m, r, sums.g, sums.gx)
    }

    /// Pass 1 over channel group `g` (BatchNorm, GroupNorm: runs of `s`
    /// values, one weight per run), as [`Self::row_sums`].
    #[inline(always)]
    fn channel_sums(
        &self,
        g: usize,
        (shift, m): (T, T),
        dgamma: &mut [f64],
        dbeta: &mut [f64],
    ) -> GroupSums<T> {
        let Self {
            x,
            groups,
            rstd,
            gamma,
            ref input,
            ..
        } = *self;
        let len = groups.segment_len();
        let r = rstd[g];
        let (mut sum_g, mut sum_gx) = (T::ZERO, T::ZERO);
        for start in groups.segments(g) {
            let segment = &x[start..start + len];
            // SAFETY: no one writes this group's values during this pass.
            let dy = unsafe { input.range(start, len) as &[T] };
            let first = groups.channel(start);
            let runs = segment.chunks(groups.s).zip(dy.chunks(groups.s));
            for (ch, (run, dy)) in (first..).zip(runs) {
                let w = gamma.map_or(T::ONE, |w| w[ch]);
                let dot = sum2(run, dy, |v, d| d * (((v - shift) - m) * r));
                let total = sum(dy, |d| d);
                sum_g = sum_g + w * total;
                sum_gx = sum_gx + w * dot;
                dgamma[ch] += dot.to_f64();
                dbeta[ch] += total.to_f64();
            }
        }
        self.group_sums(shift, m, r, sum_g, sum_gx)
    }

    /// A group's [`GroupSums`] from `Σ g` and `Σ g * xhat`.
    #[inline(always)]
    fn group_sums(&self, shift: T, m: T, r: T, sum_g: T, sum_gx: T) -> GroupSums<T> {
        GroupSums::new(
            (shift, m, r),
            (sum_g, sum_gx),
            self.size,
            self.groups.layout.centering,
        )
    }

    /// Pass 2 over row `g`: `dx`.
    #[inline(always)]
    fn write_row(&self, g: usize, sums: &GroupSums<T>, w: &[T]) {
        let s = self.groups.s;
        let span = DxSpan {
            x: &self.x[g * s..(g + 1) * s],
            begin: g * s,
            input: self.input,
            out: self.out,
            in_place: self.in_place,
        };
        // SAFETY: the rows of distinct groups are disjoint.
        unsafe { span.write(sums, w) }
    }

    /// Pass 2 over channel group `g`, in runs of one weight per channel.
    #[inline(always)]
    fn write_channels(&self, g: usize, sums: &GroupSums<T>) {
        let Self {
            x,
            groups,
            gamma,
            in_place,
            ref input,
            ref out,
            ..
        } = *self;
        let (len, s) = (groups.segment_len(), groups.s);
        for start in groups.segments(g) {
            let first = groups.channel(start);
            for (i, offset) in (0..len).step_by(s.max(1)).enumerate() {
                let begin = start + offset;
                let values = &x[begin..begin + s];
                let w = gamma.map_or(T::ONE, |w| w[first + i]);
                if in_place {
                    // SAFETY: the segments of distinct groups are disjoint.
                    let dx = unsafe { out.range(begin, s) };
                    for (slot, &v) in dx.iter_mut().zip(values) {
                        *slot = sums.dx(v, *slot, w);
                    }
                } else {
                    // SAFETY: disjoint segments, and `dy` is a different
                    // buffer from `dx` here.
                    let (dx, dy) =
                        unsafe { (out.range_uninit(begin, s), input.range(begin, s) as &[T]) };
                    for ((slot, &v), &d) in dx.iter_mut().zip(values).zip(dy) {
                        slot.write(sums.dx(v, d, w));
                    }
                }
            }
        }
    }
}

/// A contiguous run of one group's values and where its `dx` goes.
pub(super) struct DxSpan<'a, T> {
    /// The run's `x`, from `begin` of the input.
    pub x: &'a [T],
    pub begin: usize,
    /// `dy`, and `dx` (the same buffer when `in_place`).
    pub input: Shared<T>,
    pub out: Shared<T>,
    pub in_place: bool,
}

impl<T: Real> DxSpan<'_, T> {
    /// Writes the run's `dx` with its group's `sums` and the weights `w`
    /// along it, each value after its `dy` was read.
    ///
    /// # Safety
    /// No other task reads or writes the run's `dy` and `dx` meanwhile.
    #[inline(always)]
    pub(super) unsafe fn write(&self, sums: &GroupSums<T>, w: &[T]) {
        let (begin, len) = (self.begin, self.x.len());
        if self.in_place {
            // SAFETY: the caller's promise.
            let dx = unsafe { self.out.range(begin, len) };
            for ((slot, &v), &w) in dx.iter_mut().zip(self.x).zip(w) {
                *slot = sums.dx(v, *slot, w);
            }
        } else {
            // SAFETY: the caller's promise, and `dy` is a different buffer
            // from `dx` here.
            let (dx, dy) = unsafe {
                (
                    self.out.range_uninit(begin, len),
                    self.input.range(begin, len) as &[T],
                )
            };
            for (((slot, &v), &d), &w) in dx.iter_mut().zip(self.x).zip(dy).zip(w) {
                slot.write(sums.dx(v, d, w));
            }
        }
    }
}

/// Backward of [`forward`](super::forward): from `x`, each group's `rstd`
/// and the upstream gradient `dy`, returns `(dx, dgamma, dbeta)`:
///
/// ```text
/// xhat = (x - mean) * rstd,   g = dy * gamma
/// dx   = rstd * (g - mean(g) - xhat * mean(g * xhat))     (means over the group)
/// dgamma = Σ dy * xhat,  dbeta = Σ dy                     (over all but gamma's axis)
/// ```
///
/// Without centering (RMSNorm) `mean = 0` and the `mean(g)` term is absent.
/// The group mean is recomputed (the group is in cache) rather than read
/// back: stored in the element type, the mean of values at 1e4 would carry
/// an error of 5e-4, a twentieth of a 1e-2 spread. `dgamma`, `dbeta` are
/// accumulated in f64: along short rows, blocks of eight rows first in the
/// element type (see `PARAM_ROWS`); the blocks do not depend on the
/// threads' schedule, so neither do the results.
pub fn backward<T: Real>(
    x: &[T],
    groups: Groups,
    rstd: &[T],
    gamma: Option<&[T]>,
    dy: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert!(dy.len() == x.len());
    // SAFETY: `dy` and `dx` are distinct, live buffers of `x.len()` values;
    // `dx` is only written (every value), never read, when it is not `dy`.
    let (dx, (dgamma, dbeta)) = unsafe {
        written(x.len(), |dx| {
            backward_raw(x, groups, rstd, gamma, dy.as_ptr(), dx.as_mut_ptr().cast())
        })
    };
    (dx, dgamma, dbeta)
}

/// [`backward`] writing `dx` over `dy`, which the caller no longer needs: a
/// training step then allocates no new buffer for the input gradient (fresh
/// pages cost more than the kernel itself on CPU).
// flex's kernel alone writes `dx` over `dy` (ndarray's storage is not ours).
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub fn backward_in_place<T: Real>(
    x: &[T],
    groups: Groups,
    rstd: &[T],
    gamma: Option<&[T]>,
    dy_dx: &mut [T],
) -> (Vec<T>, Vec<T>) {
    assert!(dy_dx.len() == x.len());
    let ptr = dy_dx.as_mut_ptr();
    // SAFETY: each group reads its `dy` values before it overwrites them,
    // and groups own disjoint values.
    unsafe { backward_raw(x, groups, rstd, gamma, ptr as *const T, ptr) }
}

/// The backward's schedule: rows long enough for [`long_groups`] by tiles
/// of columns, every other layout by groups.
///
/// # Safety
/// `dy` and `dx` point to `x.len()` values each; they are either the same
/// buffer or disjoint.
unsafe fn backward_raw<T: Real>(
    x: &[T],
    groups: Groups,
    rstd: &[T],
    gamma: Option<&[T]>,
    dy: *const T,
    dx: *mut T,
) -> (Vec<T>, Vec<T>) {
    let Groups { n, c, s, .. } = groups;
    assert!(x.len() == n * c * s && rstd.len() == groups.count());
    assert!(gamma.is_none_or(|v| v.len() == groups.params()));
    // SAFETY (both): the caller's promise, passed on.
    if long_groups::takes(&groups) {
        unsafe { long_groups::backward(x, groups, rstd, gamma, dy, dx) }
    } else {
        unsafe { by_groups(x, groups, rstd, gamma, dy, dx) }
    }
}

/// [`backward_raw`] with each group in one task, its parameter-gradient
/// terms added to that task's sums.
///
/// # Safety
/// As [`backward_raw`].
unsafe fn by_groups<T: Real>(
    x: &[T],
    groups: Groups,
    rstd: &[T],
    gamma: Option<&[T]>,
    dy: *const T,
    dx: *mut T,
) -> (Vec<T>, Vec<T>) {
    let pass = Backward {
        x,
        groups,
        rstd,
        gamma,
        size: T::from_f64(groups.size() as f64),
        in_place: std::ptr::eq(dy, dx),
        input: Shared(dy as *mut T, x.len()),
        out: Shared(dx, x.len()),
    };
    let p = groups.params();
    // One set of f64 parameter-gradient sums per thread, added at the end.
    let partial = for_each_chunk(
        groups.chunking(),
        || Partials {
            dgamma: vec![0.0f64; p],
            dbeta: vec![0.0f64; p],
            block_dgamma: Vec::new(),
            block_dbeta: Vec::new(),
            ones: Vec::new(),
        },
        |state, chunk| simd(&pass, state, chunk),
    );
    // Added into the first task's sums: no new buffers (fresh pages cost
    // more than the additions for long rows' parameters).
    let mut parts = partial.into_iter();
    let first = parts.next().expect("the calling thread's sums");
    let (mut dgamma, mut dbeta) = (first.dgamma, first.dbeta);
    for part in parts {
        dgamma
            .iter_mut()
            .zip(part.dgamma)
            .for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(part.dbeta).for_each(|(a, b)| *a += b);
    }
    (
        dgamma.into_iter().map(T::from_f64).collect(),
        dbeta.into_iter().map(T::from_f64).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::forward;
    use super::*;
    use crate::backend::layout::Layout;

    fn groups(shape: [usize; 4], layout: Layout) -> Groups {
        Groups::of(&shape, layout)
    }

    /// A row's output and statistics do not depend on its block or its
    /// thread: the forward of many rows (blocks of eight 128-wide rows, of
    /// two 768-wide ones and a last one alone, of single 1,100-wide ones,
    /// spread over the threads) gives the same bits as the forward of each
    /// row alone.
    #[test]
    fn forward_rows_match_each_row_alone() {
        for (rows, d) in [(1001usize, 128usize), (333, 768), (37, 1100)] {
            let x: Vec<f32> = (0..rows * d)
                .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 20.0)
                .collect();
            let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.01).collect();
            let b: Vec<f32> = (0..d).map(|i| i as f32 * 0.02 - 1.0).collect();
            let (y, stats) = forward(
                &x,
                groups([1, 1, rows, d], Layout::LAYER),
                Some(&w),
                Some(&b),
                1e-5,
            );
            for (r, row) in x.chunks(d).enumerate() {
                let (alone, one) = forward(
                    row,
                    groups([1, 1, 1, d], Layout::LAYER),
                    Some(&w),
                    Some(&b),
                    1e-5,
                );
                assert_eq!(&y[r * d..(r + 1) * d], &alone[..], "{rows} x {d}, row {r}");
                assert_eq!(
                    (stats.mean[r], stats.var[r], stats.rstd[r]),
                    (one.mean[0], one.var[0], one.rstd[0]),
                    "{rows} x {d}, row {r}"
                );
            }
        }
    }

    /// Row [1, 2, 3, 4]: mean 2.5, var 1.25; epsilon 0.75 makes rstd 1/sqrt(2).
    #[test]
    fn rows_by_hand() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let groups = groups([1, 1, 1, 4], Layout::LAYER);
        let (y, stats) = forward(&x, groups, Some(&[2.0; 4]), Some(&[1.0; 4]), 0.75);
        let r = 0.5f64.sqrt();
        assert_eq!((stats.mean[0], stats.var[0]), (2.5, 1.25));
        assert!((stats.rstd[0] - r).abs() < 1e-15);
        for (yi, c) in y.iter().zip([-1.5, -0.5, 0.5, 1.5]) {
            assert!((yi - (2.0 * c * r + 1.0)).abs() < 1e-14, "{y:?}");
        }
        // dy = [1, 0, 0, 0], gamma 2: g = [2, 0, 0, 0], mean(g) = 0.5,
        // xhat = c r, mean(g xhat) = -3 r / 4.
        let dy = [1.0, 0.0, 0.0, 0.0];
        let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&[2.0; 4]), &dy);
        for (i, c) in [-1.5f64, -0.5, 0.5, 1.5].iter().enumerate() {
            let g = if i == 0 { 2.0 } else { 0.0 };
            let expected = r * (g - 0.5 - c * r * (-0.75 * r));
            assert!((dx[i] - expected).abs() < 1e-14, "dx {dx:?}");
        }
        assert!((dgamma[0] + 1.5 * r).abs() < 1e-14 && dgamma[1..] == [0.0; 3]);
        assert_eq!(dbeta, [1.0, 0.0, 0.0, 0.0]);
    }

    /// RMS of [1, 2, 3, 4]... made simple: row [3, 4]: mean square 12.5;
    /// epsilon 3.5 makes rstd 1/4, so y = [0.75, 1].
    #[test]
    fn rms_by_hand() {
        let x = [3.0f64, 4.0];
        let groups = groups([1, 1, 1, 2], Layout::RMS);
        let (y, stats) = forward(&x, groups, None, None, 3.5);
        assert_eq!(
            (stats.mean[0], stats.var[0], stats.rstd[0]),
            (0.0, 12.5, 0.25)
        );
        assert_eq!(y, [0.75, 1.0]);
        // dy = [1, 0]: mean(g xhat) = 0.75 / 2; no mean(g) term:
        // dx = r (dy - xhat * 0.375) = [0.25 (1 - 0.28125), 0.25 (0 - 0.375)].
        let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, None, &[1.0, 0.0]);
        assert_eq!(dx, [0.25 * (1.0 - 0.75 * 0.375), 0.25 * -0.375]);
        assert_eq!((dgamma, dbeta), (vec![0.75, 0.0], vec![1.0, 0.0]));
    }

    /// Channels of [n=2, c=2, s=2]: channel 0 holds 1, 2, 5, 6 (mean 3.5,
    /// var 4.25), channel 1 holds 10, 10, 10, 14 (mean 11, var 3).
    #[test]
    fn channels_by_hand() {
        let x = [1.0f64, 2.0, 10.0, 10.0, 5.0, 6.0, 10.0, 14.0];
        let groups = groups([2, 2, 1, 2], Layout::BATCH);
        let (y, stats) = forward(&x, groups, Some(&[1.0, 2.0]), Some(&[0.0, -1.0]), 0.0);
        assert_eq!((stats.mean, stats.var), (vec![3.5, 11.0], vec![4.25, 3.0]));
        let (r0, r1) = (1.0 / 4.25f64.sqrt(), 1.0 / 3.0f64.sqrt());
        let expected = [
            -2.5 * r0,
            -1.5 * r0,
            -2.0 * r1 - 1.0,
            -2.0 * r1 - 1.0,
            1.5 * r0,
            2.5 * r0,
            -2.0 * r1 - 1.0,
            6.0 * r1 - 1.0,
        ];
        for (a, e) in y.iter().zip(expected) {
            assert!((a - e).abs() < 1e-14, "{y:?}");
        }
        // dy = 1 everywhere: mean(g) = gamma, mean(g xhat) = 0, so dx = 0;
        // dgamma = Σ xhat = 0, dbeta = 4 per channel.
        let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&[1.0, 2.0]), &[1.0; 8]);
        assert!(dx.iter().all(|v| v.abs() < 1e-14), "{dx:?}");
        assert!(dgamma.iter().all(|v| v.abs() < 1e-14) && dbeta == [4.0, 4.0]);
    }

    /// GroupNorm on one sample of 4 channels of 1 value, 2 groups of 2:
    /// group 0 holds 1, 3 (mean 2, var 1), group 1 holds 10, 14 (mean 12,
    /// var 4); gamma and beta per channel.
    #[test]
    fn sample_channels_by_hand() {
        let x = [1.0f64, 3.0, 10.0, 14.0];
        let groups = groups([1, 4, 1, 1], Layout::group(2));
        let gamma = [1.0, 2.0, 3.0, 4.0];
        let beta = [0.0, 1.0, 0.0, -1.0];
        let (y, stats) = forward(&x, groups, Some(&gamma), Some(&beta), 0.0);
        assert_eq!((stats.mean, stats.var), (vec![2.0, 12.0], vec![1.0, 4.0]));
        assert_eq!(y, [-1.0, 3.0, -3.0, 3.0]);
        // dy = [1, 0, 0, 1]: group 0: g = [1, 0], xhat = [-1, 1]: mean(g) =
        // 0.5, mean(g xhat) = -0.5, dx = [1 - 0.5 - 0.5, 0 - 0.5 + 0.5] = 0;
        // group 1 (rstd 1/2): g = [0, 4], xhat = [-1, 1]: mean(g) = 2,
        // mean(g xhat) = 2: dx = 0.5 * [0 - 2 + 2, 4 - 2 - 2] = 0.
        let dy = [1.0, 0.0, 0.0, 1.0];
        let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&gamma), &dy);
        assert_eq!(dx, [0.0; 4]);
        assert_eq!((dgamma, dbeta), (vec![-1.0, 0.0, 0.0, 1.0], dy.to_vec()));
    }

    /// Writing dx over dy gives bit for bit what a separate buffer gives.
    #[test]
    fn in_place_backward_is_identical() {
        let x: Vec<f32> = (0..2 * 6 * 40)
            .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 5.0)
            .collect();
        let dy: Vec<f32> = (0..x.len()).map(|i| ((i as f32) * 1.3).cos()).collect();
        let cases = [
            ([2, 1, 6, 40], Layout::LAYER),
            ([2, 1, 6, 40], Layout::RMS),
            ([2, 6, 1, 40], Layout::BATCH),
            ([2, 6, 1, 40], Layout::group(2)),
        ];
        for (shape, layout) in cases {
            let groups = groups(shape, layout);
            let w: Vec<f32> = (0..groups.params()).map(|i| 0.5 + i as f32 * 0.1).collect();
            let (_, stats) = forward(&x, groups, Some(&w), None, 1e-5);
            let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&w), &dy);
            let separate = (dgamma, dbeta);
            let mut dy_dx = dy.clone();
            let in_place = backward_in_place(&x, groups, &stats.rstd, Some(&w), &mut dy_dx);
            assert_eq!(dx, dy_dx, "{layout:?}");
            assert_eq!(separate, in_place, "{layout:?}");
        }
    }

    /// The parameter gradients of many short rows (blocks of eight, and a
    /// last one of three), of a few long ones (each row straight into the
    /// f64 sums) and of rows long enough to go by tiles of columns (the
    /// last tile partial), against f64 sums of the same terms; and the same
    /// bits on every run, whichever thread takes which rows or tiles.
    #[test]
    fn parameter_gradients_match_f64_and_do_not_depend_on_the_schedule() {
        for (rows, d) in [(4099usize, 64usize), (5, 4096), (3, 40_000)] {
            let groups = groups([1, 1, rows, d], Layout::LAYER);
            let x: Vec<f32> = (0..rows * d)
                .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 20.0)
                .collect();
            let dy: Vec<f32> = (0..rows * d).map(|i| ((i as f32) * 1.3).cos()).collect();
            let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.01).collect();
            let (_, stats) = forward(&x, groups, Some(&w), None, 1e-5);
            let (_, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&w), &dy);
            // The statistics in f64, from the data.
            let moments: Vec<(f64, f64)> = x
                .chunks(d)
                .map(|row| {
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                    let var =
                        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                    (mean, 1.0 / (var + 1e-5).sqrt())
                })
                .collect();
            for j in 0..d {
                let (mut want_g, mut want_b, mut scale) = (0.0f64, 0.0f64, 0.0f64);
                for (row, &(mean, rstd)) in moments.iter().enumerate() {
                    let i = row * d + j;
                    let xhat = (x[i] as f64 - mean) * rstd;
                    want_g += dy[i] as f64 * xhat;
                    want_b += dy[i] as f64;
                    scale += (dy[i] as f64 * xhat).abs() + (dy[i] as f64).abs();
                }
                // Each term rounded to f32, the blocks' f32 sums and the
                // result's rounding: a few f32 steps of the terms' scale
                // (measured: 3e-9 for the short rows, 7e-8 for the long).
                // A block added twice or left out is off by far more.
                let tol = 2.5e-7 * scale;
                assert!(
                    (dgamma[j] as f64 - want_g).abs() <= tol,
                    "{rows}x{d} dgamma[{j}]"
                );
                assert!(
                    (dbeta[j] as f64 - want_b).abs() <= tol,
                    "{rows}x{d} dbeta[{j}]"
                );
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            for _ in 0..20 {
                let (_, again_g, again_b) = backward(&x, groups, &stats.rstd, Some(&w), &dy);
                assert_eq!(bits(&again_g), bits(&dgamma), "{rows}x{d}");
                assert_eq!(bits(&again_b), bits(&dbeta), "{rows}x{d}");
            }
        }
    }

    /// The AVX-512 and AVX2 copies of both passes give the same bits: short
    /// rows in blocks and their remainder, tails shorter than a vector, rows
    /// long enough for the aligned bulk, channels and channel groups. (The
    /// baseline's statistics add in another order, see [`Isa`].) Each case
    /// is one chunk of work, so it runs on this thread.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        use super::super::isa::Isa;
        let cases = [
            ([1, 1, 37, 128], Layout::LAYER),
            ([1, 1, 9, 77], Layout::LAYER),
            ([1, 1, 9, 77], Layout::RMS),
            ([1, 1, 11, 700], Layout::LAYER),
            ([3, 5, 1, 50], Layout::BATCH),
            ([2, 8, 1, 30], Layout::group(2)),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        for (shape, layout) in cases {
            let groups = groups(shape, layout);
            let len = shape.iter().product::<usize>();
            let x: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 50.0)
                .collect();
            let dy: Vec<f32> = (0..len).map(|i| ((i as f32) * 1.3).cos()).collect();
            let w: Vec<f32> = (0..groups.params()).map(|i| 0.5 + i as f32 * 0.1).collect();
            let b: Vec<f32> = (0..groups.params())
                .map(|i| 0.25 - i as f32 * 0.01)
                .collect();
            let results: Vec<(Isa, Vec<Vec<u32>>)> = Isa::available()
                .into_iter()
                .filter(|&isa| isa != Isa::Baseline)
                .map(|isa| {
                    Isa::force(isa, || {
                        let (y, stats) = forward(&x, groups, Some(&w), Some(&b), 1e-5);
                        let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&w), &dy);
                        let outputs = [
                            &y,
                            &stats.mean,
                            &stats.var,
                            &stats.rstd,
                            &dx,
                            &dgamma,
                            &dbeta,
                        ];
                        (isa, outputs.map(|v| bits(v)).to_vec())
                    })
                })
                .collect();
            for (isa, outputs) in &results {
                assert!(
                    outputs == &results[0].1,
                    "{layout:?} {shape:?}: {isa:?} differs from {:?}",
                    results[0].0
                );
            }
        }
    }

    /// Long rows by tiles of columns against the same rows by groups: the
    /// same formulas, summed in another order (a row's mean and sums over
    /// its tiles), so within f32 rounding; with and without centering and
    /// gamma, one row and several, a partial last tile, and `dx` written
    /// over `dy` giving the same bits.
    #[test]
    fn long_rows_by_columns_match_them_by_groups() {
        for (rows, d) in [(1usize, 70_001usize), (3, 40_000)] {
            for layout in [Layout::LAYER, Layout::RMS] {
                let groups = groups([1, 1, rows, d], layout);
                assert!(long_groups::takes(&groups));
                let x: Vec<f32> = (0..rows * d)
                    .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 20.0)
                    .collect();
                let dy: Vec<f32> = (0..rows * d).map(|i| ((i as f32) * 1.3).cos()).collect();
                let w: Vec<f32> = (0..d).map(|i| 0.5 + (i % 97) as f32 * 0.01).collect();
                for gamma in [Some(&w[..]), None] {
                    let (_, stats) = forward(&x, groups, gamma, None, 1e-5);
                    let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, gamma, &dy);
                    let mut by_rows = vec![0.0f32; x.len()];
                    // SAFETY: `dy` and `by_rows` are disjoint, `x.len()` each.
                    let (want_g, want_b) = unsafe {
                        by_groups(
                            &x,
                            groups,
                            &stats.rstd,
                            gamma,
                            dy.as_ptr(),
                            by_rows.as_mut_ptr(),
                        )
                    };
                    let what = format!("{rows}x{d} {layout:?} gamma {}", gamma.is_some());
                    let close = |a: &[f32], b: &[f32], tol: f32, name: &str| {
                        for (j, (a, b)) in a.iter().zip(b).enumerate() {
                            assert!(
                                (a - b).abs() <= tol * (1.0 + b.abs()),
                                "{what} {name}[{j}]: {a} vs {b}"
                            );
                        }
                    };
                    close(&dx, &by_rows, 2e-5, "dx");
                    close(&dgamma, &want_g, 1e-5, "dgamma");
                    close(&dbeta, &want_b, 1e-6, "dbeta");
                    let mut dy_dx = dy.clone();
                    let in_place = backward_in_place(&x, groups, &stats.rstd, gamma, &mut dy_dx);
                    assert_eq!(dx, dy_dx, "{what}");
                    assert_eq!((dgamma, dbeta), in_place, "{what}");
                }
            }
        }
    }
}
