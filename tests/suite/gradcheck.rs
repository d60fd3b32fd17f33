//! Finite-difference gradient checks in f64: the gradients Burn's autodiff
//! takes through our normalization math (input, gamma, beta) against central
//! differences of `L = sum(y * g)`.
//!
//! Backends without working f64 are checked in f32, with a step and a
//! tolerance sized for f32. That is wgpu today: on lavapipe its f64 `sqrt`
//! backward returns garbage (Burn 0.22.1 / CubeCL 0.11; f32 is right), and
//! on an NVIDIA GPU the f64 probe itself loses the device; `supports_f64`
//! says no for wgpu and probes the other backends.

use crate::common::{supports_f64, values64};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_norm::functional;

struct Precision {
    dtype: DType,
    step: f64,
    rtol: f64,
}

fn precision(device: &Device) -> Precision {
    if supports_f64(device) {
        Precision {
            dtype: DType::F64,
            step: 1e-6,
            rtol: 1e-6,
        }
    } else {
        // f32: truncation error ~h^2, rounding ~eps/h: h = 1e-2 balances both.
        Precision {
            dtype: DType::F32,
            step: 1e-2,
            rtol: 2e-2,
        }
    }
}

fn random<const D: usize>(
    shape: [usize; D],
    seed: f64,
    p: &Precision,
    device: &Device,
) -> Tensor<D> {
    // Deterministic, irregular values: independent of the backend's RNG.
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| ((i as f64 + 1.0) * seed).sin() * 2.0 + 0.3)
        .collect();
    Tensor::from_data(TensorData::new(v, shape.to_vec()), (device, p.dtype))
}

/// Checks the three gradients of `f(x, gamma, beta)`.
fn check<const D: usize>(
    name: &str,
    device: &Device,
    shape: [usize; D],
    params: usize,
    f: impl Fn(Tensor<D>, Tensor<1>, Tensor<1>) -> Tensor<D>,
) {
    let p = precision(device);
    let plain = device;
    let x = random(shape, 0.37, &p, plain);
    let gamma = random([params], 0.91, &p, plain);
    let beta = random([params], 1.73, &p, plain);
    let g = random(shape, 2.11, &p, plain);

    let loss = |x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>| -> f64 {
        values64((f(x, gamma, beta) * g.clone()).sum())[0]
    };

    let xa = x.clone().autodiff().require_grad();
    let ga = gamma.clone().autodiff().require_grad();
    let ba = beta.clone().autodiff().require_grad();
    let grads = (f(xa.clone(), ga.clone(), ba.clone()) * g.clone().autodiff())
        .sum()
        .backward();
    let analytic = [
        values64(xa.grad(&grads).unwrap()),
        values64(ga.grad(&grads).unwrap()),
        values64(ba.grad(&grads).unwrap()),
    ];

    let inputs = [
        values64(x.clone()),
        values64(gamma.clone()),
        values64(beta.clone()),
    ];
    for (which, (base, analytic)) in ["x", "gamma", "beta"]
        .iter()
        .zip(inputs.iter().zip(&analytic))
    {
        let scale = analytic
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(1e-3);
        for i in 0..base.len() {
            let perturbed = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let dims = if *which == "x" {
                    shape.to_vec()
                } else {
                    vec![params]
                };
                TensorData::new(v, dims)
            };
            let eval = |delta: f64| match *which {
                "x" => loss(
                    Tensor::from_data(perturbed(delta), (plain, p.dtype)),
                    gamma.clone(),
                    beta.clone(),
                ),
                "gamma" => loss(
                    x.clone(),
                    Tensor::from_data(perturbed(delta), (plain, p.dtype)),
                    beta.clone(),
                ),
                _ => loss(
                    x.clone(),
                    gamma.clone(),
                    Tensor::from_data(perturbed(delta), (plain, p.dtype)),
                ),
            };
            let numeric = (eval(p.step) - eval(-p.step)) / (2.0 * p.step);
            let err = (numeric - analytic[i]).abs() / scale;
            assert!(
                err <= p.rtol,
                "{name}: d/d{which}[{i}]: autodiff {} vs finite difference {numeric} (error {err:.2e} of max |grad| {scale:.3e}, dtype {:?})",
                analytic[i],
                p.dtype
            );
        }
    }
}

fn batch_norm_train_gradients_match_finite_differences(device: &Device) {
    check(
        "batch_norm_train",
        device,
        [3, 2, 4],
        2,
        |x, gamma, beta| functional::batch_norm_train(x, Some(gamma), Some(beta), 1e-5).output,
    );
}

fn batch_norm_eval_gradients_match_finite_differences(device: &Device) {
    check("batch_norm", device, [2, 3, 2, 2], 3, |x, gamma, beta| {
        let dtype = x.dtype();
        let dev = x.device();
        let mean = Tensor::<1>::from_data(TensorData::from([0.1f64, -0.4, 0.7]), (&dev, dtype));
        let var = Tensor::<1>::from_data(TensorData::from([0.5f64, 2.0, 1.3]), (&dev, dtype));
        functional::batch_norm(x, mean, var, Some(gamma), Some(beta), 1e-5)
    });
}

fn layer_norm_gradients_match_finite_differences(device: &Device) {
    check("layer_norm", device, [3, 5], 5, |x, gamma, beta| {
        functional::layer_norm(x, 1, Some(gamma), Some(beta), 1e-5)
    });
    check(
        "layer_norm over two axes",
        device,
        [2, 2, 3],
        6,
        |x, gamma, beta| functional::layer_norm(x, 2, Some(gamma), Some(beta), 1e-5),
    );
}

fn rms_norm_gradients_match_finite_differences(device: &Device) {
    // RMSNorm has no beta: the check's beta is added after it, so that its
    // gradient (dy summed over rows) is checked too but tells nothing new.
    check("rms_norm", device, [3, 5], 5, |x, gamma, beta| {
        functional::rms_norm(x, 1, Some(gamma), 1e-5) + beta.unsqueeze::<2>()
    });
    check(
        "rms_norm over two axes",
        device,
        [2, 2, 3],
        6,
        |x, gamma, beta| functional::rms_norm(x, 2, Some(gamma), 1e-5) + beta.reshape([1, 2, 3]),
    );
}

fn group_norm_gradients_match_finite_differences(device: &Device) {
    check("group_norm", device, [2, 6, 3], 6, |x, gamma, beta| {
        functional::group_norm(x, 3, Some(gamma), Some(beta), 1e-5)
    });
    check(
        "group_norm, one sample",
        device,
        [1, 4, 2, 2],
        4,
        |x, gamma, beta| functional::group_norm(x, 2, Some(gamma), Some(beta), 1e-5),
    );
}

fn instance_norm_gradients_match_finite_differences(device: &Device) {
    check(
        "instance_norm_train",
        device,
        [2, 3, 4],
        3,
        |x, gamma, beta| functional::instance_norm_train(x, Some(gamma), Some(beta), 1e-5).output,
    );
}

on_every_backend!(
    batch_norm_train_gradients_match_finite_differences,
    batch_norm_eval_gradients_match_finite_differences,
    layer_norm_gradients_match_finite_differences,
    rms_norm_gradients_match_finite_differences,
    group_norm_gradients_match_finite_differences,
    instance_norm_gradients_match_finite_differences,
);
