//! The statistics sums of the CPU kernels for f32, written with AVX2
//! intrinsics: four independent accumulators of eight lanes, so that the
//! loop runs at load speed instead of waiting on one add chain (3-4 cycles
//! per add). LLVM does not get there from the generic code: given more than
//! one accumulator array it vectorized two lanes wide (see `sums`).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `Σ (v - shift)` and, with `square`, `Σ ((v - shift) - m)²` over `a`;
/// `None` where the CPU has no AVX2 (the caller then uses the generic sum).
#[inline(always)]
pub fn centered_sum(a: &[f32], shift: f32, m: f32, square: bool) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return Some(unsafe { centered_sum_avx2(a, shift, m, square) });
    }
    let _ = (a, shift, m, square);
    None
}

/// `#[inline]`: called once or twice per group, from the AVX2 copy of a
/// kernel pass, which can then take it in.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn centered_sum_avx2(a: &[f32], shift: f32, m: f32, square: bool) -> f32 {
    let term = |v: __m256, vs: __m256, vm: __m256| {
        let d = _mm256_sub_ps(_mm256_sub_ps(v, vs), vm);
        if square { _mm256_mul_ps(d, d) } else { d }
    };
    let (vs, vm) = (_mm256_set1_ps(shift), _mm256_set1_ps(m));
    let mut acc = [_mm256_setzero_ps(); 4];
    let (blocks, rest) = a.as_chunks::<32>();
    for block in blocks {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `block` holds 32 values; this reads 8 of them.
            let v = unsafe { _mm256_loadu_ps(block.as_ptr().add(8 * k)) };
            *acc = _mm256_add_ps(*acc, term(v, vs, vm));
        }
    }
    let (lanes, tail) = rest.as_chunks::<8>();
    for lane in lanes {
        // SAFETY: `lane` holds 8 values.
        let v = unsafe { _mm256_loadu_ps(lane.as_ptr()) };
        acc[0] = _mm256_add_ps(acc[0], term(v, vs, vm));
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
    use super::centered_sum;

    /// Every length class (32-value blocks, 8-value lanes, scalar tail)
    /// against an f64 sum of the same terms.
    #[test]
    fn matches_an_f64_sum() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 77, 768, 1001] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.731).sin() * 3.0 + 100.0)
                .collect();
            let (shift, m) = (a.first().copied().unwrap_or(0.0), 0.25f32);
            for square in [false, true] {
                let Some(got) = centered_sum(&a, shift, m, square) else {
                    return; // no AVX2 here: the generic sum is used instead
                };
                let terms = a.iter().map(|&v| {
                    let d = (v as f64 - shift as f64) - m as f64;
                    if square { d * d } else { d }
                });
                let (want, scale) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                assert!(
                    ((got as f64) - want).abs() <= 1e-6 * scale.max(1.0),
                    "len {len}, square {square}: {got} vs {want}"
                );
            }
        }
    }
}
