//! Our fused operation between operations that Burn's fusion fuses.
//!
//! Under Burn's default wgpu configuration the backend is
//! `Fusion<CubeBackend>`: element-wise operations are queued and compiled
//! into one kernel, and our normalization is an opaque custom operation in
//! the same stream. A wrong handoff (a fused producer not flushed before our
//! kernel reads it, an output shape that fusion was told wrongly, a gradient
//! registered on the wrong tensor) shows up in small models whose norm layers
//! sit between a matmul or convolution, scalar arithmetic, ReLU and a
//! residual add. Each device's result is compared with the composed path on
//! flex: the output, the gradient of every input and parameter, and the
//! running statistics. In inference a layer that consumes its input writes
//! its output over it on wgpu (no allocation): an inference stack checks
//! that, and that an input the caller still holds is left as it was.

use crate::common::{assert_close, values};
use burn::module::Param;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::backend::with_composed_path;
use burn_norm::{BatchNormConfig, GroupNormConfig, LayerNormConfig, RmsNormConfig};

/// Matmul and convolution sums round in another order on each backend.
const RTOL: f64 = 1e-4;

fn irregular(n: usize, seed: f64, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f64 + 1.0) * seed).sin() as f32 * scale)
        .collect()
}

/// A tracked parameter tensor with fixed values.
fn param<const D: usize>(shape: [usize; D], seed: f64, scale: f32, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(irregular(n, seed, scale), shape), device).require_grad()
}

/// A norm layer's parameter with fixed values.
fn set(p: Param<Tensor<1>>, seed: f64, device: &Device) -> Param<Tensor<1>> {
    let len = p.dims()[0];
    let values = irregular(len, seed, 0.5)
        .into_iter()
        .map(|v| v + 1.0)
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [len]), device))
}

/// A transformer-like block, `[2, 5, 16] -> [2, 5, 24]`:
/// `h = x W1 + b1; a = 0.5 h + 1; r = relu(LN1(a)) + a; y = LN2(r) W2`,
/// then `sum(y * g)`. Returns the output and the gradients of x, W1, b1,
/// W2 and both LayerNorms' gamma and beta.
fn transformer_block(device: &Device) -> Vec<Vec<f32>> {
    let ad = device.clone().autodiff();
    let x = param([2, 5, 16], 0.37, 2.0, &ad);
    let w1 = param([16, 24], 0.71, 0.3, &ad);
    let b1 = param([24], 1.13, 0.5, &ad);
    let w2 = param([24, 24], 0.29, 0.3, &ad);
    let g = Tensor::<3>::from_data(
        TensorData::new(irregular(2 * 5 * 24, 2.11, 1.0), [2, 5, 24]),
        &ad,
    );
    let mut ln1 = LayerNormConfig::new(24).init(&ad);
    let mut ln2 = LayerNormConfig::new(24).init(&ad);
    for (ln, seed) in [(&mut ln1, 0.61), (&mut ln2, 0.43)] {
        ln.gamma = ln.gamma.take().map(|p| set(p, seed, &ad));
        ln.beta = ln.beta.take().map(|p| set(p, seed + 0.2, &ad));
    }

    let h = x.clone().matmul(w1.clone().unsqueeze::<3>()) + b1.clone().unsqueeze::<3>();
    let a = h * 0.5 + 1.0;
    let r = relu(ln1.forward(a.clone())) + a;
    let y = ln2.forward(r).matmul(w2.clone().unsqueeze::<3>());
    let grads = (y.clone() * g).sum().backward();

    let mut out = vec![values(y), values(x.grad(&grads).unwrap())];
    out.extend([w1.grad(&grads), w2.grad(&grads)].map(|t| values(t.unwrap())));
    out.push(values(b1.grad(&grads).unwrap()));
    for ln in [&ln1, &ln2] {
        for p in [&ln.gamma, &ln.beta] {
            out.push(values(p.as_ref().unwrap().val().grad(&grads).unwrap()));
        }
    }
    out
}

