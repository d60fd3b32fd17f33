//! Sums that the compiler vectorizes.

use super::real::Real;

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
pub fn sum3<T: Real>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) -> T {
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
pub fn sum2<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    sum3(a, b, a, |va, vb, _| f(va, vb))
}

/// `Σ f(a[i])`, as [`sum3`].
#[inline(always)]
pub fn sum<T: Real>(a: &[T], f: impl Fn(T) -> T) -> T {
    sum2(a, a, |v, _| f(v))
}

/// [`Real::centered_sum`] for any float type, with [`sum`].
#[inline(always)]
pub fn generic_centered_sum<T: Real>(a: &[T], shift: T, m: T, square: bool) -> T {
    if square {
        sum(a, |v| {
            let d = (v - shift) - m;
            d * d
        })
    } else {
        sum(a, |v| (v - shift) - m)
    }
}

/// One row of the backward's first pass: `x`, `dy`, the weights `w` along
/// the row (ones without gamma) and the row's statistics, `xhat = ((x -
/// shift) - m) * r`.
pub struct RowTerms<'a, T> {
    pub x: &'a [T],
    pub dy: &'a [T],
    pub w: &'a [T],
    pub shift: T,
    pub m: T,
    pub r: T,
}

/// The row's sums: `Σ dy w` and `Σ dy w xhat`.
pub struct RowSums<T> {
    pub g: T,
    pub gx: T,
}

/// [`Real::row_sums`] for any float type: the two sums with [`sum2`] and
/// [`sum3`], then the parameter-gradient terms in a loop of their own.
#[inline(always)]
pub fn generic_row_sums<T: Real>(
    row: RowTerms<'_, T>,
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> RowSums<T> {
    let RowTerms {
        x,
        dy,
        w,
        shift,
        m,
        r,
    } = row;
    let g = sum2(dy, w, |d, w| d * w);
    let gx = sum3(x, dy, w, |v, d, w| d * w * (((v - shift) - m) * r));
    for (((dg, db), &v), &d) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(x).zip(dy) {
        *dg = *dg + d * (((v - shift) - m) * r);
        *db = *db + d;
    }
    RowSums { g, gx }
}
