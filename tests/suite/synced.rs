//! Synchronized BatchNorm (`BatchNorm::synchronized`): K replicas on
//! threads, each with a slice of the batch, give what one BatchNorm over the
//! whole batch gives: outputs, input gradients, running statistics (the same
//! bits on every replica), and gamma/beta gradients once the replicas'
//! shares are added up. On every backend (on wgpu with Burn's fusion, the
//! replicas' threads share the device).

use crate::common::{assert_close, assert_close_above, values};
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::sync::ThreadCombiner;
use burn_norm::{BatchNorm, BatchNormConfig, NormError};

const CHANNELS: usize = 3;
const SPATIAL: [usize; 2] = [5, 4];
/// Replicas' slices of a batch of 6: uneven on purpose.
const SLICES: [usize; 3] = [2, 3, 1];

fn shape(n: usize) -> [usize; 4] {
    [n, CHANNELS, SPATIAL[0], SPATIAL[1]]
}

fn data(n: usize, seed: f64, offset: f64, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (offset + scale * (((i as f64 + 1.0) * seed).sin() + (i % 7) as f64 * 0.3)) as f32)
        .collect()
}

/// A fresh layer with fixed gamma/beta: every replica holds its own copy
/// of the model, as in data-parallel training (Burn's `Module::clone`
/// shares the running-statistics buffers).
fn layer(device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(CHANNELS)
        .with_momentum(Some(0.3))
        .init(device);
    bn.gamma = Some(Param::from_tensor(Tensor::from_floats(
        [0.5, 1.5, -0.7],
        device,
    )));
    bn.beta = Some(Param::from_tensor(Tensor::from_floats(
        [0.1, -0.2, 0.3],
        device,
    )));
    bn
}

/// What one training step gives: output, input gradient, gamma and beta
/// gradients, running mean and variance.
struct Step {
    out: [Vec<f32>; 6],
    batches: Option<u64>,
}

fn step(bn: &BatchNorm, x: Vec<f32>, g: Vec<f32>, n: usize, device: &Device) -> Step {
    let x = Tensor::<4>::from_data(TensorData::new(x, shape(n)), device).require_grad();
    let g = Tensor::<4>::from_data(TensorData::new(g, shape(n)), device);
    let y = bn.forward(x.clone());
    let grads = (y.clone() * g).sum().backward();
    let param_grad =
        |p: &Option<Param<Tensor<1>>>| values(p.as_ref().unwrap().val().grad(&grads).unwrap());
    Step {
        out: [
            values(y),
            values(x.grad(&grads).unwrap()),
            param_grad(&bn.gamma),
            param_grad(&bn.beta),
            values(bn.running_mean().unwrap()),
            values(bn.running_var().unwrap()),
        ],
        batches: bn.num_batches_tracked(),
    }
}

