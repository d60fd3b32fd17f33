//! The forward pass: each group's statistics, then its output.

use super::chunks::for_each_chunk;
use super::long_groups;
use super::real::Real;
use super::rows_x86::SHORT;
use super::shared::{Shared, written};
use super::{
    BLOCK_GROUPS, FORWARD_BLOCK_VALUES, GroupPass, along_row, group_mean, groups_per_block, simd,
};
use crate::backend::RunningUpdate;
use crate::backend::layout::{Centering, Groups};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Per-group statistics written by [`forward`].
pub struct Statistics<T> {
    /// The mean (0 for a layout that does not center).
    pub mean: Vec<T>,
    /// Biased variance (the mean square for a layout that does not center).
    pub var: Vec<T>,
    /// `1 / sqrt(var + epsilon)`.
    pub rstd: Vec<T>,
}

impl<T: Real> Statistics<T> {
    /// Replaces `mean` and `var` by the running statistics `running_mean`
    /// and `running_var` updated with them ([`Statistics::Running`]): the
    /// composed update's operations in its order, each scalar rounded to
    /// `T` as a tensor's scalar operation rounds it.
    ///
    /// [`Statistics::Running`]: crate::backend::Statistics::Running
    pub fn fold_into_running(
        &mut self,
        running_mean: &[T],
        running_var: &[T],
        update: RunningUpdate,
    ) {
        let keep = T::from_f64(1.0 - update.factor);
        let factor = T::from_f64(update.factor);
        let correction = T::from_f64(update.correction());
        // Per group, or per channel for every sample's groups.
        let running = running_mean.iter().zip(running_var).cycle();
        for ((m, v), (&rm, &rv)) in self.mean.iter_mut().zip(self.var.iter_mut()).zip(running) {
            *m = rm * keep + *m * factor;
            *v = rv * keep + (*v * correction) * factor;
        }
    }
}

/// The forward pass over a chunk of groups: statistics, then `y`.
#[derive(Clone, Copy)]
struct Forward<'a, T> {
    x: &'a [T],
    groups: Groups,
    gamma: Option<&'a [T]>,
    beta: Option<&'a [T]>,
    eps: T,
    size: T,
    out: Shared<T>,
    /// Per group: the mean, the variance and `rstd`.
    stats: [Shared<T>; 3],
}

/// A group's first moments, as [`group_mean`] and the squares pass give
/// them.
#[derive(Clone, Copy)]
struct Moments<T> {
    /// The group's first value (0 where the layout does not center).
    shift: T,
    /// The mean of `x - shift`.
    mean: T,
    /// The biased variance.
    var: T,
}

impl<T: Real> Forward<'_, T> {
    /// Group `g`'s moments, from its [`group_mean`] `(shift, m)`.
    #[inline(always)]
    fn statistics(&self, g: usize, (shift, m): (T, T)) -> Moments<T> {
        let Self { x, groups, .. } = *self;
        let len = groups.segment_len();
        let mut squares = T::ZERO;
        for start in groups.segments(g) {
            squares = squares + T::centered_sum(&x[start..start + len], shift, m, true);
        }
        Moments {
            shift,
            mean: m,
            var: squares / self.size,
        }
    }

    /// Writes group `g`'s output and statistics.
    #[inline(always)]
    fn write(&self, g: usize, moments: Moments<T>, r: T) {
        let Moments {
            shift,
            mean: m,
            var,
        } = moments;
        let Self {
            x,
            groups,
            gamma,
            beta,
            ref out,
            ref stats,
            ..
        } = *self;
        let len = groups.segment_len();
        for start in groups.segments(g) {
            let segment = &x[start..start + len];
            // SAFETY: the segments of distinct groups are disjoint.
            let y = unsafe { out.range_uninit(start, len) };
            if along_row(&groups) {
                let row = RowOutput {
                    x: segment,
                    shift,
                    m,
                    r,
                    gamma,
                    beta,
                };
                write_row(y, &row);
                continue;
            }
            // One gamma and beta per run of `s` values (a channel).
            let first = groups.channel(start);
            let runs = y.chunks_mut(groups.s).zip(segment.chunks(groups.s));
            for (ch, (y, run)) in (first..).zip(runs) {
                let output = RowOutput {
                    x: run,
                    shift,
                    m,
                    r,
                    gamma,
                    beta,
                };
                output.write_channel(y, ch);
            }
        }
        // SAFETY: each group is written by one task.
        unsafe {
            stats[0].write(g, shift + m);
            stats[1].write(g, var);
            stats[2].write(g, r);
        }
    }

    /// Rows `block` as a [`RowBlock`] (the layout's groups are rows).
    #[inline(always)]
    fn row_block(&self, block: Range<usize>) -> RowBlock<'_, T> {
        let s = self.groups.s;
        let (start, rows) = (block.start * s, block.len());
        RowBlock {
            x: &self.x[start..start + rows * s],
            // SAFETY: each group is written by one task.
            y: unsafe { self.out.range_uninit(start, rows * s) },
            len: s,
            centering: self.groups.layout.centering,
            gamma: self.gamma,
            beta: self.beta,
            eps: self.eps,
            size: self.size,
            // SAFETY: as above.
            stats: self
                .stats
                .each_ref()
                .map(|stat| unsafe { stat.range_uninit(block.start, rows) }),
        }
    }
}

