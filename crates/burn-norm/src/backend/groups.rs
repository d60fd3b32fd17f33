//! CPU kernels over plain slices: normalization of groups of values and
//! its backward pass. Backend glue (flex, ...) hands them the tensors'
//! storage.
//!
//! The input is `[n, c, s]`, row-major, split into groups as
//! [`layout`](super::layout) describes.
//!
//! Each group is read from memory once per pass, and a group of up to a few
//! hundred KiB stays in L2 between passes, so the kernels cost about one read
//! of the input and one write of the output. Groups are spread over the
//! calling thread and rayon's ([`chunks`](super::chunks)); inner loops keep
//! eight independent accumulators so the compiler vectorizes them.

use super::chunks::for_each_chunk;
pub use super::layout::{Grouping, Groups};
use std::mem::MaybeUninit;

/// The float types the kernels run in: f32 and f64 (f16/bf16 are widened
/// to f32 before they get here, as in the composed path).
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;

    /// The statistics passes: `Σ (v - shift)`, or with `square`
    /// `Σ ((v - shift) - m)²`.
    #[inline(always)]
    fn centered_sum(a: &[Self], shift: Self, m: Self, square: bool) -> Self {
        generic_centered_sum(a, shift, m, square)
    }
}

/// [`Real::centered_sum`] for any float type, with [`sum`].
#[inline(always)]
fn generic_centered_sum<T: Real>(a: &[T], shift: T, m: T, square: bool) -> T {
    if square {
        sum(a, |v| {
            let d = (v - shift) - m;
            d * d
        })
    } else {
        sum(a, |v| (v - shift) - m)
    }
}

macro_rules! real {
    ($t:ty $(, $centered_sum:path)?) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            $(
                #[inline(always)]
                fn centered_sum(a: &[Self], shift: Self, m: Self, square: bool) -> Self {
                    $centered_sum(a, shift, m, square).unwrap_or_else(|| generic_centered_sum(a, shift, m, square))
                }
            )?
        }
    };
}
// f32 has hand-written AVX2 statistics sums (see `sums_avx2`).
real!(f32, super::sums_avx2::centered_sum);
real!(f64);

/// The CPU kernels' answer to a dtype they do not take (the functional
/// layer only calls them for f32 and f64).
pub fn unsupported(dtype: burn::tensor::DType) -> ! {
    panic!("burn-norm's fused normalization takes f32 or f64 tensors, got {dtype:?}")
}

/// The CPU kernels' view of a [`Groups`] layout.
impl Groups {
    /// The contiguous segments of group `g`, as `(start, len)` of `s` values.
    fn segments(&self, g: usize) -> impl Iterator<Item = usize> + use<> {
        let (first, count, stride) = match self.grouping {
            Grouping::Rows => (g * self.s, 1, 0),
            Grouping::Channels => (g * self.s, self.n, self.c * self.s),
        };
        (0..count).map(move |k| first + k * stride)
    }

    /// Groups per chunk of work: enough (~16k values) to amortize taking it.
    fn per_task(&self) -> usize {
        (16_384 / self.size().max(1)).max(1)
    }
}

/// Partial sums per loop: one AVX2 register of f32 (two of f64).
const LANES: usize = 8;

/// `Σ f(a[i], b[i], c[i])` with [`LANES`] partial sums: fixed-size chunks
/// (`as_chunks`) keep bounds checks out of the loop so that it vectorizes,
/// and the partial sums are more accurate than one running sum.
///
/// LLVM's vectorizer is fragile here: more accumulators, or adding them
/// pairwise at the end, made it pack the loop two lanes wide instead of
/// eight (checked in the disassembly; 30% slower LayerNorm).
#[inline(always)]
fn sum3<T: Real>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) -> T {
    let (b, c) = (&b[..a.len()], &c[..a.len()]);
    let mut acc = [T::ZERO; LANES];
    let ((ca, ra), (cb, rb), (cc, rc)) = (
        a.as_chunks::<LANES>(),
        b.as_chunks::<LANES>(),
        c.as_chunks::<LANES>(),
    );
    for ((xa, xb), xc) in ca.iter().zip(cb).zip(cc) {
        for l in 0..LANES {
            acc[l] = acc[l] + f(xa[l], xb[l], xc[l]);
        }
    }
    // Sequential on purpose; see above.
    let mut total = acc.iter().fold(T::ZERO, |t, &a| t + a);
    for i in 0..ra.len() {
        total = total + f(ra[i], rb[i], rc[i]);
    }
    total
}

/// `Σ f(a[i], b[i])`, as [`sum3`].
#[inline(always)]
fn sum2<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    sum3(a, b, a, |va, vb, _| f(va, vb))
}

/// `Σ f(a[i])`, as [`sum3`].
#[inline(always)]
fn sum<T: Real>(a: &[T], f: impl Fn(T) -> T) -> T {
    sum2(a, a, |v, _| f(v))
}

