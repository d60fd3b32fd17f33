//! CPU kernels over plain slices: normalization of groups of values and
//! its backward pass. Backend glue (flex, ndarray) hands them the tensors'
//! storage.
//!
//! The input is `[n, g, k, s]`, row-major, split into groups as
//! [`layout`](super::layout) describes. Each group is read from memory once
//! per pass, and a group of up to a few hundred KiB stays in L2 between
//! passes, so the kernels cost about one read of the input and one write of
//! the output. Groups are spread over the calling thread and a team of
//! helper threads that stay awake briefly between calls ([`chunks`]); inner
//! loops keep eight independent accumulators so that the compiler
//! vectorizes them ([`sums`]).
//!
//! One concern per file: the element trait ([`real`]), the instruction
//! sets ([`isa`]), the sums (generic in [`sums`], AVX2 and AVX-512 in
//! [`sums_x86`]), the forward over whole rows in AVX2 and AVX-512
//! ([`rows_x86`]), the buffers that many tasks write ([`shared`]), the
//! [`forward`] and the [`backward`] passes, and the backward of long rows
//! by columns ([`long_groups`]).

mod backward;
mod chunks;
mod forward;
mod isa;
mod long_groups;
mod real;
mod rows_x86;
mod shared;
mod shares;
mod sums;
mod sums_x86;

pub use backward::backward;
#[cfg(feature = "flex")]
pub use backward::backward_in_place;
pub use forward::forward;
pub use real::Real;

use super::layout::{Centering, Grouping, Groups, Layout, Params};
use chunks::Chunking;
use isa::Isa;
use std::ops::Range;

/// The CPU kernels' answer to a dtype they do not take (the functional
/// layer only calls them for f32 and f64).
pub fn unsupported(dtype: burn::tensor::DType) -> ! {
    panic!("burn-norm's fused normalization takes f32 or f64 tensors, got {dtype:?}")
}

/// The CPU kernels' view of a [`Groups`] layout: each group is a list of
/// contiguous segments of [`segment_len`](Groups::segment_len) values.
impl Groups {
    /// The start of each contiguous segment of group `g`.
    fn segments(&self, g: usize) -> impl Iterator<Item = usize> + use<> {
        let Groups { c, k, s, n, .. } = *self;
        let (first, count, stride) = match self.layout.grouping {
            Grouping::Rows { .. } => (g * s, 1, 0),
            Grouping::Channels => (g * k * s, n, c * s),
            Grouping::SampleChannels { .. } => (g * k * s, 1, 0),
        };
        (0..count).map(move |i| first + i * stride)
    }

    /// The same extents under `layout`.
    fn with_layout(self, layout: Layout) -> Groups {
        Groups { layout, ..self }
    }

    /// Values per contiguous segment.
    fn segment_len(&self) -> usize {
        match self.layout.grouping {
            Grouping::Rows { .. } => self.s,
            Grouping::Channels | Grouping::SampleChannels { .. } => self.k * self.s,
        }
    }

    /// The channel of the segment starting at `start` (its first `s`
    /// values; the next `s` belong to the next channel).
    fn channel(&self, start: usize) -> usize {
        (start % (self.c * self.s).max(1)) / self.s.max(1)
    }

    /// How the groups are cut into chunks of work: enough groups (~16k
    /// values) to amortize taking a chunk, and chunks starting at
    /// multiples of [`param_rows`](Self::param_rows), so that no block of
    /// rows is split whichever thread takes which chunk.
    fn chunking(&self) -> Chunking {
        Chunking {
            count: self.count(),
            min: (CHUNK_VALUES / self.size().max(1)).max(1),
            align: self.param_rows(),
        }
    }

    /// Rows whose parameter-gradient terms the backward adds up in the
    /// element type before they join the f64 sums: [`PARAM_ROWS`] for rows
    /// short enough that a chunk holds that many, else 1 (each row's terms
    /// straight into them).
    fn param_rows(&self) -> usize {
        if along_row(self) && self.size() * PARAM_ROWS <= CHUNK_VALUES {
            PARAM_ROWS
        } else {
            1
        }
    }
}

