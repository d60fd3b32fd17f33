//! Batch renormalization against an f64 implementation of the paper's
//! equations (Ioffe, 2017, Algorithm 1 with PyTorch's running-statistics
//! rule): outputs, gradients with `r` and `d` held constant, and the
//! running statistics over two training steps. Channel 0's `d` is clipped
//! (mean 2 against a running mean near 0) and its `r` not; channel 1's `r`
//! is clipped at the first step (0.657 < 1 / 1.5) and within the limits at
//! the second, its `d` never clipped.

use crate::common::{assert_close, assert_close_above, values};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use burn_norm::{BatchNormConfig, BatchRenormConfig};

const SHAPE: [usize; 3] = [6, 2, 3];
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;
const RMAX: f64 = 1.5;
const DMAX: f64 = 0.5;
const GAMMA: [f64; 2] = [0.8, 1.3];
const BETA: [f64; 2] = [0.2, -0.4];

/// Channel 0 around 2, channel 1 around 0 with a smaller spread.
fn batch(step: usize) -> Vec<f64> {
    let (n, c, s) = (SHAPE[0], SHAPE[1], SHAPE[2]);
    (0..n * c * s)
        .map(|i| {
            let ch = (i / s) % c;
            let noise = ((i as f64 + 1.0) * (0.37 + step as f64 * 0.11)).sin();
            let v = if ch == 0 {
                2.0 + 2.0 * noise
            } else {
                0.9 * noise
            };
            v as f32 as f64
        })
        .collect()
}

fn upstream() -> Vec<f64> {
    (0..SHAPE.iter().product::<usize>())
        .map(|i| ((i as f64 + 1.0) * 1.77).cos() as f32 as f64)
        .collect()
}

