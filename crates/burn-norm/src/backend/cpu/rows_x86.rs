//! The forward over a block of whole rows (LayerNorm's and RMSNorm's
//! groups) for f32, with AVX2 and AVX-512 intrinsics: the rows' means,
//! then their variances, then their outputs, as the generic loops do, in a
//! function of its own per instruction set.
//!
//! Short rows only ([`SHORT`]): with the generic loops (inlined with the
//! pass's other code into one large function) LayerNorm [4096, 128]'s
//! forward took 1.1-1.15 times as long on one thread, 1.05-1.13 times on
//! two. The output
//! loop is most of it: LLVM's vectorized generic loop, which checks at run
//! time that `y` overlaps no input and keeps remainder loops, cost about
//! 9 ns more per row of 128 values than this one inside the same kernel.
//! The sums are `sums_x86`'s, the output the same operations in the same
//! order (no FMA): the same bits as the generic loops on the same
//! instruction set.

use super::BLOCK_GROUPS;
use super::forward::{RowBlock, RowOutput, write_values};
use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::sums_x86::{centered_sum_avx2, centered_sum_avx512};
use crate::backend::layout::Centering;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows shorter than this take the kernel. Against the generic loops, in
/// alternating pairs of processes on this project's 2-core machine
/// (AVX-512, [4096, d], two threads / one): 0.88-0.96x / 0.87-0.90x the
/// time at d = 128, 0.93-0.98x / 0.95x at 256, 0.96-0.99x / 0.95x at 384;
/// from 512 on, 1.00-1.07x on two threads (0.90-1.00x on one), and with
/// AVX2 1.02-1.04x at 768 on two. Longer rows keep the generic loops.
pub const SHORT: usize = 512;

/// [`Real::forward_rows`](super::real::Real::forward_rows) for f32 rows
/// shorter than [`SHORT`]: `false` for longer rows and on
/// [`Isa::Baseline`].
#[inline(always)]
pub fn forward_rows(block: &mut RowBlock<'_, f32>) -> bool {
    #[cfg(test)]
    if GENERIC.with(std::cell::Cell::get) {
        return false;
    }
    let len = block.len;
    if len >= SHORT {
        return false;
    }
    let rows = block.x.len() / len.max(1);
    assert!(
        len > 0
            && rows <= BLOCK_GROUPS
            && block.x.len() == rows * len
            && block.y.len() == block.x.len()
            && block.gamma.is_none_or(|w| w.len() >= len)
            && block.beta.is_none_or(|b| b.len() >= len)
            && block.stats.iter().all(|stat| stat.len() >= rows)
    );
    match Isa::current() {
        // SAFETY: `Isa::current` names a set the CPU supports; the lengths
        // are checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { rows_avx512(block) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { rows_avx2(block) },
        _ => return false,
    }
    true
}

/// The kernel compiled for AVX-512. Not inlined: the point is a small
/// function of its own.
///
/// # Safety
/// The lengths [`forward_rows`] checks.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn rows_avx512(block: &mut RowBlock<'_, f32>) {
    // SAFETY: the caller's lengths; this function has the set's features.
    unsafe { rows::<Avx512>(block) }
}

/// The kernel compiled for AVX2.
///
/// # Safety
/// As [`rows_avx512`].
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(block: &mut RowBlock<'_, f32>) {
    // SAFETY: as above.
    unsafe { rows::<Avx2>(block) }
}

/// What the kernel needs of an instruction set.
trait Set {
    /// `sums_x86`'s centered sum.
    ///
    /// # Safety
    /// The CPU has the set, and the caller is compiled for it.
    unsafe fn sum(a: &[f32], shift: f32, m: f32, square: bool) -> f32;

    /// A vector of [`Set::LANES`] f32.
    type V: Copy;
    const LANES: usize;