/// A block of whole rows (LayerNorm's and RMSNorm's groups) for a
/// hand-vectorized forward ([`Real::forward_rows`]): at most
/// [`BLOCK_GROUPS`] rows, their output and their statistics.
pub struct RowBlock<'a, T> {
    /// The rows, `len` values each, one after another.
    pub x: &'a [T],
    /// Their output.
    pub y: &'a mut [MaybeUninit<T>],
    pub len: usize,
    pub centering: Centering,
    pub gamma: Option<&'a [T]>,
    pub beta: Option<&'a [T]>,
    pub eps: T,
    /// `len` as a `T`.
    pub size: T,
    /// Per row: the mean (`shift + m`), the variance and `rstd`.
    pub stats: [&'a mut [MaybeUninit<T>]; 3],
}

impl<T: Real> GroupPass for Forward<'_, T> {
    type State = ();

    fn groups(&self) -> Groups {
        self.groups
    }

    #[inline(always)]
    fn with_groups(&self, groups: Groups) -> Self {
        Forward { groups, ..*self }
    }

    /// Short groups go in blocks: the means of up to [`BLOCK_GROUPS`]
    /// groups, then their variances, then their outputs. A group's output
    /// waits on its `1 / sqrt(var + epsilon)` (a square root and a
    /// division, some 30 cycles), and its variance on its mean (a
    /// horizontal sum and a division); group by group, the core waited
    /// that long on each row of 128 values (a quarter of the row's time),
    /// while in a block each stage's groups are independent and their
    /// chains overlap (taking the means apart from the variances made
    /// LayerNorm [4096, 128]'s forward 8% faster on one thread). Same
    /// operations, same results.
    #[inline(always)]
    fn run(&self, _: &mut (), groups: Range<usize>) {
        let per_block = groups_per_block(self.groups.size(), FORWARD_BLOCK_VALUES);
        let zero = Moments {
            shift: T::ZERO,
            mean: T::ZERO,
            var: T::ZERO,
        };
        let mut moments = [zero; BLOCK_GROUPS];
        let mut means = [(T::ZERO, T::ZERO); BLOCK_GROUPS];
        for first in groups.clone().step_by(per_block) {
            let block = first..(first + per_block).min(groups.end);
            // Longer rows never take the kernel: no block to build for them.
            if self.groups.layout.grouping.is_rows()
                && self.groups.s < SHORT
                && T::forward_rows(&mut self.row_block(block.clone()))
            {
                continue;
            }
            for (g, mean) in block.clone().zip(&mut means) {
                *mean = group_mean(self.x, &self.groups, g);
            }
            for ((g, &mean), moment) in block.clone().zip(&means).zip(&mut moments) {
                *moment = self.statistics(g, mean);
            }
            for (g, &moment) in block.zip(&moments) {
                self.write(g, moment, T::ONE / (moment.var + self.eps).sqrt());
            }
        }
    }
}

/// One row's output, `y = ((x - shift) - m) * r * gamma + beta` (without
/// `gamma`, `beta` where they are `None`): its input, its statistics and
/// the parameters along it; or a channel's run of values, with the
/// parameters per channel ([`RowOutput::write_channel`]).
#[derive(Clone, Copy)]
pub struct RowOutput<'a, T> {
    pub x: &'a [T],
    pub shift: T,
    pub m: T,
    pub r: T,
    pub gamma: Option<&'a [T]>,
    pub beta: Option<&'a [T]>,
}

impl<T: Real> RowOutput<'_, T> {
    /// The output of a run of channel `ch`'s values, where `gamma` and
    /// `beta` are per channel: `y = ((x - shift) - m) * r * gamma[ch] +
    /// beta[ch]`.
    #[inline(always)]
    pub fn write_channel(&self, y: &mut [MaybeUninit<T>], ch: usize) {
        let Self {
            x,
            shift,
            m,
            r,
            gamma,
            beta,
        } = *self;
        let scale = gamma.map_or(r, |w| r * w[ch]);
        let bias = beta.map_or(T::ZERO, |b| b[ch]);
        for (y, &v) in y.iter_mut().zip(x) {
            y.write(((v - shift) - m) * scale + bias);
        }
    }
}

