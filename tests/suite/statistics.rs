//! `NormOps::normalize` called directly, with its statistics returned and
//! discarded: the same output either way, hand-derived statistics where
//! returned, and where discarded, empty statistics from the CubeCL kernels
//! (which then bind the unused slots to gamma's buffer: it must come out
//! unchanged) and whole ones from the CPU kernel.

use crate::common::{name, values};
use burn::backend::Dispatch;
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::backend::{Layout, NormOps, Normalized, Statistics};

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
    let Normalized {
        output,
        mean,
        var,
        rstd,
    } = Dispatch::normalize(
        rows(device).into_dispatch(),
        gamma.into_dispatch(),
        params(-1.0, device).into_dispatch(),
        [true, true],
        Layout::LAYER,
        1e-5,
        statistics,
    );
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

on_every_backend!(statistics_come_back_as_asked);