/// Shift and mean of one group, as `(shift, mean - shift)`; `(0, 0)` when
/// the layout does not center.
///
/// The mean is taken of `x - x[0]`: the subtraction is exact for data
/// within a factor of two of `x[0]` (Sterbenz), so a group with mean 1e4
/// and spread 1e-2 keeps its digits, where a plain f32 sum would carry an
/// error of the size of the spread. The two parts stay apart for the same
/// reason: `shift + mean` rounded to f32 would lose them again.
#[inline(always)]
fn group_mean<T: Real>(x: &[T], groups: &Groups, g: usize) -> (T, T) {
    if groups.layout.centering == Centering::None {
        return (T::ZERO, T::ZERO);
    }
    let len = groups.segment_len();
    let shift = x[groups.segments(g).next().unwrap_or(0)];
    // A `for` loop, not `Iterator::fold`: fold's closure would be compiled
    // out of line, for the baseline CPU instead of the AVX2 caller.
    let mut total = T::ZERO;
    for start in groups.segments(g) {
        total = total + T::centered_sum(&x[start..start + len], shift, T::ZERO, false);
    }
    (shift, total / T::from_f64(groups.size() as f64))
}

/// Values per chunk of work, about: see [`Groups::chunking`].
const CHUNK_VALUES: usize = 16_384;

/// Rows of a block whose `dgamma`, `dbeta` terms are first added up in f32
/// (for f32 data), then once into the f64 sums. Adding each row's terms to
/// f64 sums took a fifth of LayerNorm [4096, 128]'s backward (widening,
/// and twice the loads and stores); a sum of eight f32 terms keeps an error
/// below 1e-6 of their magnitudes, and PyTorch adds all rows in f32.
/// The blocks start at multiples of eight rows whatever the schedule, so
/// the results do not depend on it.
const PARAM_ROWS: usize = 8;

/// Most groups whose statistics are taken before any of them is written
/// (both passes work on short groups in blocks).
const BLOCK_GROUPS: usize = 8;

/// Most values in a block of the forward, which is read again for the
/// output, from L1: rows of 128 values go eight at a time, LayerNorm's
/// 768-wide rows two at a time, groups of more than 1,024 values one at a
/// time. One 768-wide row at a time, each row's statistics waited on the
/// horizontal sums, the division and the square root between its passes
/// (on one thread, with the rows in L2, 40% of the time went outside the
/// three loops); two rows overlap those waits, and LayerNorm [4096, 768]'s
/// forward took 0.92-0.93x the time on one thread and 0.91-0.95x on two.
const FORWARD_BLOCK_VALUES: usize = 2_048;

/// The same for the backward, whose blocks hold `x` and `dy`: groups of
/// 1,024 values or more go one at a time (with blocks of two 768-wide rows
/// the training steps took 0.99x the time for LayerNorm, 1.03x for
/// RMSNorm).
const BACKWARD_BLOCK_VALUES: usize = 1_024;

/// Groups of `size` values per block of at most `values` values (one at
/// least, [`BLOCK_GROUPS`] at most).
fn groups_per_block(size: usize, values: usize) -> usize {
    (values / size.max(1)).clamp(1, BLOCK_GROUPS)
}

/// Whether `gamma`, `beta` run along the row (else one per channel).
fn along_row(groups: &Groups) -> bool {
    groups.layout.params() == Params::AlongRow
}