    // The vector operations of the output loop ([`write`]).
    //
    // # Safety
    // As [`Set::sum`]; `load` and `store` touch `LANES` values.
    unsafe fn splat(v: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
}

/// The block: the rows' means, then their variances, then their outputs
/// and statistics, as the generic forward computes them.
///
/// # Safety
/// As [`Set::sum`]; the lengths [`forward_rows`] checks.
#[inline(always)]
unsafe fn rows<S: Set>(block: &mut RowBlock<'_, f32>) {
    let RowBlock {
        x,
        ref mut y,
        len,
        centering,
        gamma,
        beta,
        eps,
        size,
        ref mut stats,
    } = *block;
    let mut shift = [0.0f32; BLOCK_GROUPS];
    let mut m = [0.0f32; BLOCK_GROUPS];
    let mut var = [0.0f32; BLOCK_GROUPS];
    // SAFETY (the sums and the writes): the caller's.
    if centering == Centering::Mean {
        for (j, row) in x.chunks_exact(len).enumerate() {
            shift[j] = row[0];
            // `0 + sum`, as the generic loop adds segments to a zero.
            m[j] = (0.0 + unsafe { S::sum(row, shift[j], 0.0, false) }) / size;
        }
    }
    for (j, row) in x.chunks_exact(len).enumerate() {
        var[j] = (0.0 + unsafe { S::sum(row, shift[j], m[j], true) }) / size;
    }
    for (j, (row, y)) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)).enumerate() {
        let r = 1.0 / (var[j] + eps).sqrt();
        let out = RowOutput {
            x: row,
            shift: shift[j],
            m: m[j],
            r,
            gamma,
            beta,
        };
        // Rows this short start their output anywhere (no aligned head,
        // as in the generic loops); the tail is the generic loop's.
        let bulk = unsafe { write::<S>(y.as_mut_ptr().cast(), &out) };
        write_values(&mut y[bulk..], &out.slice(bulk..len));
        stats[0][j].write(shift[j] + m[j]);
        stats[1][j].write(var[j]);
        stats[2][j].write(r);
    }
}

/// `y[..k] = ((x - shift) - m) * r * gamma + beta` for the largest `k`
/// that is a whole number of vectors; returns `k`. The generic loop's
/// operations in its order.
///
/// # Safety
/// As [`Set::sum`]; `y`, `gamma` and `beta` hold at least `row.x.len()`
/// values.
#[inline(always)]
unsafe fn write<S: Set>(y: *mut f32, row: &RowOutput<'_, f32>) -> usize {
    let lanes = S::LANES;
    let n = row.x.len() / lanes * lanes;
    let x = row.x.as_ptr();
    // SAFETY (every load and store): values `i..i + lanes` are in every
    // slice (the caller's lengths); the set is the caller's.
    unsafe {
        let (vs, vm, vr) = (S::splat(row.shift), S::splat(row.m), S::splat(row.r));
        let xhat = |i: usize| S::mul(S::sub(S::sub(S::load(x.add(i)), vs), vm), vr);
        match (row.gamma, row.beta) {
            (Some(w), Some(b)) => {
                for i in (0..n).step_by(lanes) {
                    let t = S::mul(xhat(i), S::load(w.as_ptr().add(i)));
                    S::store(y.add(i), S::add(t, S::load(b.as_ptr().add(i))));
                }
            }
            (Some(w), None) => {
                for i in (0..n).step_by(lanes) {
                    S::store(y.add(i), S::mul(xhat(i), S::load(w.as_ptr().add(i))));
                }
            }
            (None, Some(b)) => {
                for i in (0..n).step_by(lanes) {
                    S::store(y.add(i), S::add(xhat(i), S::load(b.as_ptr().add(i))));
                }
            }
            (None, None) => {
                for i in (0..n).step_by(lanes) {
                    S::store(y.add(i), xhat(i));
                }
            }
        }
    }
    n
}

/// Implements [`Set`] for one instruction set: its sum, vector type,
/// width and intrinsics.
macro_rules! set {
    ($set:ident, $sum:path, $v:ty, $lanes:expr, $splat:path, $load:path, $store:path, $sub:path, $mul:path, $add:path) => {
        #[cfg(target_arch = "x86_64")]
        impl Set for $set {
            type V = $v;
            const LANES: usize = $lanes;

            #[inline(always)]
            unsafe fn sum(a: &[f32], shift: f32, m: f32, square: bool) -> f32 {
                // SAFETY (here and below): the caller's.
                unsafe { $sum(a, shift, m, square) }
            }
            #[inline(always)]
            unsafe fn splat(v: f32) -> $v {
                unsafe { $splat(v) }
            }
            #[inline(always)]
            unsafe fn load(p: *const f32) -> $v {
                unsafe { $load(p) }
            }
            #[inline(always)]
            unsafe fn store(p: *mut f32, v: $v) {
                unsafe { $store(p, v) }
            }
            #[inline(always)]
            unsafe fn sub(a: $v, b: $v) -> $v {
                unsafe { $sub(a, b) }
            }
            #[inline(always)]
            unsafe fn mul(a: $v, b: $v) -> $v {
                unsafe { $mul(a, b) }
            }
            #[inline(always)]
            unsafe fn add(a: $v, b: $v) -> $v {
                unsafe { $add(a, b) }
            }
        }
    };
}

/// AVX-512: 16 values per instruction.
#[cfg(target_arch = "x86_64")]
struct Avx512;

set!(
    Avx512,
    centered_sum_avx512,
    __m512,
    16,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_sub_ps,
    _mm512_mul_ps,
    _mm512_add_ps
);

/// AVX2: 8 values per instruction.
#[cfg(target_arch = "x86_64")]
struct Avx2;

