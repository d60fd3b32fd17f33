//! The statistics sums of the CPU kernels for f32, written with AVX2 and
//! AVX-512 intrinsics: four independent accumulators of eight lanes, so
//! that the loop runs at load speed instead of waiting on one add chain
//! (3-4 cycles per add). LLVM does not get there from the generic code:
//! given more than one accumulator array it vectorized two lanes wide (see
//! `sums`).

use super::isa::Isa;
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
fn centered_sum_avx2(a: &[f32], shift: f32, m: f32, square: bool) -> f32 {
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
fn centered_sum_avx512(a: &[f32], shift: f32, m: f32, square: bool) -> f32 {
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
    let halves = |v: __m512| {
        let high = _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1);
        (_mm512_castps512_ps256(v), _mm256_castpd_ps(high))
    };
    let ((a0, a1), (a2, a3)) = (halves(acc[0]), halves(acc[1]));
    finish([a0, a1, a2, a3], rest, shift, m, square)
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
    let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut parts = [0.0f32; 8];
    // SAFETY: `parts` holds 8 values.
    unsafe { _mm256_storeu_ps(parts.as_mut_ptr(), total) };
    let mut sum = ((parts[0] + parts[4]) + (parts[1] + parts[5]))
        + ((parts[2] + parts[6]) + (parts[3] + parts[7]));
    for &v in tail {
        let d = (v - shift) - m;
        sum += if square { d * d } else { d };
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::super::isa::Isa;
    use super::centered_sum;

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
}