/// Shift and mean of one group, as `(shift, mean - shift)`.
///
/// The mean is taken of `x - x[0]`: the subtraction is exact for data
/// within a factor of two of `x[0]` (Sterbenz), so a group with mean 1e4
/// and spread 1e-2 keeps its digits, where a plain f32 sum would carry an
/// error of the size of the spread. The two parts stay apart for the same
/// reason: `shift + mean` rounded to f32 would lose them again.
#[inline(always)]
fn group_mean<T: Real>(x: &[T], groups: &Groups, g: usize) -> (T, T) {
    let s = groups.s;
    let shift = x[groups.segments(g).next().unwrap_or(0)];
    // A `for` loop, not `Iterator::fold`: fold's closure would be compiled
    // out of line, for the baseline CPU instead of the AVX2 caller.
    let mut total = T::ZERO;
    for start in groups.segments(g) {
        total = total + T::centered_sum(&x[start..start + s], shift, T::ZERO, false);
    }
    (shift, total / T::from_f64(groups.size() as f64))
}

/// One group's share of a kernel pass, compiled twice by [`simd`].
///
/// A trait method rather than a closure: a method can be
/// `#[inline(always)]`, so that it and the helpers above are inlined into
/// the AVX2 copy; a closure body stays a separate function compiled for
/// the baseline, and the AVX2 wrapper around it would change nothing.
trait GroupPass: Sync {
    type State;
    type Out;
    fn run(&self, state: &mut Self::State, g: usize) -> Self::Out;
}

/// Runs `pass` on group `g`, compiled for AVX2 where the CPU has it
/// (detected at run time, cached by std): the loops above then work on 8
/// f32 at a time instead of the 4 of the x86-64 baseline (SSE2), without
/// asking users for `-C target-cpu`. No FMA: contracting `a * b + c` would
/// round differently from the reference.
#[inline(always)]
fn simd<P: GroupPass>(pass: &P, state: &mut P::State, g: usize) -> P::Out {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<P: GroupPass>(pass: &P, state: &mut P::State, g: usize) -> P::Out {
            pass.run(state, g)
        }
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2(pass, state, g) };
    }
    pass.run(state, g)
}

/// An output slice written by many tasks, each to its own groups' values.
struct Shared<T>(*mut T, usize);
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// Concurrent callers must take disjoint ranges.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.1);
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

    /// Writes value `i`.
    ///
    /// # Safety
    /// Concurrent callers must write distinct values.
    unsafe fn write(&self, i: usize, value: T) {
        assert!(i < self.1);
        unsafe { self.0.add(i).write(value) }
    }

    /// [`Shared::range`] for a buffer that may not be initialized yet.
    ///
    /// # Safety
    /// As [`Shared::range`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn range_uninit(&self, start: usize, len: usize) -> &mut [MaybeUninit<T>] {
        assert!(start + len <= self.1);
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start).cast(), len) }
    }
}

/// Per-group statistics written by [`forward`].
pub struct Statistics<T> {
    pub mean: Vec<T>,
    /// Biased variance.
    pub var: Vec<T>,
    /// `1 / sqrt(var + epsilon)`.
    pub rstd: Vec<T>,
}

/// The forward pass over one group: statistics, then `y`.
struct Forward<'a, T> {
    x: &'a [T],
    groups: Groups,
    gamma: Option<&'a [T]>,
    beta: Option<&'a [T]>,
    eps: T,
    size: T,
    out: Shared<T>,
}

impl<T: Real> GroupPass for Forward<'_, T> {
    type State = ();
    /// `(mean, var, rstd)`.
    type Out = (T, T, T);

    #[inline(always)]
    fn run(&self, _: &mut (), g: usize) -> (T, T, T) {
        let Self {
            x,
            groups,
            gamma,
            beta,
            eps,
            size,
            ref out,
        } = *self;
        let Groups { s, grouping, .. } = groups;
        let (shift, m) = group_mean(x, &groups, g);
        let mut squares = T::ZERO;
        for start in groups.segments(g) {
            squares = squares + T::centered_sum(&x[start..start + s], shift, m, true);
        }
        let var = squares / size;
        let r = T::ONE / (var + eps).sqrt();
        for start in groups.segments(g) {
            let row = &x[start..start + s];
            // SAFETY: the segments of distinct groups are disjoint.
            let y = unsafe { out.range_uninit(start, s) };
            match grouping {
                Grouping::Rows => match (gamma, beta) {
                    (Some(w), Some(b)) => {
                        for (((y, &v), &w), &b) in y.iter_mut().zip(row).zip(w).zip(b) {
                            y.write(((v - shift) - m) * r * w + b);
                        }
                    }
                    (Some(w), None) => {
                        for ((y, &v), &w) in y.iter_mut().zip(row).zip(w) {
                            y.write(((v - shift) - m) * r * w);
                        }
                    }
                    (None, Some(b)) => {
                        for ((y, &v), &b) in y.iter_mut().zip(row).zip(b) {
                            y.write(((v - shift) - m) * r + b);
                        }
                    }
                    (None, None) => {
                        for (y, &v) in y.iter_mut().zip(row) {
                            y.write(((v - shift) - m) * r);
                        }
                    }
                },
                Grouping::Channels => {
                    let scale = gamma.map_or(r, |w| r * w[g]);
                    let bias = beta.map_or(T::ZERO, |b| b[g]);
                    for (y, &v) in y.iter_mut().zip(row) {
                        y.write(((v - shift) - m) * scale + bias);
                    }
                }
            }
        }
        (shift + m, var, r)
    }
}

