//! `NormOps::normalize` called directly, with its statistics returned and
//! discarded: the same output either way, hand-derived statistics where
//! returned, and where discarded, empty statistics from the CubeCL kernels
//! (which then bind the unused slots to gamma's buffer: it must come out
//! unchanged) and whole ones from the CPU kernel. Then running statistics
//! updated in the operation (`Statistics::Running`), BatchNorm's per channel
//! and InstanceNorm's per instance, against the update computed in f64 from
//! the batch, on groups that the GPU takes in one team and on groups it
//! takes in blocks.

use crate::common::{name, values};
use burn::backend::Dispatch;
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::backend::{Layout, NormOps, Normalized, RunningUpdate, Statistics};

/// Two rows of 8: `1..=8` and `2, 4, ..., 16`.
fn rows(device: &Device) -> Tensor<4> {
    let x: Vec<f32> = (1..=8)
        .chain((1..=8).map(|v| 2 * v))
        .map(|v| v as f32)
        .collect();
    Tensor::from_data(TensorData::new(x, [2, 1, 1, 8]), device)
}

fn params(offset: f32, device: &Device) -> Tensor<1> {
    let p: Vec<f32> = (0..8).map(|j| offset + 0.25 * j as f32).collect();
    Tensor::from_data(TensorData::new(p, [8]), device)
}

/// `[y, mean, var, rstd]` of LayerNorm over `rows`.
fn layer_norm(gamma: Tensor<1>, device: &Device, statistics: Statistics) -> [Tensor<1>; 4] {
    flat(Dispatch::normalize(
        rows(device).into_dispatch(),
        gamma.clone().into_dispatch(),
        params(-1.0, device).into_dispatch(),
        // No running statistics: stand-ins, never read.
        gamma.clone().into_dispatch(),
        gamma.into_dispatch(),
        [true, true],
        Layout::LAYER,
        1e-5,
        statistics,
        RunningUpdate::NONE,
    ))
}

/// `[y, mean, var, rstd]`, `y` flattened.
fn flat(out: Normalized<Dispatch>) -> [Tensor<1>; 4] {
    let Normalized {
        output,
        mean,
        var,
        rstd,
    } = out;
    [
        Tensor::<4>::from_dispatch(output).flatten(0, 3),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
        Tensor::from_dispatch(rstd),
    ]
}

fn statistics_come_back_as_asked(device: &Device) {
    let gamma = params(0.5, device);
    let [y, mean, var, rstd] = layer_norm(gamma.clone(), device, Statistics::Returned);
    // Row 1: mean 4.5, biased variance (3.5² + 2.5² + 1.5² + 0.5²) * 2 / 8 =
    // 5.25; row 2 is twice row 1: mean 9, variance 21.
    assert_eq!(values(mean.clone()), [4.5, 9.0]);
    let (var, rstd) = (values(var), values(rstd));
    for (got, want) in var.iter().zip([5.25f64, 21.0]) {
        assert!((*got as f64 - want).abs() <= 1e-5 * want, "var {var:?}");
    }
    for (got, v) in rstd.iter().zip([5.25f64, 21.0]) {
        let want = 1.0 / (v + 1e-5).sqrt();
        assert!((*got as f64 - want).abs() <= 1e-6 * want, "rstd {rstd:?}");
    }

    let [y_discarded, mean_discarded, var_discarded, rstd_discarded] =
        layer_norm(gamma.clone(), device, Statistics::Discarded);
    assert_eq!(values(y_discarded), values(y), "{}", name(device));
    let discarded = [mean_discarded, var_discarded, rstd_discarded].map(|t| t.dims()[0]);
    let expected = if name(device) == "wgpu" { 0 } else { 2 };
    assert_eq!(discarded, [expected; 3], "{}", name(device));
    // The discarded slots share gamma's buffer on wgpu: a kernel that wrote
    // them anyway would have changed these values.
    assert_eq!(values(gamma), values(params(0.5, device)));
}