/// A kernel pass over a chunk of groups, compiled once per [`Isa`] by
/// [`simd`]; it writes its results itself.
///
/// A trait method rather than a closure: a method can be
/// `#[inline(always)]`, so that it and the helpers above are inlined into
/// the AVX2 and AVX-512 copies; a closure body stays a separate function
/// compiled for the baseline, and the wrappers around it would change
/// nothing.
trait GroupPass: Sync + Sized {
    type State;
    /// The groups the pass runs over.
    fn groups(&self) -> Groups;
    /// The same pass over `groups` (the same groups, see [`by_grouping`]).
    fn with_groups(&self, groups: Groups) -> Self;
    fn run(&self, state: &mut Self::State, groups: Range<usize>);
}

/// Runs `pass` with its grouping a constant: one inlined copy of the pass
/// per [`Grouping`], in which the layout's branches (which segments make a
/// group, whether `gamma` runs along the row) fold away. With the grouping
/// read at run time, LayerNorm [4096, 128]'s forward spent a fifth of its
/// time on them: 0.8x the time with the constant, on one thread and on two.
#[inline(always)]
fn by_grouping<P: GroupPass>(pass: &P, state: &mut P::State, groups: Range<usize>) {
    let fixed = |grouping| {
        let all = pass.groups();
        all.with_layout(Layout {
            grouping,
            ..all.layout
        })
    };
    match pass.groups().layout.grouping {
        Grouping::Rows { axes } => pass
            .with_groups(fixed(Grouping::Rows { axes }))
            .run(state, groups),
        Grouping::Channels => pass
            .with_groups(fixed(Grouping::Channels))
            .run(state, groups),
        Grouping::SampleChannels { per_group } => pass
            .with_groups(fixed(Grouping::SampleChannels { per_group }))
            .run(state, groups),
    }
}

/// Runs `pass` on a chunk of groups, compiled for the [`Isa`] the CPU has
/// (detected at run time): with AVX2 the loops work on 8 f32 at a time,
/// with AVX-512 on 16, instead of the 4 of the x86-64 baseline (SSE2). No
/// FMA: contracting `a * b + c` would round differently from the
/// reference, and from one set to another.
///
/// A chunk per call, not a group: the compiled copy cannot be inlined into
/// its baseline caller, and a call per group (a row of 128 values takes
/// about 40 ns) paid its prologue, its spills and the loop invariants at
/// every row.
#[inline(always)]
fn simd<P: GroupPass>(pass: &P, state: &mut P::State, groups: Range<usize>) {
    match Isa::current() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            #[target_feature(enable = "avx2,avx512f")]
            unsafe fn avx512<P: GroupPass>(pass: &P, state: &mut P::State, groups: Range<usize>) {
                by_grouping(pass, state, groups)
            }
            // SAFETY: `Isa::current` names a set the CPU supports.
            unsafe { avx512(pass, state, groups) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<P: GroupPass>(pass: &P, state: &mut P::State, groups: Range<usize>) {
                by_grouping(pass, state, groups)
            }
            // SAFETY: as above.
            unsafe { avx2(pass, state, groups) }
        }
        _ => by_grouping(pass, state, groups),
    }
}

#[cfg(test)]
mod tests {
    use super::{BACKWARD_BLOCK_VALUES, FORWARD_BLOCK_VALUES, groups_per_block};

    /// The block sizes the kernels' comments promise: a transformer's
    /// 128-wide rows eight at a time in both passes, LayerNorm's 768-wide
    /// rows two at a time forward and one at a time backward, long groups
    /// (GroupNorm's 4 x 56 x 56) alone, and no empty block.
    #[test]
    fn blocks_hold_the_promised_groups() {
        let cases = [
            (128, 8, 8),
            (768, 2, 1),
            (1_024, 2, 1),
            (1_025, 1, 1),
            (12_544, 1, 1),
            (0, 8, 8),
        ];
        for (size, forward, backward) in cases {
            assert_eq!(
                groups_per_block(size, FORWARD_BLOCK_VALUES),
                forward,
                "{size}"
            );
            assert_eq!(
                groups_per_block(size, BACKWARD_BLOCK_VALUES),
                backward,
                "{size}"
            );
        }
    }
}
