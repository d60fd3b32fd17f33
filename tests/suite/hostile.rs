//! Hostile numerics: f32 inputs with mean 1e4 and standard deviation 1e-2.
//!
//! Against an f64 reference computed on the very same f32 inputs, the layers
//! must keep a relative error <= 1e-4 (floored at 1, the scale of a normalized
//! output). A one-pass `E[x^2] - E[x]^2` loses every significant digit here;
//! the test checks that it would fail, so it cannot pass vacuously.

use crate::common::{tensor, values};
use burn::tensor::Device;
use burn_norm::{
    BatchNormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig, RmsNormConfig,
};

const RTOL: f64 = 1e-4;

/// f32 values `1e4 + 1e-2 * noise`, with a deterministic noise in [-1.7, 1.7].
fn hostile(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let u = ((i as f64 * 12.9898).sin() * 43758.5453).fract();
            (1e4 + 1e-2 * 3.0f64.sqrt() * (2.0 * u - 1.0).clamp(-1.0, 1.0)) as f32
        })
        .collect()
}

/// Normalizes each group of values (given as index lists) in f64.
fn reference(x: &[f32], groups: &[Vec<usize>], epsilon: f64) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for group in groups {
        let n = group.len() as f64;
        let mean = group.iter().map(|&i| x[i] as f64).sum::<f64>() / n;
        let var = group
            .iter()
            .map(|&i| (x[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        for &i in group {
            out[i] = (x[i] as f64 - mean) / (var + epsilon).sqrt();
        }
    }
    out
}

/// One-pass `E[x^2] - E[x]^2` in f32, the textbook mistake.
fn naive(x: &[f32], groups: &[Vec<usize>], epsilon: f32) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for group in groups {
        let n = group.len() as f32;
        let mean = group.iter().map(|&i| x[i]).sum::<f32>() / n;
        let sq = group.iter().map(|&i| x[i] * x[i]).sum::<f32>() / n;
        let var = (sq - mean * mean).max(0.0);
        for &i in group {
            out[i] = ((x[i] - mean) / (var + epsilon).sqrt()) as f64;
        }
    }
    out
}

fn worst_error(actual: &[f64], expected: &[f64]) -> f64 {
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| {
            let err = (a - e).abs() / e.abs().max(1.0);
            if err.is_nan() { f64::INFINITY } else { err }
        })
        .fold(0.0, f64::max)
}

fn check(what: &str, x: &[f32], groups: &[Vec<usize>], actual: Vec<f32>) {
    let expected = reference(x, groups, 1e-5);
    let actual: Vec<f64> = actual.into_iter().map(f64::from).collect();
    let err = worst_error(&actual, &expected);
    assert!(err <= RTOL, "{what}: relative error {err:.3e} > {RTOL:.0e}");
    let naive_err = worst_error(&naive(x, groups, 1e-5), &expected);
    assert!(
        naive_err > RTOL,
        "{what}: the input is not hostile (naive error {naive_err:.1e})"
    );
}

fn batch_norm_is_stable_on_large_mean_small_spread(device: &Device) {
    // Short channels (one GPU cube each), then long ones that the GPU cuts
    // into blocks and merges (6,006 values: 3 blocks, the last partial;
    // positions not a multiple of 2 or 4, so scalar loads).
    for (n, c, hw) in [(4, 3, 64), (6, 2, 1001)] {
        batch_norm_is_stable_on(device, n, c, hw);
    }
}

fn batch_norm_is_stable_on(device: &Device, n: usize, c: usize, hw: usize) {
    let x = hostile(n * c * hw);
    // Channel k holds the indices (b, k, s) for every sample b and position s.
    let groups: Vec<Vec<usize>> = (0..c)
        .map(|k| {
            (0..n)
                .flat_map(|b| (0..hw).map(move |s| (b * c + k) * hw + s))
                .collect()
        })
        .collect();
    let ad = device.clone().autodiff();
    let bn = BatchNormConfig::new(c).init(&ad);
    let y = bn.forward(tensor::<3>(&x, &[n, c, hw], &ad));
    check("BatchNorm training", &x, &groups, values(y));

    // Evaluation with the running statistics this batch left (momentum 1):
    // against f64 on the same f32 inputs and the same f32 statistics.
    let bn = BatchNormConfig::new(c).with_momentum(Some(1.0)).init(&ad);
    bn.forward(tensor::<3>(&x, &[n, c, hw], &ad));
    let bn = burn::module::Module::valid(&bn);
    let y = bn.forward(tensor::<3>(&x, &[n, c, hw], device));
    let mean = values(bn.running_mean().unwrap());
    let var = values(bn.running_var().unwrap());
    let expected: Vec<f64> = (0..x.len())
        .map(|i| {
            let k = (i / hw) % c;
            (x[i] as f64 - mean[k] as f64) / (var[k] as f64 + 1e-5).sqrt()
        })
        .collect();
    let actual: Vec<f64> = values(y).into_iter().map(f64::from).collect();
    let err = worst_error(&actual, &expected);
    assert!(
        err <= RTOL,
        "BatchNorm evaluation: relative error {err:.3e} > {RTOL:.0e}"
    );
    // And the running mean itself is the batch mean to f32 precision.
    for (k, g) in groups.iter().enumerate() {
        let exact = g.iter().map(|&j| x[j] as f64).sum::<f64>() / g.len() as f64;
        assert!(
            (mean[k] as f64 - exact).abs() <= 1e4 * 1e-7,
            "running mean {k}: {} vs {exact}",
            mean[k]
        );
    }
}