/// Normalizes each group of `x`:
/// `y = (x - mean) * rstd * gamma + beta`, `rstd = 1 / sqrt(var + epsilon)`
/// with the biased variance; returns `y` and the statistics.
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

/// A `Vec` of `len` values that `write` fills, not zeroed first: zeroing
/// would cost a whole extra pass over memory (or fresh zero pages).
///
/// # Safety
/// `write` initializes every one of the `len` values it is given.
unsafe fn written<T, R>(len: usize, write: impl FnOnce(&mut [MaybeUninit<T>]) -> R) -> (Vec<T>, R) {
    let mut values = Vec::with_capacity(len);
    let result = write(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the caller's promise.
    unsafe { values.set_len(len) };
    (values, result)
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
    let pass = Forward {
        x,
        groups,
        gamma,
        beta,
        eps: T::from_f64(epsilon),
        size: T::from_f64(groups.size() as f64),
        out: Shared(y.as_mut_ptr().cast::<T>(), y.len()),
    };
    let k = groups.count();
    let (mut mean, mut var, mut rstd) = (
        Vec::with_capacity(k),
        Vec::with_capacity(k),
        Vec::with_capacity(k),
    );
    let stats = [&mut mean, &mut var, &mut rstd].map(|v| Shared(v.as_mut_ptr(), k));
    for_each_chunk(
        k,
        groups.per_task(),
        || (),
        |_, chunk| {
            for g in chunk {
                let (m, v, r) = simd(&pass, &mut (), g);
                // SAFETY: each group is written by one task.
                unsafe {
                    stats[0].write(g, m);
                    stats[1].write(g, v);
                    stats[2].write(g, r);
                }
            }
        },
    );
    // SAFETY: every group's statistics were written above.
    unsafe {
        mean.set_len(k);
        var.set_len(k);
        rstd.set_len(k);
    }
    Statistics { mean, var, rstd }
}

/// The backward pass over one group: sums and parameter gradients, then `dx`.
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

impl<T: Real> GroupPass for Backward<'_, T> {
    /// A task's `dgamma`, `dbeta` (f64) and scratch row.
    type State = (Vec<f64>, Vec<f64>, Vec<T>);
    type Out = ();

    #[inline(always)]
    fn run(&self, (dgamma, dbeta, scratch): &mut Self::State, g: usize) {
        let Self {
            x,
            groups,
            rstd,
            gamma,
            size,
            in_place,
            ref input,
            ref out,
        } = *self;
        let Groups { s, grouping, .. } = groups;
        let (shift, m) = group_mean(x, &groups, g);
        let r = rstd[g];
        // gamma along the row (Rows), or one value per group
        // (Channels, spread over a per-task scratch row so that
        // both cases share the vectorized loops below).
        let (row_w, group_w): (Option<&[T]>, T) = match (gamma, grouping) {
            (None, _) => (None, T::ONE),
            (Some(w), Grouping::Rows) => (Some(w), T::ONE),
            (Some(w), Grouping::Channels) => (None, w[g]),
        };
        let w: &[T] = match row_w {
            Some(w) => w,
            None => {
                scratch.clear();
                scratch.resize(s, group_w);
                scratch
            }
        };
        // Pass 1, reading only: the sums, and the parameter gradients.
        let (mut sum_g, mut sum_gx) = (T::ZERO, T::ZERO);
        for start in groups.segments(g) {
            let row = &x[start..start + s];
            // SAFETY: no one writes this group's values during this pass.
            let dy = unsafe { input.range(start, s) as &[T] };
            sum_g = sum_g + sum2(dy, w, |d, w| d * w);
            let dot = sum2(row, dy, |v, d| d * (((v - shift) - m) * r));
            match grouping {
                Grouping::Rows => {
                    sum_gx = sum_gx + sum3(row, dy, w, |v, d, w| d * w * (((v - shift) - m) * r));
                    for (((dg, db), &v), &d) in
                        dgamma.iter_mut().zip(dbeta.iter_mut()).zip(row).zip(dy)
                    {
                        *dg += (d * (((v - shift) - m) * r)).to_f64();
                        *db += d.to_f64();
                    }
                }
                Grouping::Channels => {
                    sum_gx = sum_gx + group_w * dot;
                    dgamma[g] += dot.to_f64();
                    dbeta[g] += sum(dy, |d| d).to_f64();
                }
            }
        }
        let (mean_g, mean_gx) = (sum_g / size, sum_gx / size);
        // Pass 2: dx, each value written after its dy was read.
        for start in groups.segments(g) {
            let row = &x[start..start + s];
            if in_place {
                // SAFETY: the segments of distinct groups are disjoint.
                let dx = unsafe { out.range(start, s) };
                for ((slot, &v), &w) in dx.iter_mut().zip(row).zip(w) {
                    let h = ((v - shift) - m) * r;
                    *slot = r * ((*slot * w - mean_g) - h * mean_gx);
                }
            } else {
                // SAFETY: disjoint segments, and `dy` is a different
                // buffer from `dx` here.
                let (dx, dy) =
                    unsafe { (out.range_uninit(start, s), input.range(start, s) as &[T]) };
                for (((slot, &v), &d), &w) in dx.iter_mut().zip(row).zip(dy).zip(w) {
                    let h = ((v - shift) - m) * r;
                    slot.write(r * ((d * w - mean_g) - h * mean_gx));
                }
            }
        }
    }
}

