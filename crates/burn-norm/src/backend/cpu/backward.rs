//! The backward pass: each group's sums and parameter gradients, then `dx`.

use super::chunks::for_each_chunk;
use super::real::Real;
use super::shared::{Shared, written};
use super::sums::{sum, sum2, sum3};
use super::{GroupPass, along_row, group_mean, simd};
use crate::backend::layout::{Centering, Groups};
use std::ops::Range;

/// The backward pass over a chunk of groups, one group at a time.
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
    /// A task's `dgamma`, `dbeta` (f64) and a row of ones.
    type State = (Vec<f64>, Vec<f64>, Vec<T>);

    #[inline(always)]
    fn run(&self, state: &mut Self::State, groups: Range<usize>) {
        for g in groups {
            self.group(state, g);
        }
    }
}

impl<T: Real> Backward<'_, T> {
    /// The backward pass over group `g`.
    #[inline(always)]
    fn group(&self, (dgamma, dbeta, ones): &mut (Vec<f64>, Vec<f64>, Vec<T>), g: usize) {
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
        let len = groups.segment_len();
        let s = groups.s;
        let (shift, m) = group_mean(x, &groups, g);
        let r = rstd[g];
        let row = along_row(&groups);
        // Along a row without gamma the weights are ones (one shared row,
        // so that both cases use the same vectorized loops).
        let w_row: &[T] = match gamma {
            Some(w) if row => w,
            _ => {
                if ones.len() != s {
                    ones.clear();
                    ones.resize(s, T::ONE);
                }
                ones
            }
        };
        let channel_w = |ch: usize| gamma.map_or(T::ONE, |w| w[ch]);
        // Pass 1, reading only: the sums, and the parameter gradients.
        let (mut sum_g, mut sum_gx) = (T::ZERO, T::ZERO);
        for start in groups.segments(g) {
            let segment = &x[start..start + len];
            // SAFETY: no one writes this group's values during this pass.
            let dy = unsafe { input.range(start, len) as &[T] };
            if row {
                sum_g = sum_g + sum2(dy, w_row, |d, w| d * w);
                sum_gx = sum_gx
                    + sum3(segment, dy, w_row, |v, d, w| {
                        d * w * (((v - shift) - m) * r)
                    });
                for (((dg, db), &v), &d) in
                    dgamma.iter_mut().zip(dbeta.iter_mut()).zip(segment).zip(dy)
                {
                    *dg += (d * (((v - shift) - m) * r)).to_f64();
                    *db += d.to_f64();
                }
                continue;
            }
            let first = groups.channel(start);
            let runs = segment.chunks(s).zip(dy.chunks(s));
            for (ch, (run, dy)) in (first..).zip(runs) {
                let w = channel_w(ch);
                let dot = sum2(run, dy, |v, d| d * (((v - shift) - m) * r));
                let total = sum(dy, |d| d);
                sum_g = sum_g + w * total;
                sum_gx = sum_gx + w * dot;
                dgamma[ch] += dot.to_f64();
                dbeta[ch] += total.to_f64();
            }
        }
        let mean_g = match groups.layout.centering {
            Centering::Mean => sum_g / size,
            // Without centering the output does not depend on the mean.
            Centering::None => T::ZERO,
        };
        let mean_gx = sum_gx / size;
        // Pass 2: dx, each value written after its dy was read; in runs of
        // one weight per channel, or along the row.
        let run_len = if row { len } else { s };
        for start in groups.segments(g) {
            let first = groups.channel(start);
            for (i, offset) in (0..len).step_by(run_len.max(1)).enumerate() {
                let begin = start + offset;
                let values = &x[begin..begin + run_len];
                let weights: &[T] = if row { w_row } else { &[] };
                let w = if row { T::ONE } else { channel_w(first + i) };
                let term = |v: T, d: T, wv: T| {
                    let h = ((v - shift) - m) * r;
                    r * ((d * wv - mean_g) - h * mean_gx)
                };
                if in_place {
                    // SAFETY: the segments of distinct groups are disjoint.
                    let dx = unsafe { out.range(begin, run_len) };
                    if row {
                        for ((slot, &v), &wv) in dx.iter_mut().zip(values).zip(weights) {
                            *slot = term(v, *slot, wv);
                        }
                    } else {
                        for (slot, &v) in dx.iter_mut().zip(values) {
                            *slot = term(v, *slot, w);
                        }
                    }
                } else {
                    // SAFETY: disjoint segments, and `dy` is a different
                    // buffer from `dx` here.
                    let (dx, dy) = unsafe {
                        (
                            out.range_uninit(begin, run_len),
                            input.range(begin, run_len) as &[T],
                        )
                    };
                    if row {
                        for (((slot, &v), &d), &wv) in
                            dx.iter_mut().zip(values).zip(dy).zip(weights)
                        {
                            slot.write(term(v, d, wv));
                        }
                    } else {
                        for ((slot, &v), &d) in dx.iter_mut().zip(values).zip(dy) {
                            slot.write(term(v, d, w));
                        }
                    }
                }
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
        |state, chunk| simd(&pass, state, chunk),
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
    use super::super::forward;
    use super::*;
    use crate::backend::layout::Layout;

    fn groups(shape: [usize; 4], layout: Layout) -> Groups {
        Groups::of(&shape, layout)
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
        let groups = groups([1, 2, 2, 1], Layout::GROUP);
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
            ([2, 3, 2, 40], Layout::GROUP),
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
            ([2, 4, 2, 30], Layout::GROUP),
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
}
