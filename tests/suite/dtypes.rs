//! An input whose dtype is not the layer's: f16 activations through an f32
//! model (mixed precision), or f64 data through one. The layer computes in
//! f32 for half inputs and in the input's dtype otherwise, returns the
//! input's dtype, and keeps its parameters, running statistics and their
//! gradients in theirs.

use crate::common::{supports_f16, supports_f64, values64};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_norm::{
    BatchNormConfig, BatchRenormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig,
    RmsNormConfig,
};

const ROWS: usize = 6;
const C: usize = 4;

/// Values exact in f16, per row and column.
fn data() -> Vec<f32> {
    (0..ROWS * C)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.5 + (i % C) as f32)
        .collect()
}

/// Each channel's mean and unbiased variance over the rows, in f64.
fn column_moments(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let n = ROWS as f64;
    let mean: Vec<f64> = (0..C)
        .map(|c| (0..ROWS).map(|r| x[r * C + c] as f64).sum::<f64>() / n)
        .collect();
    let var = (0..C)
        .map(|c| {
            let sq: f64 = (0..ROWS)
                .map(|r| (x[r * C + c] as f64 - mean[c]).powi(2))
                .sum();
            sq / (n - 1.0)
        })
        .collect();
    (mean, var)
}

fn close(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: {a} against {e}"
        );
    }
}

/// BatchNorm's default configuration trains on f16 activations: the
/// running statistics stay f32 and take the batch's (momentum 0.1 from 0
/// and 1); the output is f16. The same for BatchRenorm, and InstanceNorm
/// with running statistics (each row is an instance of one value per
/// channel there, so it takes `[ROWS, C, 2]`, the row twice).
fn training_on_half_precision_keeps_f32_statistics(device: &Device) {
    if !supports_f16(device) {
        return;
    }
    let ad = device.clone().autodiff();
    let x = data();
    let (mean, var) = column_moments(&x);
    let expected_mean: Vec<f64> = mean.iter().map(|m| 0.1 * m).collect();
    let expected_var: Vec<f64> = var.iter().map(|v| 0.9 + 0.1 * v).collect();
    let input = || Tensor::<2>::from_data(TensorData::new(x.clone(), [ROWS, C]), (&ad, DType::F16));

    let bn = BatchNormConfig::new(C).init(&ad);
    let y = bn.forward(input());
    assert_eq!(y.dtype(), DType::F16);
    let running = bn.running_mean().unwrap();
    assert_eq!(running.dtype(), DType::F32, "the buffers keep their dtype");
    close(
        "BatchNorm running mean",
        &values64(running),
        &expected_mean,
        1e-3,
    );
    close(
        "BatchNorm running var",
        &values64(bn.running_var().unwrap()),
        &expected_var,
        1e-3,
    );

    let renorm = BatchRenormConfig::new(C).init(&ad);
    assert_eq!(renorm.forward(input()).dtype(), DType::F16);
    close(
        "BatchRenorm running mean",
        &values64(renorm.running_mean()),
        &expected_mean,
        1e-3,
    );

    let norm = InstanceNormConfig::new(C)
        .with_track_running_stats(true)
        .init(&ad);
    let twice = input().reshape([ROWS, C, 1]).repeat_dim(2, 2);
    assert_eq!(norm.forward(twice).dtype(), DType::F16);
    // Each instance is one value twice: mean that value, variance 0.
    let expected: Vec<f64> = mean.iter().map(|m| 0.1 * m).collect();
    close(
        "InstanceNorm running mean",
        &values64(norm.running_mean().unwrap()),
        &expected,
        1e-3,
    );
    close(
        "InstanceNorm running var",
        &values64(norm.running_var().unwrap()),
        &[0.9; C],
        1e-3,
    );
}

/// f64 data through f32 layers: computed in f64 (the parameters widened
/// exactly), the output f64, the parameter gradients f32.
fn double_precision_through_single_precision_layers(device: &Device) {
    if !supports_f64(device) {
        return;
    }
    let ad = device.clone().autodiff();
    let x = data();
    let input = || {
        Tensor::<2>::from_data(TensorData::new(x.clone(), [ROWS, C]), (&ad, DType::F64))
            .require_grad()
    };
    // BatchNorm in training: (x - mean) / sqrt(var_biased + eps).
    let (mean, var) = column_moments(&x);
    let expected: Vec<f64> = (0..ROWS * C)
        .map(|i| {
            let c = i % C;
            let biased = var[c] * (ROWS as f64 - 1.0) / ROWS as f64;
            (x[i] as f64 - mean[c]) / (biased + 1e-5).sqrt()
        })
        .collect();
    let bn = BatchNormConfig::new(C).init(&ad);
    let x64 = input();
    let y = bn.forward(x64.clone());
    assert_eq!(y.dtype(), DType::F64);
    let grads = y.clone().sum().backward();
    close("BatchNorm f64", &values64(y), &expected, 1e-12);
    let dgamma = bn.gamma.as_ref().unwrap().val().grad(&grads).unwrap();
    assert_eq!(
        dgamma.dtype(),
        DType::F32,
        "gamma's gradient keeps gamma's dtype"
    );
    assert_eq!(x64.grad(&grads).unwrap().dtype(), DType::F64);
    assert_eq!(values64(bn.running_mean().unwrap()).len(), C);
    // The same through the synchronized path (one replica).
    let replica = burn_norm::sync::ThreadCombiner::group(1).remove(0);
    let synced = BatchNormConfig::new(C).init(&ad).synchronized(replica);
    let y = synced.forward(input());
    assert_eq!(y.dtype(), DType::F64);
    close("synchronized BatchNorm f64", &values64(y), &expected, 1e-12);

    // The row-wise and group layers: f64 out, close to f64 references.
    let rows: Vec<f64> = (0..ROWS)
        .flat_map(|r| {
            let row: Vec<f64> = x[r * C..(r + 1) * C].iter().map(|&v| v as f64).collect();
            let m = row.iter().sum::<f64>() / C as f64;
            let v = row.iter().map(|a| (a - m).powi(2)).sum::<f64>() / C as f64;
            row.into_iter().map(move |a| (a - m) / (v + 1e-5).sqrt())
        })
        .collect();
    let y = LayerNormConfig::new(C).init(&ad).forward(input());
    assert_eq!(y.dtype(), DType::F64);
    close("LayerNorm f64", &values64(y), &rows, 1e-12);
    let y = GroupNormConfig::new(1, C).init(&ad).forward(input());
    close("GroupNorm f64", &values64(y), &rows, 1e-12);
    let y = RmsNormConfig::new(C).init(&ad).forward(input());
    assert_eq!(y.dtype(), DType::F64);
}

on_every_backend!(
    training_on_half_precision_keeps_f32_statistics,
    double_precision_through_single_precision_layers,
);