impl<T: Copy> RowOutput<'_, T> {
    /// The values of `range` of the row.
    #[inline(always)]
    pub fn slice(&self, range: Range<usize>) -> Self {
        RowOutput {
            x: &self.x[range.clone()],
            gamma: self.gamma.map(|w| &w[range.clone()]),
            beta: self.beta.map(|b| &b[range]),
            ..*self
        }
    }
}

/// Values of a row's output written before its bulk, so that the bulk
/// starts on a cache line: a vector store that straddles two lines costs
/// more, and Burn's tensors (glibc's allocations) start 16 bytes into one.
/// Rows under 512 values have none: up to 15 values apart would cost more
/// than the split stores save (LayerNorm [4096, 128] measured 3% slower).
/// Each value is computed alone, so the split changes no result.
#[inline(always)]
fn aligned_head<T>(y: &[MaybeUninit<T>]) -> usize {
    if y.len() < 512 {
        0
    } else {
        y.as_ptr().align_offset(64).min(y.len())
    }
}

/// `row`'s output into `y`, value by value (the compiler vectorizes it).
#[inline(always)]
pub fn write_values<T: Real>(y: &mut [MaybeUninit<T>], row: &RowOutput<'_, T>) {
    let RowOutput {
        x,
        shift,
        m,
        r,
        gamma,
        beta,
    } = *row;
    match (gamma, beta) {
        (Some(w), Some(b)) => {
            for (((y, &v), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                y.write(((v - shift) - m) * r * w + b);
            }
        }
        (Some(w), None) => {
            for ((y, &v), &w) in y.iter_mut().zip(x).zip(w) {
                y.write(((v - shift) - m) * r * w);
            }
        }
        (None, Some(b)) => {
            for ((y, &v), &b) in y.iter_mut().zip(x).zip(b) {
                y.write(((v - shift) - m) * r + b);
            }
        }
        (None, None) => {
            for (y, &v) in y.iter_mut().zip(x) {
                y.write(((v - shift) - m) * r);
            }
        }
    }
}

/// A row's output: its [`aligned_head`], then the bulk.
#[inline(always)]
fn write_row<T: Real>(y: &mut [MaybeUninit<T>], row: &RowOutput<'_, T>) {
    let head = aligned_head(y);
    let (y_head, y_bulk) = y.split_at_mut(head);
    write_values(y_head, &row.slice(0..head));
    write_values(y_bulk, &row.slice(head..row.x.len()));
}

/// Normalizes each group of `x` as its layout says:
/// `y = (x - mean) * rstd * gamma + beta`, `rstd = 1 / sqrt(var + epsilon)`
/// with the biased variance (`mean = 0` when the layout does not center);
/// returns `y` and the statistics.
pub fn forward<T: Real>(
    x: &[T],
    groups: Groups,
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    epsilon: f64,
) -> (Vec<T>, Statistics<T>) {
    // SAFETY: `forward_into` writes every value of `y`.
    unsafe {
        written(x.len(), |y| {
            forward_into(x, groups, gamma, beta, epsilon, y)
        })
    }
}

/// [`forward`] into `y`, which need not be initialized: every value is written.
fn forward_into<T: Real>(
    x: &[T],
    groups: Groups,
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    epsilon: f64,
    y: &mut [MaybeUninit<T>],
) -> Statistics<T> {
    let Groups { n, c, s, .. } = groups;
    assert!(x.len() == n * c * s && y.len() == x.len());
    assert!(
        gamma.is_none_or(|v| v.len() == groups.params())
            && beta.is_none_or(|v| v.len() == groups.params())
    );
    if long_groups::forward_takes(&groups) {
        return long_groups::forward(x, groups, gamma, beta, epsilon, y);
    }
    let k = groups.count();
    let (mut mean, mut var, mut rstd) = (
        Vec::with_capacity(k),
        Vec::with_capacity(k),
        Vec::with_capacity(k),
    );
    let pass = Forward {
        x,
        groups,
        gamma,
        beta,
        eps: T::from_f64(epsilon),
        size: T::from_f64(groups.size() as f64),
        out: Shared(y.as_mut_ptr().cast::<T>(), y.len()),
        stats: [&mut mean, &mut var, &mut rstd].map(|v| Shared(v.as_mut_ptr(), k)),
    };
    for_each_chunk(
        groups.chunking(),
        || (),
        |_, chunk| simd(&pass, &mut (), chunk),
    );
    // SAFETY: every group's statistics were written above.
    unsafe {
        mean.set_len(k);
        var.set_len(k);
        rstd.set_len(k);
    }
    Statistics { mean, var, rstd }
}
