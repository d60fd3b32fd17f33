//! The sums of the CPU kernels for f32, written with AVX2 and AVX-512
//! intrinsics: four independent accumulators of eight lanes, so that the
//! loop runs at load speed instead of waiting on one add chain (3-4 cycles
//! per add). LLVM does not get there from the generic code: given more than
//! one accumulator array it vectorized two lanes wide (see `sums`).
//! [`centered_sum`] is the statistics passes; [`row_sums`] is the
//! backward's first pass over a row, its two sums and the parameter
//! gradients' terms in one loop.

use super::isa::Isa;
use super::sums::{RowSums, RowTerms};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `Σ (v - shift)` and, with `square`, `Σ ((v - shift) - m)²` over `a`;
/// `None` on [`Isa::Baseline`] (the caller then uses the generic sum).
#[inline(always)]
pub fn centered_sum(a: &[f32], shift: f32, m: f32, square: bool) -> Option<f32> {
    match Isa::current() {
        // SAFETY: `Isa::current` names a set the CPU supports.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(unsafe { centered_sum_avx512(a, shift, m, square) }),
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(unsafe { centered_sum_avx2(a, shift, m, square) }),
        _ => None,
    }
}

/// The AVX2 sum: four accumulators of eight lanes, accumulator `k` taking
/// values `8k..8k + 8` of each block of 32.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
pub fn centered_sum_avx2(a: &[f32], shift: f32, m: f32, square: bool) -> f32 {
    let (vs, vm) = (_mm256_set1_ps(shift), _mm256_set1_ps(m));
    let mut acc = [_mm256_setzero_ps(); 4];
    let (blocks, rest) = a.as_chunks::<32>();
    for block in blocks {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `block` holds 32 values; this reads 8 of them.
            let v = unsafe { _mm256_loadu_ps(block.as_ptr().add(8 * k)) };
            *acc = _mm256_add_ps(*acc, term(v, vs, vm, square));
        }
    }
    finish(acc, rest, shift, m, square)
}

/// The same sums, each pair of accumulators in one 16-lane register: the
/// same additions in the same order, so the same bits, in half the
/// instructions.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,avx512f")]
pub fn centered_sum_avx512(a: &[f32], shift: f32, m: f32, square: bool) -> f32 {
    let (vs, vm) = (_mm512_set1_ps(shift), _mm512_set1_ps(m));
    let mut acc = [_mm512_setzero_ps(); 2];
    let (blocks, rest) = a.as_chunks::<32>();
    for block in blocks {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `block` holds 32 values; this reads 16 of them.
            let v = unsafe { _mm512_loadu_ps(block.as_ptr().add(16 * k)) };
            let d = _mm512_sub_ps(_mm512_sub_ps(v, vs), vm);
            *acc = _mm512_add_ps(*acc, if square { _mm512_mul_ps(d, d) } else { d });
        }
    }
    finish(eight_lane(acc), rest, shift, m, square)
}

/// Two 16-lane accumulators as the AVX2 code's four of eight lanes (the
/// first register's halves are accumulators 0 and 1).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,avx512f")]
fn eight_lane(acc: [__m512; 2]) -> [__m256; 4] {
    let halves = |v: __m512| {
        let high = _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1);
        [_mm512_castps512_ps256(v), _mm256_castpd_ps(high)]
    };
    let ([a0, a1], [a2, a3]) = (halves(acc[0]), halves(acc[1]));
    [a0, a1, a2, a3]
}

/// One term of the sums: `(v - shift) - m`, squared with `square`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn term(v: __m256, vs: __m256, vm: __m256, square: bool) -> __m256 {
    let d = _mm256_sub_ps(_mm256_sub_ps(v, vs), vm);
    if square { _mm256_mul_ps(d, d) } else { d }
}