/// One training step in f64: `(y, dx, dgamma, dbeta)`, and the running
/// statistics updated in place.
fn reference(x: &[f64], g: &[f64], mean: &mut [f64], var: &mut [f64]) -> [Vec<f64>; 4] {
    let (n, c, s) = (SHAPE[0], SHAPE[1], SHAPE[2]);
    let idx = |ch: usize| (0..n).flat_map(move |b| (0..s).map(move |k| (b * c + ch) * s + k));
    let m = (n * s) as f64;
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let mu_b = idx(ch).map(|i| x[i]).sum::<f64>() / m;
        let var_b = idx(ch).map(|i| (x[i] - mu_b).powi(2)).sum::<f64>() / m;
        let sigma_b = (var_b + EPS).sqrt();
        let sigma = (var[ch] + EPS).sqrt();
        let r = (sigma_b / sigma).clamp(1.0 / RMAX, RMAX);
        let d = ((mu_b - mean[ch]) / sigma).clamp(-DMAX, DMAX);
        let xhat = |i: usize| (x[i] - mu_b) / sigma_b;
        // dL/dxhat = g * gamma * r; through the batch statistics (r, d fixed).
        let gh = |i: usize| g[i] * GAMMA[ch] * r;
        let mean_gh = idx(ch).map(gh).sum::<f64>() / m;
        let mean_ghx = idx(ch).map(|i| gh(i) * xhat(i)).sum::<f64>() / m;
        for i in idx(ch) {
            y[i] = GAMMA[ch] * (xhat(i) * r + d) + BETA[ch];
            dx[i] = (gh(i) - mean_gh - xhat(i) * mean_ghx) / sigma_b;
            dgamma[ch] += g[i] * (xhat(i) * r + d);
            dbeta[ch] += g[i];
        }
        mean[ch] = (1.0 - MOMENTUM) * mean[ch] + MOMENTUM * mu_b;
        var[ch] = (1.0 - MOMENTUM) * var[ch] + MOMENTUM * var_b * m / (m - 1.0);
    }
    [y, dx, dgamma, dbeta]
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn renorm_matches_the_papers_equations(device: &Device) {
    let ad = device.clone().autodiff();
    let mut layer = BatchRenormConfig::new(2)
        .with_rmax(RMAX)
        .with_dmax(DMAX)
        .init(&ad);
    layer.gamma = Some(Param::from_tensor(Tensor::from_floats(
        f32s(&GAMMA).as_slice(),
        &ad,
    )));
    layer.beta = Some(Param::from_tensor(Tensor::from_floats(
        f32s(&BETA).as_slice(),
        &ad,
    )));
    let (mut mean, mut var) = (vec![0.0; 2], vec![1.0; 2]);
    let g_values = upstream();
    for step in 0..2 {
        let x_values = batch(step);
        let expected = reference(&x_values, &g_values, &mut mean, &mut var);
        let x = Tensor::<3>::from_data(TensorData::new(f32s(&x_values), SHAPE), &ad).require_grad();
        let g = Tensor::<3>::from_data(TensorData::new(f32s(&g_values), SHAPE), &ad);
        let y = layer.forward(x.clone());
        let grads = (y.clone() * g).sum().backward();
        let at = |what: &str| format!("step {step}: {what}");
        assert_close(&at("output"), &values(y), &f32s(&expected[0]), 1e-5);
        assert_close_above(
            &at("input grad"),
            &values(x.grad(&grads).unwrap()),
            &f32s(&expected[1]),
            1e-4,
            0.1,
        );
        let pgrad =
            |p: &Option<Param<Tensor<1>>>| values(p.as_ref().unwrap().val().grad(&grads).unwrap());
        assert_close(
            &at("gamma grad"),
            &pgrad(&layer.gamma),
            &f32s(&expected[2]),
            1e-5,
        );
        assert_close(
            &at("beta grad"),
            &pgrad(&layer.beta),
            &f32s(&expected[3]),
            1e-5,
        );
        assert_close(
            &at("running mean"),
            &values(layer.running_mean()),
            &f32s(&mean),
            1e-5,
        );
        assert_close(
            &at("running var"),
            &values(layer.running_var()),
            &f32s(&var),
            1e-5,
        );
        assert_eq!(layer.num_batches_tracked(), step as u64 + 1);
    }
    // Evaluation: the running statistics, as BatchNorm.
    let eval = layer.valid();
    let x = batch(5);
    let y = values(eval.forward(Tensor::<3>::from_data(
        TensorData::new(f32s(&x), SHAPE),
        device,
    )));
    let expected: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = (i / SHAPE[2]) % SHAPE[1];
            (v - mean[ch]) / (var[ch] + EPS).sqrt() * GAMMA[ch] + BETA[ch]
        })
        .collect();
    assert_close("evaluation", &y, &f32s(&expected), 1e-5);
}

/// Before the warm-up starts (`rmax = 1`, `dmax = 0`) it is BatchNorm, and
/// the limits grow linearly with the steps taken.
fn warmup_starts_as_batch_norm(device: &Device) {
    let ad = device.clone().autodiff();
    let renorm = BatchRenormConfig::new(2).with_warmup_steps(4).init(&ad);
    let bn = BatchNormConfig::new(2).init(&ad);
    let x = Tensor::<3>::from_data(TensorData::new(f32s(&batch(0)), SHAPE), &ad);
    let limits = renorm.limits();
    assert_eq!((limits.rmax, limits.dmax), (1.0, 0.0));
    assert_close(
        "first warm-up step vs BatchNorm",
        &values(renorm.forward(x.clone())),
        &values(bn.forward(x)),
        1e-6,
    );
    let limits = renorm.limits();
    assert_eq!(
        (limits.rmax, limits.dmax),
        (1.5, 1.25),
        "a quarter of the way to (3, 5)"
    );
    assert!(
        BatchRenormConfig::new(2)
            .with_rmax(0.5)
            .try_init(device)
            .is_err()
    );
    assert!(
        BatchRenormConfig::new(2)
            .with_dmax(-1.0)
            .try_init(device)
            .is_err()
    );
}

on_every_backend!(
    renorm_matches_the_papers_equations,
    warmup_starts_as_batch_norm
);