/// Backward of [`forward`]: from `x`, each group's `rstd` and the upstream
/// gradient `dy`, returns `(dx, dgamma, dbeta)`:
///
/// ```text
/// xhat = (x - mean) * rstd,   g = dy * gamma
/// dx   = rstd * (g - mean(g) - xhat * mean(g * xhat))     (means over the group)
/// dgamma = Σ dy * xhat,  dbeta = Σ dy                     (over all but gamma's axis)
/// ```
///
/// The group mean is recomputed (the group is in cache) rather than read
/// back: stored in the element type, the mean of values at 1e4 would carry
/// an error of 5e-4, a twentieth of a 1e-2 spread. `dgamma`, `dbeta` are
/// accumulated in f64.
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
        groups.count(),
        groups.per_task(),
        || (vec![0.0f64; p], vec![0.0f64; p], Vec::new()),
        |state, chunk| {
            for g in chunk {
                simd(&pass, state, g);
            }
        },
    );
    let (mut dgamma, mut dbeta) = (vec![0.0f64; p], vec![0.0f64; p]);
    for (gb, bb, _) in partial {
        dgamma.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
    }
    (
        dgamma.into_iter().map(T::from_f64).collect(),
        dbeta.into_iter().map(T::from_f64).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row [1, 2, 3, 4]: mean 2.5, var 1.25; epsilon 0.75 makes rstd 1/sqrt(2).
    #[test]
    fn rows_by_hand() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let groups = Groups {
            n: 1,
            c: 1,
            s: 4,
            grouping: Grouping::Rows,
        };
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

    /// Channels of [n=2, c=2, s=2]: channel 0 holds 1, 2, 5, 6 (mean 3.5,
    /// var 4.25), channel 1 holds 10, 10, 10, 14 (mean 11, var 3).
    #[test]
    fn channels_by_hand() {
        let x = [1.0f64, 2.0, 10.0, 10.0, 5.0, 6.0, 10.0, 14.0];
        let groups = Groups {
            n: 2,
            c: 2,
            s: 2,
            grouping: Grouping::Channels,
        };
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

    /// Writing dx over dy gives bit for bit what a separate buffer gives.
    #[test]
    fn in_place_backward_is_identical() {
        let x: Vec<f32> = (0..2 * 3 * 40)
            .map(|i| ((i as f32) * 0.37).sin() * 3.0 + 5.0)
            .collect();
        let dy: Vec<f32> = (0..x.len()).map(|i| ((i as f32) * 1.3).cos()).collect();
        for grouping in [Grouping::Rows, Grouping::Channels] {
            let groups = Groups {
                n: 2,
                c: 3,
                s: 40,
                grouping,
            };
            let w: Vec<f32> = (0..groups.params()).map(|i| 0.5 + i as f32 * 0.1).collect();
            let (_, stats) = forward(&x, groups, Some(&w), None, 1e-5);
            let (dx, dgamma, dbeta) = backward(&x, groups, &stats.rstd, Some(&w), &dy);
            let separate = (dgamma, dbeta);
            let mut dy_dx = dy.clone();
            let in_place = backward_in_place(&x, groups, &stats.rstd, Some(&w), &mut dy_dx);
            assert_eq!(dx, dy_dx, "{grouping:?}");
            assert_eq!(separate, in_place, "{grouping:?}");
        }
    }
}