/// A residual convolution block, `[3, 2, 6, 6] -> [3, 4, 6, 6]`:
/// `c = conv3x3(x) + b; a = 2c - 1; y = relu(BN(a)) + c`, trained two
/// steps so that the running statistics see two batches. Returns the
/// output and gradients of the second step, then the running statistics.
fn conv_block(device: &Device) -> Vec<Vec<f32>> {
    let ad = device.clone().autodiff();
    let weight = param([4, 2, 3, 3], 0.53, 0.4, &ad);
    let bias = param([4], 0.97, 0.2, &ad);
    let mut bn = BatchNormConfig::new(4).init(&ad);
    bn.gamma = bn.gamma.take().map(|p| set(p, 0.61, &ad));
    bn.beta = bn.beta.take().map(|p| set(p, 0.83, &ad));

    let mut out = Vec::new();
    for step in 0..2 {
        let x = param([3, 2, 6, 6], 0.37 + step as f64, 2.0, &ad);
        let g = Tensor::<4>::from_data(
            TensorData::new(irregular(3 * 4 * 36, 2.11, 1.0), [3, 4, 6, 6]),
            &ad,
        );
        let c = conv2d(
            x.clone(),
            weight.clone(),
            Some(bias.clone()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let a = c.clone() * 2.0 - 1.0;
        let y = relu(bn.forward(a)) + c;
        let grads = (y.clone() * g).sum().backward();
        out = vec![
            values(y),
            values(x.grad(&grads).unwrap()),
            values(weight.grad(&grads).unwrap()),
        ];
        out.push(values(bias.grad(&grads).unwrap()));
        for p in [&bn.gamma, &bn.beta] {
            out.push(values(p.as_ref().unwrap().val().grad(&grads).unwrap()));
        }
    }
    out.extend(
        [bn.running_mean(), bn.running_var()]
            .into_iter()
            .flatten()
            .map(values),
    );
    out
}

/// An inference stack, `[2, 5, 16] -> [2, 5, 24]`, whose norm layers each
/// consume their input (a fused operation's output):
/// `a = (x W1 + b1) 0.5 + 1; y = LN2(relu(LN1(a)) + 1); z = RMS(2y)`, and a
/// GroupNorm of `z + 0.5` as `[2, 6, 4, 5]`. Before `LN1` consumes `a` it runs
/// once on a clone of `a` that the caller keeps. Returns `a` before and
/// after that run, its output, `y`, `z` and the GroupNorm's output.
fn inference_stack(device: &Device) -> Vec<Vec<f32>> {
    let tensor = |shape: [usize; 3], seed: f64, scale: f32| {
        let n = shape.iter().product();
        Tensor::<3>::from_data(TensorData::new(irregular(n, seed, scale), shape), device)
    };
    let x = tensor([2, 5, 16], 0.37, 2.0);
    let w1 = tensor([1, 16, 24], 0.71, 0.3);
    let b1 = tensor([1, 1, 24], 1.13, 0.5);
    let mut ln1 = LayerNormConfig::new(24).init(device);
    let mut ln2 = LayerNormConfig::new(24).init(device);
    for (ln, seed) in [(&mut ln1, 0.61), (&mut ln2, 0.43)] {
        ln.gamma = ln.gamma.take().map(|p| set(p, seed, device));
        ln.beta = ln.beta.take().map(|p| set(p, seed + 0.2, device));
    }
    let mut rms = RmsNormConfig::new(24).init(device);
    rms.gamma = rms.gamma.take().map(|p| set(p, 0.29, device));
    let mut group = GroupNormConfig::new(3, 6).init(device);
    group.gamma = group.gamma.take().map(|p| set(p, 0.53, device));
    group.beta = group.beta.take().map(|p| set(p, 0.97, device));

    let a = (x.matmul(w1) + b1) * 0.5 + 1.0;
    let before = values(a.clone());
    let held = ln1.forward(a.clone());
    let after = values(a.clone());
    let y = ln2.forward(relu(ln1.forward(a)) + 1.0);
    let z = rms.forward(y.clone() * 2.0);
    let g = group.forward((z.clone() + 0.5).reshape([2, 6, 4, 5]));
    vec![before, after, values(held), values(y), values(z), values(g)]
}

/// Runs `block` on `device` and on flex's composed path, compares the
/// results, and returns `device`'s.
fn compare(
    what: &str,
    block: fn(&Device) -> Vec<Vec<f32>>,
    names: &[&str],
    device: &Device,
) -> Vec<Vec<f32>> {
    let actual = block(device);
    let expected = with_composed_path(|| block(&Device::flex()));
    assert_eq!(actual.len(), names.len(), "{what}: number of results");
    assert_eq!(
        expected.len(),
        names.len(),
        "{what}: number of reference results"
    );
    for ((name, a), e) in names.iter().zip(&actual).zip(&expected) {
        assert_close(&format!("{what}: {name}"), a, e, RTOL);
    }
    actual
}

fn layer_norms_between_fused_operations(device: &Device) {
    let names = [
        "output",
        "x grad",
        "W1 grad",
        "W2 grad",
        "b1 grad",
        "LN1 gamma grad",
        "LN1 beta grad",
        "LN2 gamma grad",
        "LN2 beta grad",
    ];
    compare("transformer block", transformer_block, &names, device);
}

fn batch_norm_between_fused_operations(device: &Device) {
    let names = [
        "output",
        "x grad",
        "weight grad",
        "bias grad",
        "gamma grad",
        "beta grad",
        "running mean",
        "running var",
    ];
    compare("conv block", conv_block, &names, device);
}

fn layers_that_consume_their_inputs(device: &Device) {
    let names = [
        "a",
        "a, after a layer ran on a clone",
        "LN1(a)",
        "y",
        "z",
        "GroupNorm(z + 0.5)",
    ];
    let actual = compare("inference stack", inference_stack, &names, device);
    assert_eq!(actual[0], actual[1], "a held input was written over");
}

on_every_backend!(
    layer_norms_between_fused_operations,
    batch_norm_between_fused_operations,
    layers_that_consume_their_inputs
);

/// With the `fusion` feature (a default) the suite's wgpu runs are in
/// Burn's default configuration: the backend under test is
/// `Fusion<CubeBackend>`.
#[cfg(feature = "fusion")]
#[test]
fn wgpu_runs_under_burn_fusion() {
    let backend = std::any::type_name::<burn::backend::Wgpu>();
    assert!(
        backend.contains("Fusion<"),
        "the suite's wgpu backend is {backend}, not Burn's default fused one"
    );
}