/// The end of both sums: `rest` (under 32 values) by lanes of 8 into the
/// first accumulator, then by one, and the accumulators added up.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn finish(mut acc: [__m256; 4], rest: &[f32], shift: f32, m: f32, square: bool) -> f32 {
    let (vs, vm) = (_mm256_set1_ps(shift), _mm256_set1_ps(m));
    let (lanes, tail) = rest.as_chunks::<8>();
    for lane in lanes {
        // SAFETY: `lane` holds 8 values.
        let v = unsafe { _mm256_loadu_ps(lane.as_ptr()) };
        acc[0] = _mm256_add_ps(acc[0], term(v, vs, vm, square));
    }
    let mut sum = add_lanes(acc);
    for &v in tail {
        let d = (v - shift) - m;
        sum += if square { d * d } else { d };
    }
    sum
}

/// Four accumulators of eight lanes added up, always in the same order
/// (the same bits on every instruction set).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn add_lanes(acc: [__m256; 4]) -> f32 {
    let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut parts = [0.0f32; 8];
    // SAFETY: `parts` holds 8 values.
    unsafe { _mm256_storeu_ps(parts.as_mut_ptr(), total) };
    ((parts[0] + parts[4]) + (parts[1] + parts[5]))
        + ((parts[2] + parts[6]) + (parts[3] + parts[7]))
}

/// [`Real::row_sums`](super::real::Real::row_sums) for f32 rows: `None` on
/// [`Isa::Baseline`] (the caller then uses the generic loops).
///
/// One loop reads each value of `x`, `dy` and `w` once for both sums and
/// both parameter-gradient terms: the generic code took three loops over
/// the row, and its two sums were single chains of adds, which is what
/// the row's time went to (LayerNorm [4096, 128]'s backward took 1.8 times
/// its forward).
#[inline(always)]
pub fn row_sums(
    row: &RowTerms<'_, f32>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Option<RowSums<f32>> {
    let n = row.x.len();
    assert!(row.dy.len() == n && row.w.len() >= n && dgamma.len() >= n && dbeta.len() >= n);
    match Isa::current() {
        // SAFETY: `Isa::current` names a set the CPU supports; the lengths
        // are checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(unsafe { row_sums_avx512(row, dgamma, dbeta) }),
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(unsafe { row_sums_avx2(row, dgamma, dbeta) }),
        _ => None,
    }
}

/// The AVX2 row sums: accumulator `k` of each sum takes values `8k..8k + 8`
/// of each block of 32.
///
/// # Safety
/// `dy`, `w`, `dgamma` and `dbeta` hold at least `x.len()` values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn row_sums_avx2(
    row: &RowTerms<'_, f32>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> RowSums<f32> {
    let mut g = [_mm256_setzero_ps(); 4];
    let mut gx = [_mm256_setzero_ps(); 4];
    let blocks = row.x.len() / 32;
    for b in 0..blocks {
        for k in 0..4 {
            // SAFETY: values `32b + 8k..+8` are in every slice.
            let (tg, tgx) = unsafe { row_terms8(row, 32 * b + 8 * k, dgamma, dbeta) };
            g[k] = _mm256_add_ps(g[k], tg);
            gx[k] = _mm256_add_ps(gx[k], tgx);
        }
    }
    // SAFETY: as for this function.
    unsafe { finish_row(row, 32 * blocks, g, gx, dgamma, dbeta) }
}

/// The same loop, each pair of accumulators in one 16-lane register: the
/// same operations in the same order, so the same bits.
///
/// # Safety
/// As [`row_sums_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn row_sums_avx512(
    row: &RowTerms<'_, f32>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> RowSums<f32> {
    let (vs, vm, vr) = (
        _mm512_set1_ps(row.shift),
        _mm512_set1_ps(row.m),
        _mm512_set1_ps(row.r),
    );
    let mut g = [_mm512_setzero_ps(); 2];
    let mut gx = [_mm512_setzero_ps(); 2];
    let blocks = row.x.len() / 32;
    let (x, dy, w) = (row.x.as_ptr(), row.dy.as_ptr(), row.w.as_ptr());
    let (dg, db) = (dgamma.as_mut_ptr(), dbeta.as_mut_ptr());
    for b in 0..blocks {
        for k in 0..2 {
            let i = 32 * b + 16 * k;
            // SAFETY: values `i..i + 16` are in every slice (the caller's
            // lengths).
            unsafe {
                let d = _mm512_loadu_ps(dy.add(i));
                let h = _mm512_mul_ps(
                    _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x.add(i)), vs), vm),
                    vr,
                );
                let t = _mm512_mul_ps(d, _mm512_loadu_ps(w.add(i)));
                g[k] = _mm512_add_ps(g[k], t);
                gx[k] = _mm512_add_ps(gx[k], _mm512_mul_ps(t, h));
                let dh = _mm512_mul_ps(d, h);
                for (sums, v) in [(dg.add(i), dh), (db.add(i), d)] {
                    _mm512_storeu_ps(sums, _mm512_add_ps(_mm512_loadu_ps(sums), v));
                }
            }
        }
    }
    // SAFETY: as for this function.
    unsafe {
        finish_row(
            row,
            32 * blocks,
            eight_lane(g),
            eight_lane(gx),
            dgamma,
            dbeta,
        )
    }
}