set!(
    Avx2,
    centered_sum_avx2,
    __m256,
    8,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_sub_ps,
    _mm256_mul_ps,
    _mm256_add_ps
);

#[cfg(test)]
thread_local! {
    /// Set by [`generic`].
    static GENERIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's rows on the generic loops (helper threads
/// keep the kernel, so the tests give `f` one chunk of work).
#[cfg(test)]
pub fn generic<R>(f: impl FnOnce() -> R) -> R {
    GENERIC.with(|g| g.set(true));
    let result = f();
    GENERIC.with(|g| g.set(false));
    result
}

#[cfg(test)]
mod tests {
    use super::super::forward::forward;
    use super::super::isa::Isa;
    use super::generic;
    use crate::backend::layout::{Groups, Layout};

    /// On each instruction set with the kernel, LayerNorm and RMSNorm rows
    /// give the generic loops' bits on the same set, with and without
    /// gamma and beta: rows of 128 in blocks of eight and a short last
    /// block, of 77 (a vector tail), of 300 (blocks of six) and of 511
    /// (the longest, four per block, a tail).
    #[test]
    fn the_kernel_gives_the_generic_bits() {
        let sets: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|&isa| isa != Isa::Baseline)
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        for (rows, len) in [(37, 128), (9, 77), (13, 300), (9, 511)] {
            let x: Vec<f32> = (0..rows * len)
                .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 50.0)
                .collect();
            let w: Vec<f32> = (0..len).map(|i| 0.5 + i as f32 * 0.01).collect();
            let b: Vec<f32> = (0..len).map(|i| 0.25 - i as f32 * 0.001).collect();
            for layout in [Layout::LAYER, Layout::RMS] {
                let groups = Groups::of(&[1, 1, rows, len], layout);
                for (gamma, beta) in [
                    (Some(&w[..]), Some(&b[..])),
                    (Some(&w[..]), None),
                    (None, Some(&b[..])),
                    (None, None),
                ] {
                    let run = || {
                        let (y, stats) = forward(&x, groups, gamma, beta, 1e-5);
                        [y, stats.mean, stats.var, stats.rstd].map(|v| bits(&v))
                    };
                    for &isa in &sets {
                        let kernel = Isa::force(isa, run);
                        let loops = Isa::force(isa, || generic(run));
                        assert!(
                            kernel == loops,
                            "{layout:?} {rows}x{len} gamma {} beta {}: {isa:?}",
                            gamma.is_some(),
                            beta.is_some()
                        );
                    }
                }
            }
        }
    }

    /// The kernel runs where the CPU has AVX2 or AVX-512 (else the test
    /// above compares the generic loops with themselves), on rows shorter
    /// than [`SHORT`](super::SHORT) only.
    #[test]
    fn the_kernel_takes_short_rows_on_avx() {
        use super::super::forward::RowBlock;
        use crate::backend::layout::Centering;
        use std::mem::MaybeUninit;
        let x = vec![1.0f32, 2.0, 3.0, 4.0];
        for isa in Isa::available() {
            let mut y = [MaybeUninit::uninit(); 4];
            let mut stats = [[MaybeUninit::uninit(); 2]; 3];
            let [mean, var, rstd] = &mut stats;
            let mut block = RowBlock {
                x: &x,
                y: &mut y,
                len: 2,
                centering: Centering::Mean,
                gamma: None,
                beta: None,
                eps: 0.0,
                size: 2.0,
                stats: [mean, var, rstd],
            };
            let taken = Isa::force(isa, || super::forward_rows(&mut block));
            assert_eq!(taken, isa != Isa::Baseline, "{isa:?}");
            let long = vec![1.0f32; super::SHORT];
            let mut long_y = vec![MaybeUninit::uninit(); super::SHORT];
            let mut long_stats = [[MaybeUninit::uninit(); 1]; 3];
            let [long_mean, long_var, long_rstd] = &mut long_stats;
            let mut long_block = RowBlock {
                x: &long,
                y: &mut long_y,
                len: super::SHORT,
                centering: Centering::Mean,
                gamma: None,
                beta: None,
                eps: 1e-5,
                size: super::SHORT as f32,
                stats: [long_mean, long_var, long_rstd],
            };
            assert!(!Isa::force(isa, || super::forward_rows(&mut long_block)));
            if taken {
                // Rows [1, 2] and [3, 4]: mean 1.5 and 3.5, variance 0.25,
                // rstd 2, y = -1, 1, -1, 1.
                let y: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_eq!(y, [-1.0, 1.0, -1.0, 1.0]);
                let stat = |s: &[MaybeUninit<f32>; 2]| s.map(|v| unsafe { v.assume_init() });
                assert_eq!(
                    stats.each_ref().map(stat),
                    [[1.5, 3.5], [0.25, 0.25], [2.0, 2.0]]
                );
            }
        }
    }
}