fn layer_norm_is_stable_on_large_mean_small_spread(device: &Device) {
    // Rows held by one GPU team, then rows the GPU cuts into blocks (2 rows
    // of 16,404 values: 9 blocks each).
    for (rows, d) in [(8, 256), (2, 16_404)] {
        let x = hostile(rows * d);
        let groups: Vec<Vec<usize>> = (0..rows).map(|r| (r * d..(r + 1) * d).collect()).collect();
        let ln = LayerNormConfig::new(d).init(device);
        let y = ln.forward(tensor::<2>(&x, &[rows, d], device));
        check(&format!("LayerNorm [{rows}, {d}]"), &x, &groups, values(y));
    }
}

fn group_norm_is_stable_on_large_mean_small_spread(device: &Device) {
    // Groups held by one GPU team, then groups the GPU cuts into blocks
    // (2 channels of 4,501 values: 3 blocks each, single values).
    for (n, c, hw, g) in [(2, 6, 32, 3), (2, 4, 4501, 2)] {
        group_norm_is_stable_on(device, n, c, hw, g);
    }
}

fn group_norm_is_stable_on(device: &Device, n: usize, c: usize, hw: usize, g: usize) {
    let x = hostile(n * c * hw);
    // Group `j` of sample `b` holds channels `2j, 2j + 1`: contiguous.
    let size = c / g * hw;
    let groups: Vec<Vec<usize>> = (0..n * g)
        .map(|k| (k * size..(k + 1) * size).collect())
        .collect();
    let gn = GroupNormConfig::new(g, c).init(device);
    let y = gn.forward(tensor::<3>(&x, &[n, c, hw], device));
    check("GroupNorm", &x, &groups, values(y));
}

fn instance_norm_is_stable_on_large_mean_small_spread(device: &Device) {
    // Instances held by one GPU team, then instances in blocks (16,900
    // values: 9 blocks, the last partial).
    for (n, c, hw) in [(2, 3, 64), (2, 2, 16_900)] {
        instance_norm_is_stable_on(device, n, c, hw);
    }
}

fn instance_norm_is_stable_on(device: &Device, n: usize, c: usize, hw: usize) {
    let x = hostile(n * c * hw);
    let groups: Vec<Vec<usize>> = (0..n * c)
        .map(|k| (k * hw..(k + 1) * hw).collect())
        .collect();
    let ad = device.clone().autodiff();
    let norm = InstanceNormConfig::new(c)
        .with_track_running_stats(true)
        .init(&ad);
    let y = norm.forward(tensor::<3>(&x, &[n, c, hw], &ad));
    check("InstanceNorm training", &x, &groups, values(y));
    // The running mean (momentum 0.1 from 0) is a tenth of the instances'
    // mean, to f32 precision.
    let mean = values(norm.running_mean().unwrap());
    for (k, m) in mean.iter().enumerate() {
        let exact = (0..n)
            .flat_map(|b| groups[b * c + k].iter())
            .map(|&j| x[j] as f64)
            .sum::<f64>()
            / (n * hw) as f64;
        assert!(
            (*m as f64 - 0.1 * exact).abs() <= 1e3 * 2e-7,
            "running mean {k}: {m} vs {}",
            0.1 * exact
        );
    }
}

/// RMSNorm of rows of `d` values in f64: `x / sqrt(mean(x²) + epsilon)`.
fn rms_reference(x: &[f32], d: usize, epsilon: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
            row.iter().map(move |&v| v as f64 / (ms + epsilon).sqrt())
        })
        .collect()
}