/// Eight values of a row from `i`: adds `dy * xhat` and `dy` to `dgamma`
/// and `dbeta`, and returns the terms of the two sums, `dy * w` and
/// `dy * w * xhat`.
///
/// # Safety
/// Values `i..i + 8` are in every slice.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn row_terms8(
    row: &RowTerms<'_, f32>,
    i: usize,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> (__m256, __m256) {
    let (vs, vm, vr) = (
        _mm256_set1_ps(row.shift),
        _mm256_set1_ps(row.m),
        _mm256_set1_ps(row.r),
    );
    // SAFETY: the caller's bounds.
    unsafe {
        let d = _mm256_loadu_ps(row.dy.as_ptr().add(i));
        let v = _mm256_loadu_ps(row.x.as_ptr().add(i));
        let h = _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(v, vs), vm), vr);
        let t = _mm256_mul_ps(d, _mm256_loadu_ps(row.w.as_ptr().add(i)));
        let dh = _mm256_mul_ps(d, h);
        for (sums, v) in [
            (dgamma.as_mut_ptr().add(i), dh),
            (dbeta.as_mut_ptr().add(i), d),
        ] {
            _mm256_storeu_ps(sums, _mm256_add_ps(_mm256_loadu_ps(sums), v));
        }
        (t, _mm256_mul_ps(t, h))
    }
}

/// The end of the row sums: values from `done` on (under 32) by lanes of 8
/// into the first accumulators, then by one, and each sum's accumulators
/// added up ([`add_lanes`]) as [`finish`] does.
///
/// # Safety
/// As [`row_sums_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn finish_row(
    row: &RowTerms<'_, f32>,
    done: usize,
    mut g: [__m256; 4],
    mut gx: [__m256; 4],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> RowSums<f32> {
    let n = row.x.len();
    let mut i = done;
    while i + 8 <= n {
        // SAFETY: values `i..i + 8` are in every slice.
        let (tg, tgx) = unsafe { row_terms8(row, i, dgamma, dbeta) };
        g[0] = _mm256_add_ps(g[0], tg);
        gx[0] = _mm256_add_ps(gx[0], tgx);
        i += 8;
    }
    let (mut sum_g, mut sum_gx) = (add_lanes(g), add_lanes(gx));
    let RowTerms { shift, m, r, .. } = *row;
    for i in i..n {
        let (v, d, w) = (row.x[i], row.dy[i], row.w[i]);
        let h = ((v - shift) - m) * r;
        sum_g += d * w;
        sum_gx += d * w * h;
        dgamma[i] += d * h;
        dbeta[i] += d;
    }
    RowSums {
        g: sum_g,
        gx: sum_gx,
    }
}

#[cfg(test)]
mod tests {
    use super::super::isa::Isa;
    use super::super::sums::RowTerms;
    use super::{centered_sum, row_sums};

