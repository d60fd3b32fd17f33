//! Parity with PyTorch: fixtures written by `tests/fixtures/generate.py`
//! (torch.nn.BatchNorm1d/2d/3d, LayerNorm, RMSNorm, GroupNorm and
//! InstanceNorm1d/2d/3d in float32 on the CPU).
//!
//! Each case sets PyTorch's random gamma/beta, runs several training steps
//! (output; gradients of `sum(y * g)` for input, gamma and beta; running
//! statistics and the counter after each step), then one evaluation.

use crate::common::{assert_close, assert_close_above, rms, std, tensor, values};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use burn_norm::{
    BatchNorm, BatchNormConfig, GroupNormConfig, InstanceNorm, InstanceNormConfig, LayerNormConfig,
    RmsNormConfig,
};
use serde::Deserialize;
use std::sync::OnceLock;

/// Tolerance on outputs and running statistics: float32 rounding only.
const RTOL: f64 = 1e-5;
/// Tolerance on gradients. The input gradient of a normalization subtracts
/// two means of `g` from `g` and so cancels most of its magnitude; PyTorch
/// sums in a different order (vectorized lanes), and the f32 rounding of
/// those sums, relative to the small result, reaches a few 1e-5.
const GRAD_RTOL: f64 = 1e-4;

#[derive(Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    shape: Vec<usize>,
    #[serde(default)]
    normalized_shape: Vec<usize>,
    config: Config,
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    steps: Vec<Step>,
    eval: Option<Eval>,
}

#[derive(Deserialize)]
struct Config {
    epsilon: f64,
    momentum: Option<f64>,
    #[serde(default)]
    affine: bool,
    #[serde(default)]
    track_running_stats: bool,
    #[serde(default)]
    elementwise_affine: bool,
    #[serde(default)]
    bias: bool,
    #[serde(default)]
    num_groups: usize,
}

#[derive(Deserialize)]
struct Step {
    input: Vec<f32>,
    grad_output: Vec<f32>,
    output: Vec<f32>,
    grad_input: Vec<f32>,
    grad_gamma: Option<Vec<f32>>,
    grad_beta: Option<Vec<f32>>,
    running_mean: Option<Vec<f32>>,
    running_var: Option<Vec<f32>>,
    num_batches_tracked: Option<u64>,
}

#[derive(Deserialize)]
struct Eval {
    input: Vec<f32>,
    output: Vec<f32>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/torch_reference.json"
        );
        let text = std::fs::read_to_string(path).expect("read the PyTorch fixtures");
        serde_json::from_str(&text).expect("parse the PyTorch fixtures")
    })
}

fn cases(kind: &str) -> impl Iterator<Item = &'static Case> {
    let cases: Vec<_> = fixtures().cases.iter().filter(|c| c.kind == kind).collect();
    assert!(cases.len() >= 5, "too few {kind} fixtures");
    cases.into_iter()
}

fn param(values: &Option<Vec<f32>>, device: &Device) -> Option<Param<Tensor<1>>> {
    values
        .as_ref()
        .map(|v| Param::from_tensor(tensor(v, &[v.len()], device)))
}

/// Runs the training steps of `case`, checking every recorded value.
fn check_steps<const D: usize>(
    case: &Case,
    device: &Device,
    forward: impl Fn(Tensor<D>) -> Tensor<D>,
    gamma: &Option<Param<Tensor<1>>>,
    beta: &Option<Param<Tensor<1>>>,
    after_step: impl Fn(&Step, &str),
) {
    for (i, step) in case.steps.iter().enumerate() {
        let at = format!("{} step {i}", case.name);
        let x = tensor::<D>(&step.input, &case.shape, device).require_grad();
        let g = tensor::<D>(&step.grad_output, &case.shape, device);
        let y = forward(x.clone());
        let grads = (y.clone() * g).sum().backward();
        assert_close(&format!("{at} output"), &values(y), &step.output, RTOL);
        let dx = x.grad(&grads).expect("input gradient");
        // The input gradient `gamma / sigma * (g - mean(g) - x_hat * mean(g x_hat))`
        // can cancel to zero (exactly so for two values per channel): its
        // error is measured against the size of the terms that cancel.
        let gamma_scale = gamma.as_ref().map_or(1.0, |p| rms(&values(p.val())));
        let terms = rms(&step.grad_output) * gamma_scale / std(&step.input);
        assert_close_above(
            &format!("{at} grad_input"),
            &values(dx),
            &step.grad_input,
            GRAD_RTOL,
            terms,
        );
        for (name, p, expected) in [
            ("grad_gamma", gamma, &step.grad_gamma),
            ("grad_beta", beta, &step.grad_beta),
        ] {
            assert_eq!(p.is_some(), expected.is_some(), "{at}: {name} presence");
            if let (Some(p), Some(expected)) = (p, expected) {
                let grad = p.val().grad(&grads).expect(name);
                assert_close(&format!("{at} {name}"), &values(grad), expected, GRAD_RTOL);
            }
        }
        after_step(step, &at);
    }
}

/// Checks the running statistics and the counter after a step.
fn check_running(
    step: &Step,
    at: &str,
    mean: Option<Tensor<1>>,
    var: Option<Tensor<1>>,
    counter: Option<u64>,
) {
    let (mean, var) = (mean.map(values), var.map(values));
    assert_eq!(mean.is_some(), step.running_mean.is_some(), "{at}: buffers");
    if let (Some(mean), Some(var)) = (mean, var) {
        let expected = |v: &Option<Vec<f32>>| v.clone().unwrap();
        assert_close(
            &format!("{at} running_mean"),
            &mean,
            &expected(&step.running_mean),
            RTOL,
        );
        assert_close(
            &format!("{at} running_var"),
            &var,
            &expected(&step.running_var),
            RTOL,
        );
    }
    assert_eq!(counter, step.num_batches_tracked, "{at}: counter");
}