/// `[n, c, 1, s]` values far from zero: `10 + sin(0.37 i) (1 + channel)`.
fn channels(shape: [usize; 4], device: &Device) -> (Tensor<4>, Vec<f32>) {
    let [n, c, _, s] = shape;
    let x: Vec<f32> = (0..n * c * s)
        .map(|i| 10.0 + (0.37 * i as f32).sin() * (1 + (i / s) % c) as f32)
        .collect();
    (
        Tensor::from_data(TensorData::new(x.clone(), shape), device),
        x,
    )
}

fn running_statistics_update_in_the_operation(device: &Device) {
    // BatchNorm, a group per channel: [2, 3, 1, 2] has 4 values per
    // channel, one team each on wgpu; [4, 3, 1, 1000] 4,000, more than a
    // team holds, in blocks. InstanceNorm, a group per channel of each
    // sample, each blending its channel's running statistics: [2, 3, 1, 2],
    // and [2, 3, 1, 20000], in blocks on wgpu.
    let cases = [
        (Layout::BATCH, [2, 3, 1, 2]),
        (Layout::BATCH, [4, 3, 1, 1000]),
        (Layout::INSTANCE, [2, 3, 1, 2]),
        (Layout::INSTANCE, [2, 3, 1, 20000]),
    ];
    for (layout, shape) in cases {
        let [n, c, _, s] = shape;
        let (x, values_x) = channels(shape, device);
        let instance = |i: usize, ch: usize| &values_x[(i * c + ch) * s..(i * c + ch + 1) * s];
        // Each group's values, in the operation's order of groups.
        let groups: Vec<Vec<f64>> = if layout == Layout::BATCH {
            (0..c)
                .map(|ch| {
                    (0..n)
                        .flat_map(|i| instance(i, ch))
                        .map(|&v| v as f64)
                        .collect()
                })
                .collect()
        } else {
            (0..n * c)
                .map(|g| instance(g / c, g % c).iter().map(|&v| v as f64).collect())
                .collect()
        };
        let old_mean = [1.0f32, -2.0, 0.5];
        let old_var = [2.0f32, 0.5, 3.0];
        let vector = |v: [f32; 3]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [3]), device);
        let update = RunningUpdate {
            factor: 0.25,
            count: groups[0].len(),
        };
        let out = |statistics, update| {
            flat(Dispatch::normalize(
                x.clone().into_dispatch(),
                vector([1.0, 2.0, 0.5]).into_dispatch(),
                vector([0.0, 1.0, -1.0]).into_dispatch(),
                vector(old_mean).into_dispatch(),
                vector(old_var).into_dispatch(),
                [true, true],
                layout,
                1e-5,
                statistics,
                update,
            ))
            .map(values)
        };
        let at = format!("{} {layout:?} {shape:?}", name(device));
        let [y, mean, var, rstd] = out(Statistics::Running, update);
        let [y_batch, _, _, rstd_batch] = out(Statistics::Returned, RunningUpdate::NONE);
        assert_eq!(y, y_batch, "{at}: output");
        assert_eq!(rstd, rstd_batch, "{at}: rstd");
        assert_eq!(mean.len(), groups.len(), "{at}: one per group");
        for (g, group) in groups.iter().enumerate() {
            let count = group.len() as f64;
            let m = group.iter().sum::<f64>() / count;
            let biased = group.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / count;
            // Group `g` blends the running statistics of channel `g mod 3`.
            let want_mean = 0.75 * old_mean[g % 3] as f64 + 0.25 * m;
            let want_var = 0.75 * old_var[g % 3] as f64 + 0.25 * biased * count / (count - 1.0);
            for (what, got, want) in [("mean", mean[g], want_mean), ("var", var[g], want_var)] {
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{at}: running {what} of group {g}: {got}, expected {want}"
                );
            }
        }
    }
}

on_every_backend!(
    statistics_come_back_as_asked,
    running_statistics_update_in_the_operation
);