    /// Every length class (32-value blocks, 8-value lanes, scalar tail)
    /// against an f64 sum of the same terms, on each instruction set the
    /// CPU has; AVX-512 and AVX2 give the same bits.
    #[test]
    fn matches_an_f64_sum_and_the_sets_agree() {
        for len in [0usize, 1, 7, 8, 9, 16, 31, 32, 33, 48, 77, 768, 1001] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.731).sin() * 3.0 + 100.0)
                .collect();
            let (shift, m) = (a.first().copied().unwrap_or(0.0), 0.25f32);
            for square in [false, true] {
                let sums: Vec<(Isa, f32)> = Isa::available()
                    .into_iter()
                    .filter_map(|isa| {
                        Isa::force(isa, || centered_sum(&a, shift, m, square)).map(|s| (isa, s))
                    })
                    .collect();
                let terms = a.iter().map(|&v| {
                    let d = (v as f64 - shift as f64) - m as f64;
                    if square { d * d } else { d }
                });
                let (want, scale) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                for &(isa, got) in &sums {
                    assert!(
                        ((got as f64) - want).abs() <= 1e-6 * scale.max(1.0),
                        "{isa:?}, len {len}, square {square}: {got} vs {want}"
                    );
                    assert_eq!(
                        got.to_bits(),
                        sums[0].1.to_bits(),
                        "{isa:?} against {:?}, len {len}, square {square}",
                        sums[0].0
                    );
                }
            }
        }
    }

    /// The backward's row sums and parameter terms, every length class,
    /// against f64 sums of the same terms on each instruction set the CPU
    /// has; AVX-512 and AVX2 give the same bits, and the parameter terms
    /// are added to what the block's sums held.
    #[test]
    fn row_sums_match_f64_and_the_sets_agree() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 77, 128, 1001] {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.731).sin() * 3.0 + 100.0)
                .collect();
            let dy: Vec<f32> = (0..len).map(|i| ((i as f32) * 1.3).cos()).collect();
            let w: Vec<f32> = (0..len).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
            let (shift, m, r) = (x.first().copied().unwrap_or(0.0), 0.25f32, 0.5f32);
            let start: Vec<f32> = (0..len).map(|i| i as f32 * 0.125).collect();
            /// One instruction set's results, as bits.
            #[derive(PartialEq)]
            struct Bits {
                sums: [u32; 2],
                dgamma: Vec<u32>,
                dbeta: Vec<u32>,
            }
            let results: Vec<(Isa, Bits)> = Isa::available()
                .into_iter()
                .filter_map(|isa| {
                    let (mut dgamma, mut dbeta) = (start.clone(), start.clone());
                    let row = RowTerms {
                        x: &x,
                        dy: &dy,
                        w: &w,
                        shift,
                        m,
                        r,
                    };
                    let sums = Isa::force(isa, || row_sums(&row, &mut dgamma, &mut dbeta))?;
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let (mut want_g, mut want_gx, mut scale) = (0.0f64, 0.0f64, 0.0f64);
                    for i in 0..len {
                        let h = ((x[i] - shift) - m) as f64 * r as f64;
                        let t = dy[i] as f64 * w[i] as f64;
                        want_g += t;
                        want_gx += t * h;
                        scale += t.abs() * (1.0 + h.abs());
                        let (dg, db) = (
                            start[i] as f64 + dy[i] as f64 * h,
                            start[i] as f64 + dy[i] as f64,
                        );
                        assert!(
                            (dgamma[i] as f64 - dg).abs() <= 1e-6 * (1.0 + dg.abs()),
                            "{isa:?} {len} dgamma[{i}]"
                        );
                        assert!(
                            (dbeta[i] as f64 - db).abs() <= 1e-6 * (1.0 + db.abs()),
                            "{isa:?} {len} dbeta[{i}]"
                        );
                    }
                    let tol = 1e-6 * scale.max(1.0);
                    assert!(
                        (sums.g as f64 - want_g).abs() <= tol,
                        "{isa:?} {len}: {} vs {want_g}",
                        sums.g
                    );
                    assert!(
                        (sums.gx as f64 - want_gx).abs() <= tol,
                        "{isa:?} {len}: {} vs {want_gx}",
                        sums.gx
                    );
                    let result = Bits {
                        sums: [sums.g.to_bits(), sums.gx.to_bits()],
                        dgamma: bits(&dgamma),
                        dbeta: bits(&dbeta),
                    };
                    Some((isa, result))
                })
                .collect();
            for (isa, result) in &results {
                assert!(
                    result == &results[0].1,
                    "{isa:?} against {:?}, len {len}",
                    results[0].0
                );
            }
        }
    }
}
