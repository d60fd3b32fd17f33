//! Layers without gamma and beta, in inference: their absent parameters
//! reach the kernels as stand-ins for `x` itself, which the kernels drop on
//! arrival and bind `x` in their slots (on wgpu the output then goes over
//! an `x` that nothing else holds). The output must be the hand-derived
//! one whether `x` is consumed, still held by the caller (and then left
//! unchanged), or a transposed view.

use crate::common::{assert_close, name, tensor, values};
use burn::tensor::Device;
use burn_norm::{LayerNormConfig, RmsNormConfig};

/// Two rows of 8: `1..=8` and `2, 4, ..., 16`.
fn rows() -> Vec<f32> {
    (1..=8)
        .chain((1..=8).map(|v| 2 * v))
        .map(|v| v as f32)
        .collect()
}

/// LayerNorm of `rows`: row 1 has mean 4.5 and biased variance
/// (3.5² + 2.5² + 1.5² + 0.5²) * 2 / 8 = 5.25; row 2 is twice row 1, so
/// its normalized values are the same up to epsilon (variance 21).
fn layer_normed(epsilon: f64) -> Vec<f32> {
    [(1.0, 4.5, 5.25), (2.0, 9.0, 21.0)]
        .into_iter()
        .flat_map(|(scale, mean, var)| {
            (1..=8).map(move |v| ((scale * v as f64 - mean) / (var + epsilon).sqrt()) as f32)
        })
        .collect()
}

/// RMSNorm of `rows`: mean squares 204 / 8 = 25.5 and 4 x 25.5 = 102.
fn rms_normed(epsilon: f64) -> Vec<f32> {
    [(1.0, 25.5), (2.0, 102.0)]
        .into_iter()
        .flat_map(|(scale, ms)| {
            (1..=8).map(move |v| (scale * v as f64 / (ms + epsilon).sqrt()) as f32)
        })
        .collect()
}

fn normalize_without_parameters(device: &Device) {
    let epsilon = 1e-5;
    let layer = LayerNormConfig::new(8)
        .with_elementwise_affine(false)
        .init(device);
    let rms = RmsNormConfig::new(8)
        .with_elementwise_affine(false)
        .with_epsilon(epsilon)
        .init(device);
    let what = |case: &str| format!("{case} on {}", name(device));

    // Consumed: nothing else holds `x`.
    let y = layer.forward(tensor::<2>(&rows(), &[2, 8], device));
    assert_close(
        &what("LayerNorm, x consumed"),
        &values(y),
        &layer_normed(epsilon),
        1e-5,
    );
    let y = rms.forward(tensor::<2>(&rows(), &[2, 8], device));
    assert_close(
        &what("RMSNorm, x consumed"),
        &values(y),
        &rms_normed(epsilon),
        1e-5,
    );

    // Held by the caller: `x` must come out unchanged.
    let x = tensor::<2>(&rows(), &[2, 8], device);
    let y = layer.forward(x.clone());
    assert_close(
        &what("LayerNorm, x held"),
        &values(y),
        &layer_normed(epsilon),
        1e-5,
    );
    assert_eq!(values(x), rows(), "{}", what("x held"));

    // A transposed view: the rows are columns of the stored `[8, 2]`.
    let (rows, columns) = (rows(), (0..16).map(|i| rows()[(i % 2) * 8 + i / 2]));
    let stored = tensor::<2>(&columns.collect::<Vec<_>>(), &[8, 2], device);
    assert_eq!(values(stored.clone().transpose()), rows);
    let y = layer.forward(stored.transpose());
    assert_close(
        &what("LayerNorm, a view"),
        &values(y),
        &layer_normed(epsilon),
        1e-5,
    );
}

on_every_backend!(normalize_without_parameters);