fn batch_norm_case<const D: usize>(case: &Case, device: &Device) {
    let ad = device.clone().autodiff();
    let c = case.shape[1];
    let mut bn: BatchNorm = BatchNormConfig::new(c)
        .with_epsilon(case.config.epsilon)
        .with_momentum(case.config.momentum)
        .with_affine(case.config.affine)
        .with_track_running_stats(case.config.track_running_stats)
        .init(&ad);
    bn.gamma = param(&case.gamma, &ad);
    bn.beta = param(&case.beta, &ad);
    check_steps::<D>(
        case,
        &ad,
        |x| bn.forward(x),
        &bn.gamma,
        &bn.beta,
        |step, at| {
            check_running(
                step,
                at,
                bn.running_mean(),
                bn.running_var(),
                bn.num_batches_tracked(),
            )
        },
    );
    let eval = case.eval.as_ref().expect("batch norm cases evaluate");
    let bn = bn.valid();
    let y = bn.forward(tensor::<D>(&eval.input, &case.shape, device));
    assert_close(
        &format!("{} eval output", case.name),
        &values(y),
        &eval.output,
        RTOL,
    );
}

fn layer_norm_case<const D: usize>(case: &Case, device: &Device) {
    let ad = device.clone().autodiff();
    let mut ln = LayerNormConfig::from_normalized_shape(case.normalized_shape.clone())
        .with_epsilon(case.config.epsilon)
        .with_elementwise_affine(case.config.elementwise_affine)
        .with_bias(case.config.bias)
        .init(&ad);
    ln.gamma = param(&case.gamma, &ad);
    ln.beta = param(&case.beta, &ad);
    check_steps::<D>(case, &ad, |x| ln.forward(x), &ln.gamma, &ln.beta, |_, _| {});
}

fn rms_norm_case<const D: usize>(case: &Case, device: &Device) {
    let ad = device.clone().autodiff();
    let mut rms = RmsNormConfig::from_normalized_shape(case.normalized_shape.clone())
        .with_epsilon(case.config.epsilon)
        .with_elementwise_affine(case.config.elementwise_affine)
        .init(&ad);
    rms.gamma = param(&case.gamma, &ad);
    check_steps::<D>(case, &ad, |x| rms.forward(x), &rms.gamma, &None, |_, _| {});
}

fn group_norm_case<const D: usize>(case: &Case, device: &Device) {
    let ad = device.clone().autodiff();
    let mut gn = GroupNormConfig::new(case.config.num_groups, case.shape[1])
        .with_epsilon(case.config.epsilon)
        .with_affine(case.config.affine)
        .init(&ad);
    gn.gamma = param(&case.gamma, &ad);
    gn.beta = param(&case.beta, &ad);
    check_steps::<D>(case, &ad, |x| gn.forward(x), &gn.gamma, &gn.beta, |_, _| {});
}

fn instance_norm_case<const D: usize>(case: &Case, device: &Device) {
    let ad = device.clone().autodiff();
    let mut norm: InstanceNorm = InstanceNormConfig::new(case.shape[1])
        .with_epsilon(case.config.epsilon)
        .with_momentum(case.config.momentum)
        .with_affine(case.config.affine)
        .with_track_running_stats(case.config.track_running_stats)
        .init(&ad);
    norm.gamma = param(&case.gamma, &ad);
    norm.beta = param(&case.beta, &ad);
    check_steps::<D>(
        case,
        &ad,
        |x| norm.forward(x),
        &norm.gamma,
        &norm.beta,
        |step, at| {
            check_running(
                step,
                at,
                norm.running_mean(),
                norm.running_var(),
                norm.num_batches_tracked(),
            )
        },
    );
    let eval = case.eval.as_ref().expect("instance norm cases evaluate");
    let norm = norm.valid();
    let y = norm.forward(tensor::<D>(&eval.input, &case.shape, device));
    assert_close(
        &format!("{} eval output", case.name),
        &values(y),
        &eval.output,
        RTOL,
    );
}

macro_rules! by_rank {
    ($f:ident, $case:expr, $device:expr) => {
        match $case.shape.len() {
            2 => $f::<2>($case, $device),
            3 => $f::<3>($case, $device),
            4 => $f::<4>($case, $device),
            5 => $f::<5>($case, $device),
            r => panic!("{}: unsupported rank {r}", $case.name),
        }
    };
}

fn batch_norm_matches_pytorch(device: &Device) {
    for case in cases("batch_norm") {
        by_rank!(batch_norm_case, case, device);
    }
}

fn layer_norm_matches_pytorch(device: &Device) {
    for case in cases("layer_norm") {
        by_rank!(layer_norm_case, case, device);
    }
}

fn rms_norm_matches_pytorch(device: &Device) {
    for case in cases("rms_norm") {
        by_rank!(rms_norm_case, case, device);
    }
}

fn group_norm_matches_pytorch(device: &Device) {
    for case in cases("group_norm") {
        by_rank!(group_norm_case, case, device);
    }
}

fn instance_norm_matches_pytorch(device: &Device) {
    for case in cases("instance_norm") {
        by_rank!(instance_norm_case, case, device);
    }
}

on_every_backend!(
    batch_norm_matches_pytorch,
    layer_norm_matches_pytorch,
    rms_norm_matches_pytorch,
    group_norm_matches_pytorch,
    instance_norm_matches_pytorch,
);