fn replicas_match_one_batch_norm(device: &Device, offset: f64, scale: f64, rtol: f64) {
    let ad = device.clone().autodiff();
    let total: usize = SLICES.iter().sum();
    let per_sample = CHANNELS * SPATIAL[0] * SPATIAL[1];
    let x = data(total * per_sample, 0.37, offset, scale);
    let g = data(total * per_sample, 1.91, 0.0, 1.0);

    let whole = step(&layer(&ad), x.clone(), g.clone(), total, &ad);

    let replicas = ThreadCombiner::group(SLICES.len());
    let starts: Vec<usize> = SLICES
        .iter()
        .scan(0, |at, &n| {
            *at += n;
            Some(*at - n)
        })
        .collect();
    let parts: Vec<Step> = std::thread::scope(|s| {
        let runs: Vec<_> = replicas
            .into_iter()
            .zip(SLICES.iter().zip(&starts))
            .map(|(replica, (&n, &start))| {
                let range = start * per_sample..(start + n) * per_sample;
                let (x, g) = (x[range.clone()].to_vec(), g[range].to_vec());
                let ad = ad.clone();
                s.spawn(move || {
                    let bn = layer(&ad).synchronized(replica);
                    step(&bn, x, g, n, &ad)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let joined = |i: usize| {
        parts
            .iter()
            .flat_map(|p| p.out[i].clone())
            .collect::<Vec<f32>>()
    };
    let added = |i: usize| {
        (0..CHANNELS)
            .map(|c| parts.iter().map(|p| p.out[i][c]).sum())
            .collect::<Vec<f32>>()
    };
    assert_close("output", &joined(0), &whole.out[0], rtol);
    assert_close("input grad", &joined(1), &whole.out[1], rtol);
    // Parameter gradients are sums that cancel: measured against their
    // natural scale, as in the fused-vs-composed tests.
    let floor = (total * SPATIAL[0] * SPATIAL[1]) as f64;
    assert_close_above("gamma grad", &added(2), &whole.out[2], rtol, floor.sqrt());
    assert_close_above("beta grad", &added(3), &whole.out[3], rtol, floor.sqrt());
    for part in &parts {
        assert_eq!(
            part.out[4], parts[0].out[4],
            "running mean differs between replicas"
        );
        assert_eq!(
            part.out[5], parts[0].out[5],
            "running var differs between replicas"
        );
        assert_eq!(part.batches, Some(1));
        assert_close("running mean", &part.out[4], &whole.out[4], rtol);
        assert_close("running var", &part.out[5], &whole.out[5], rtol);
    }
}

fn synchronized_replicas_match_one_batch_norm(device: &Device) {
    replicas_match_one_batch_norm(device, 3.0, 1.0, 1e-5);
}

/// Data at 1e4 with a spread of 1e-2, where `E[x²] - E[x]²` in f32 has no
/// digits left: the synchronized statistics keep them (against the
/// single-layer path, which the hostile tests check against f64).
fn synchronized_statistics_are_stable_far_from_zero(device: &Device) {
    replicas_match_one_batch_norm(device, 1e4, 1e-2, 1e-4);
}

/// f16 activations of +-300, whose squares overflow f16: the synchronized
/// statistics are accumulated in f32 (as every layer's), and the output
/// keeps f16. Two replicas of two rows each against f64 over the four.
fn synchronized_half_precision_accumulates_in_f32(device: &Device) {
    use burn::tensor::DType;
    if !crate::common::supports_f16(device) {
        return;
    }
    let ad = device.clone().autodiff();
    let (rows, d) = (4, 16);
    let x: Vec<f32> = (0..rows * d)
        .map(|i| burn::tensor::f16::from_f32(20.0 + 300.0 * ((i as f32) * 0.37).sin()).to_f32())
        .collect();
    let expected: Vec<f64> = (0..rows * d)
        .map(|i| {
            let column: Vec<f64> = (0..rows).map(|r| x[r * d + i % d] as f64).collect();
            let mean = column.iter().sum::<f64>() / rows as f64;
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
            (x[i] as f64 - mean) / (var + 1e-5).sqrt()
        })
        .collect();
    let replicas = ThreadCombiner::group(2);
    let outputs: Vec<Vec<f32>> = std::thread::scope(|s| {
        let runs: Vec<_> = replicas
            .into_iter()
            .enumerate()
            .map(|(rank, replica)| {
                let (ad, part) = (ad.clone(), x[rank * 2 * d..(rank + 1) * 2 * d].to_vec());
                s.spawn(move || {
                    let bn = BatchNormConfig::new(d).init(&ad).synchronized(replica);
                    let input =
                        Tensor::<2>::from_data(TensorData::new(part, [2, d]), (&ad, DType::F16));
                    let y = bn.forward(input);
                    assert_eq!(y.dtype(), DType::F16, "the output keeps the input's dtype");
                    values(y)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let actual: Vec<f32> = outputs.concat();
    let expected: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
    assert_close_above("f16 output", &actual, &expected, 2e-3, 1.0);
}

fn synchronized_layer_refuses_ghost_batches(device: &Device) {
    let ad = device.clone().autodiff();
    let replica = ThreadCombiner::group(1).remove(0);
    let bn = BatchNormConfig::new(CHANNELS)
        .with_virtual_batch_size(Some(1))
        .init(&ad)
        .synchronized(replica);
    let err = bn
        .try_forward(Tensor::<4>::zeros(shape(2), &ad))
        .unwrap_err();
    assert!(
        matches!(
            err,
            NormError::InvalidConfig {
                field: "virtual_batch_size",
                ..
            }
        ),
        "{err}"
    );
}

on_every_backend!(
    synchronized_replicas_match_one_batch_norm,
    synchronized_statistics_are_stable_far_from_zero,
    synchronized_half_precision_accumulates_in_f32,
    synchronized_layer_refuses_ghost_batches,
);