/// RMSNorm has no subtraction to lose digits in, but its sum of squares of
/// values at 1e4 (1e8 each, thousands of them) must still keep f32
/// precision: against an f64 reference, 1e-5.
fn rms_norm_is_accurate_on_large_values(device: &Device) {
    // Held rows, and rows in blocks on the GPU (as LayerNorm's above).
    for (rows, d) in [(8, 256), (2, 16_404)] {
        let x = hostile(rows * d);
        let rms = RmsNormConfig::new(d).with_epsilon(1e-5).init(device);
        let y = rms.forward(tensor::<2>(&x, &[rows, d], device));
        let expected = rms_reference(&x, d, 1e-5);
        let actual: Vec<f64> = values(y).into_iter().map(f64::from).collect();
        let err = worst_error(&actual, &expected);
        assert!(
            err <= 1e-5,
            "RMSNorm [{rows}, {d}]: relative error {err:.3e}"
        );
    }
}

/// f16 activations of +-300: their squares overflow f16 (max 65504),
/// so statistics must be accumulated in f32. The output is compared with the
/// f64 reference at f16's own precision (2^-10 relative, floored at 1).
fn half_precision_accumulates_in_f32(device: &Device) {
    use burn::tensor::{DType, Tensor, TensorData};
    if !crate::common::supports_f16(device) {
        return;
    }
    let (rows, d) = (4, 64);
    let x: Vec<f32> = (0..rows * d)
        .map(|i| 20.0 + 300.0 * ((i as f32) * 0.37).sin())
        .collect();
    let x16: Vec<f32> = x
        .iter()
        .map(|&v| burn::tensor::f16::from_f32(v).to_f32())
        .collect();
    let groups: Vec<Vec<usize>> = (0..rows).map(|r| (r * d..(r + 1) * d).collect()).collect();
    let expected = reference(&x16, &groups, 1e-5);
    let input = Tensor::<2>::from_data(
        TensorData::new(x16.clone(), [rows, d]),
        (device, DType::F16),
    );
    let bn_input = input.clone();
    let ln = LayerNormConfig::new(d).init(device);
    let y = ln.forward(input);
    assert_eq!(y.dtype(), DType::F16, "the output keeps the input's dtype");
    let actual: Vec<f64> = values(y).into_iter().map(f64::from).collect();
    let err = worst_error(&actual, &expected);
    assert!(err <= 2e-3, "LayerNorm f16: relative error {err:.3e}");

    // BatchNorm over the same values, with the rows as the batch.
    let bn = BatchNormConfig::new(d)
        .with_track_running_stats(false)
        .init(device);
    let y = bn.forward(bn_input);
    let groups: Vec<Vec<usize>> = (0..d)
        .map(|c| (0..rows).map(|r| r * d + c).collect())
        .collect();
    let expected = reference(&x16, &groups, 1e-5);
    let actual: Vec<f64> = values(y).into_iter().map(f64::from).collect();
    let err = worst_error(&actual, &expected);
    assert!(err <= 2e-3, "BatchNorm f16: relative error {err:.3e}");

    // RMSNorm: squares of 300 overflow f16 as well.
    let input = Tensor::<2>::from_data(
        TensorData::new(x16.clone(), [rows, d]),
        (device, DType::F16),
    );
    let y = RmsNormConfig::new(d)
        .with_epsilon(1e-5)
        .init(device)
        .forward(input);
    assert_eq!(y.dtype(), DType::F16);
    let expected = rms_reference(&x16, d, 1e-5);
    let actual: Vec<f64> = values(y).into_iter().map(f64::from).collect();
    let err = worst_error(&actual, &expected);
    assert!(err <= 2e-3, "RMSNorm f16: relative error {err:.3e}");

    // GroupNorm with the rows as samples, two groups of 32 channels.
    let input = Tensor::<2>::from_data(
        TensorData::new(x16.clone(), [rows, d]),
        (device, DType::F16),
    );
    let y = GroupNormConfig::new(2, d).init(device).forward(input);
    let groups: Vec<Vec<usize>> = (0..rows * 2)
        .map(|k| (k * d / 2..(k + 1) * d / 2).collect())
        .collect();
    let expected = reference(&x16, &groups, 1e-5);
    let actual: Vec<f64> = values(y).into_iter().map(f64::from).collect();
    let err = worst_error(&actual, &expected);
    assert!(err <= 2e-3, "GroupNorm f16: relative error {err:.3e}");
}

on_every_backend!(
    batch_norm_is_stable_on_large_mean_small_spread,
    layer_norm_is_stable_on_large_mean_small_spread,
    group_norm_is_stable_on_large_mean_small_spread,
    instance_norm_is_stable_on_large_mean_small_spread,
    rms_norm_is_accurate_on_large_values,
    half_precision_accumulates_in_f32,
);
