//! The fused kernels against the composed path: on each device with a
//! kernel (flex and ndarray: the CPU kernel; wgpu: the CubeCL kernels) the
//! layer runs fused (one operation with a handwritten backward), and is
//! compared with the same layer on flex inside `with_composed_path` (Burn's
//! tensor operations, differentiated by autodiff), on the same inputs,
//! within 1e-5 relative: outputs, the gradients of `sum(y * g)` with
//! respect to the input, gamma and beta, and the running statistics of
//! BatchNorm and InstanceNorm; for every layer of the family.
//!
//! The reference runs on a CPU: Burn 0.22.1's composed path on wgpu sums
//! at most 65,532 rows (`sum_dim`), so its gamma gradient is wrong for the
//! "many rows" case below.

use crate::common::{assert_close_above, rms, values};
use burn::module::Param;
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_norm::backend::{has_fused_kernel, with_composed_path};
use burn_norm::{
    BatchNormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig, RmsNormConfig,
};

const RTOL: f64 = 1e-5;

fn irregular(n: usize, seed: f64, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f64 + 1.0) * seed).sin() as f32 * 2.0 + offset)
        .collect()
}

/// Non-trivial affine parameters, the same on both backends.
fn set(p: Param<Tensor<1>>, seed: f64, device: &Device) -> Param<Tensor<1>> {
    let len = p.dims()[0];
    Param::from_tensor(Tensor::from_data(
        TensorData::new(irregular(len, seed, 1.0), [len]),
        device,
    ))
}

/// Output and gradients of `sum(y * g)`: input first, then the parameters.
fn output_and_grads<const D: usize>(
    shape: [usize; D],
    params: [Option<&Param<Tensor<1>>>; 2],
    forward: impl Fn(Tensor<D>) -> Tensor<D>,
    device: &Device,
) -> Vec<Vec<f32>> {
    let n = shape.iter().product();
    let x = Tensor::<D>::from_data(TensorData::new(irregular(n, 0.37, 3.0), shape), device)
        .require_grad();
    let g = Tensor::<D>::from_data(TensorData::new(irregular(n, 2.11, 0.0), shape), device);
    let y = forward(x.clone());
    let grads = (y.clone() * g).sum().backward();
    let mut out = vec![values(y), values(x.grad(&grads).unwrap())];
    for p in params.into_iter().flatten() {
        out.push(values(p.val().grad(&grads).unwrap()));
    }
    out
}

/// Output and gradients (x, gamma, beta) of `config`'s layer on `device`.
fn run(config: &LayerNormConfig, shape: [usize; 3], device: &Device) -> Vec<Vec<f32>> {
    let ad = device.clone().autodiff();
    let mut layer = config.init(&ad);
    layer.gamma = layer.gamma.map(|p| set(p, 0.61, &ad));
    layer.beta = layer.beta.map(|p| set(p, 0.83, &ad));
    output_and_grads(
        shape,
        [layer.gamma.as_ref(), layer.beta.as_ref()],
        |x| layer.forward(x),
        &ad,
    )
}

/// The same for a training BatchNorm, then its running statistics.
fn run_batch_norm(config: &BatchNormConfig, shape: [usize; 4], device: &Device) -> Vec<Vec<f32>> {
    let ad = device.clone().autodiff();
    let mut layer = config.init(&ad);
    layer.gamma = layer.gamma.map(|p| set(p, 0.61, &ad));
    layer.beta = layer.beta.map(|p| set(p, 0.83, &ad));
    let mut out = output_and_grads(
        shape,
        [layer.gamma.as_ref(), layer.beta.as_ref()],
        |x| layer.forward(x),
        &ad,
    );
    out.extend(
        [layer.running_mean(), layer.running_var()]
            .into_iter()
            .flatten()
            .map(values),
    );
    out
}

/// The error floor of gamma's and beta's gradients, sums of
/// `numel / params` terms each that cancel: both paths round them in f32
/// (the composed one, our reference, too), so their error is measured
/// against the sum's natural scale, sqrt(terms) times the RMS of the
/// upstream gradient, rather than against its value.
fn parameter_grad_floor<const D: usize>(shape: [usize; D], params: usize) -> f64 {
    let n: usize = shape.iter().product();
    ((n / params.max(1)) as f64).sqrt() * rms(&irregular(n, 2.11, 0.0))
}

/// The devices with a fused kernel.
fn fused_devices() -> Vec<(&'static str, Device)> {
    #[allow(deprecated)]
    let mut devices = vec![("flex", Device::flex()), ("ndarray", Device::ndarray())];
    #[cfg(feature = "wgpu")]
    devices.push(("wgpu", crate::common::wgpu_device()));
    for (name, device) in &devices {
        assert!(
            has_fused_kernel(device, DType::F32),
            "{name} should take the fused path"
        );
        assert!(
            !with_composed_path(|| has_fused_kernel(device, DType::F32)),
            "{name} inside with_composed_path"
        );
    }
    devices
}

#[test]
fn fused_layer_norm_matches_the_composed_path() {
    let cases = [
        ("affine", LayerNormConfig::new(96), [3, 5, 96]),
        (
            "no bias",
            LayerNormConfig::new(40).with_bias(false),
            [2, 7, 40],
        ),
        (
            "no affine",
            LayerNormConfig::new(33).with_elementwise_affine(false),
            [4, 3, 33],
        ),
        (
            "two normalized axes",
            LayerNormConfig::from_normalized_shape(vec![6, 17]),
            [5, 6, 17],
        ),
        ("width 1", LayerNormConfig::new(1), [2, 3, 1]),
        // GPU: 15 rows of 96, two 128-unit teams per cube, the last cube
        // with a team that has no row (the other cases above likewise).
        // Rows longer than a GPU cube's 256 units: three values held in
        // registers per unit.
        ("wide rows", LayerNormConfig::new(700), [2, 3, 700]),
        // Rows of 2,100 values: 525 vectors of 4, held on the GPU.
        ("long rows", LayerNormConfig::new(2100), [1, 2, 2100]),
        // Rows of 9 vectors per unit on the GPU (or 9 single values for
        // odd widths): held, but more than a sweep takes, so the
        // backward's parameter sums take their second pass.
        (
            "rows past a sweep",
            LayerNormConfig::new(8400),
            [1, 2, 8400],
        ),
        (
            "odd rows past a sweep",
            LayerNormConfig::new(2101),
            [1, 2, 2101],
        ),
        // Rows of 4,100 vectors, more than a cube holds: on the GPU, few
        // such rows go in blocks of 2,048 values (the last of 16), and
        // with `BURN_NORM_GROUP_BLOCKS=0` (CI) one team streams each.
        (
            "rows in blocks",
            LayerNormConfig::new(16_400),
            [1, 2, 16_400],
        ),
        (
            "rows in blocks, single values",
            LayerNormConfig::new(16_401),
            [1, 3, 16_401],
        ),
        (
            "rows in blocks, pairs, no bias",
            LayerNormConfig::new(16_402).with_bias(false),
            [2, 1, 16_402],
        ),
        (
            "rows in blocks, no affine",
            LayerNormConfig::new(16_404).with_elementwise_affine(false),
            [1, 2, 16_404],
        ),
        // On the CPU, rows of 32,768 values or more go backward by tiles of
        // columns (the last tile here partial), and forward too where they
        // are fewer than the threads (one row).
        (
            "rows by columns",
            LayerNormConfig::new(40_000),
            [1, 3, 40_000],
        ),
        (
            "one row by columns",
            LayerNormConfig::new(40_000),
            [1, 1, 40_000],
        ),
        // More than 65,535 rows: a second grid dimension on the GPU, and
        // more than one block of the column sums.
        ("many rows", LayerNormConfig::new(3), [7, 10_001, 3]),
    ];
    for (device_name, device) in fused_devices() {
        for (name, config, shape) in &cases {
            let fused = run(config, *shape, &device);
            let composed = with_composed_path(|| run(config, *shape, &Device::flex()));
            assert_eq!(fused.len(), composed.len());
            let floor = fused
                .get(2)
                .map_or(0.0, |gamma| parameter_grad_floor(*shape, gamma.len()));
            for (what, (a, e)) in ["output", "input grad", "gamma grad", "beta grad"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                let floor = if matches!(*what, "gamma grad" | "beta grad") {
                    floor
                } else {
                    0.0
                };
                assert_close_above(&format!("{device_name} {name}: {what}"), a, e, RTOL, floor);
            }
        }
    }
}

#[test]
fn fused_batch_norm_matches_the_composed_path() {
    let cases = [
        ("2d", BatchNormConfig::new(5), [4, 5, 6, 7]),
        (
            "no affine",
            BatchNormConfig::new(3).with_affine(false),
            [2, 3, 4, 4],
        ),
        ("spatial 1", BatchNormConfig::new(6), [9, 6, 1, 1]),
        // Channels of 1,600 values: several per GPU unit.
        ("large channels", BatchNormConfig::new(3), [4, 3, 20, 20]),
        // Channels of more values than a GPU cube holds (2,048): cut into
        // blocks, merged, applied by vectors of 4, 2 or 1 values.
        ("channel blocks", BatchNormConfig::new(2), [8, 2, 20, 20]),
        ("many blocks", BatchNormConfig::new(2), [16, 2, 30, 30]),
        // 11 blocks per channel: the merge's team adds them together.
        (
            "blocks added by a team",
            BatchNormConfig::new(2),
            [24, 2, 30, 30],
        ),
        ("blocks, pairs", BatchNormConfig::new(2), [6, 2, 19, 22]),
        // 72 blocks per channel, more than the merge's 64 units: each unit
        // adds several blocks, forward and backward.
        (
            "more blocks than the merge's units",
            BatchNormConfig::new(1),
            [36, 1, 64, 64],
        ),
        (
            "blocks, single values, no affine",
            BatchNormConfig::new(3).with_affine(false),
            [5, 3, 33, 35],
        ),
    ];
    for (device_name, device) in fused_devices() {
        for (name, config, shape) in &cases {
            let fused = run_batch_norm(config, *shape, &device);
            let composed = with_composed_path(|| run_batch_norm(config, *shape, &Device::flex()));
            assert_eq!(fused.len(), composed.len());
            let names = if config.affine {
                [
                    "output",
                    "input grad",
                    "gamma grad",
                    "beta grad",
                    "running mean",
                    "running var",
                ]
                .as_slice()
            } else {
                ["output", "input grad", "running mean", "running var"].as_slice()
            };
            let floor = parameter_grad_floor(*shape, shape[1]);
            for (what, (a, e)) in names.iter().zip(fused.iter().zip(&composed)) {
                let floor = if matches!(*what, "gamma grad" | "beta grad") {
                    floor
                } else {
                    0.0
                };
                assert_close_above(
                    &format!("{device_name} batch norm {name}: {what}"),
                    a,
                    e,
                    RTOL,
                    floor,
                );
            }
        }
    }
}

/// Compares one layer, fused on each device against composed on flex:
/// `run(device)` returns the output, the gradients and any running
/// statistics, named by `names`; entries named `* grad` of parameters are
/// floored as [`parameter_grad_floor`] says for `params` parameters.
fn check_layer<const D: usize>(
    label: &str,
    shape: [usize; D],
    params: usize,
    names: &[&str],
    run: impl Fn(&Device) -> Vec<Vec<f32>>,
) {
    for (device_name, device) in fused_devices() {
        let fused = run(&device);
        let composed = with_composed_path(|| run(&Device::flex()));
        assert_eq!(fused.len(), names.len(), "{label}");
        assert_eq!(composed.len(), names.len(), "{label}");
        let floor = parameter_grad_floor(shape, params);
        for (what, (a, e)) in names.iter().zip(fused.iter().zip(&composed)) {
            let floor = if matches!(*what, "gamma grad" | "beta grad") {
                floor
            } else {
                0.0
            };
            assert_close_above(&format!("{device_name} {label}: {what}"), a, e, RTOL, floor);
        }
    }
}

#[test]
fn fused_rms_norm_matches_the_composed_path() {
    let cases = [
        ("affine", RmsNormConfig::new(96), [3, 5, 96]),
        (
            "no affine",
            RmsNormConfig::new(33).with_elementwise_affine(false),
            [4, 3, 33],
        ),
        (
            "two normalized axes",
            RmsNormConfig::from_normalized_shape(vec![6, 17]),
            [5, 6, 17],
        ),
        ("wide rows", RmsNormConfig::new(700), [2, 3, 700]),
        ("long rows", RmsNormConfig::new(2100), [1, 2, 2100]),
        ("rows past a sweep", RmsNormConfig::new(8400), [1, 2, 8400]),
        (
            "odd rows past a sweep",
            RmsNormConfig::new(2101),
            [1, 2, 2101],
        ),
        // In blocks on the GPU (see LayerNorm's).
        ("rows in blocks", RmsNormConfig::new(16_400), [1, 2, 16_400]),
        (
            "rows in blocks, single values",
            RmsNormConfig::new(16_401),
            [1, 3, 16_401],
        ),
        (
            "rows in blocks, no affine",
            RmsNormConfig::new(16_402).with_elementwise_affine(false),
            [2, 1, 16_402],
        ),
        (
            "rows by columns",
            RmsNormConfig::new(40_000),
            [1, 3, 40_000],
        ),
        (
            "one row by columns",
            RmsNormConfig::new(40_000),
            [1, 1, 40_000],
        ),
        ("many rows", RmsNormConfig::new(3), [7, 10_001, 3]),
    ];
    for (name, config, shape) in cases {
        let names: &[&str] = if config.elementwise_affine {
            &["output", "input grad", "gamma grad"]
        } else {
            &["output", "input grad"]
        };
        check_layer(
            &format!("rms norm {name}"),
            shape,
            config.d_model,
            names,
            |device| {
                let ad = device.clone().autodiff();
                let mut layer = config.init(&ad);
                layer.gamma = layer.gamma.map(|p| set(p, 0.61, &ad));
                output_and_grads(
                    shape,
                    [layer.gamma.as_ref(), None],
                    |x| layer.forward(x),
                    &ad,
                )
            },
        );
    }
}

#[test]
fn fused_group_norm_matches_the_composed_path() {
    let cases = [
        // Groups of 4 channels x 64 values: held in registers on the GPU.
        ("held groups", GroupNormConfig::new(8, 32), [2, 32, 8, 8]),
        // Groups of 2 x 1,600 values: 800 vectors, held on the GPU.
        ("long groups", GroupNormConfig::new(2, 4), [1, 4, 40, 40]),
        // Groups of 2 x 4,900 values (2,450 vectors), and of 2,115 single
        // values (odd spatial size): 10 and 9 per unit on the GPU, held
        // (up to 16).
        (
            "groups of 10 per unit",
            GroupNormConfig::new(2, 4),
            [1, 4, 70, 70],
        ),
        (
            "odd groups of 9 per unit",
            GroupNormConfig::new(2, 2),
            [1, 2, 45, 47],
        ),
        (
            "no affine",
            GroupNormConfig::new(3, 6).with_affine(false),
            [3, 6, 2, 5],
        ),
        // Groups of 2 x 8,464 values (4,232 vectors), too long to hold:
        // on the GPU each channel in blocks of 2,048 values (5, the last
        // partial), merged per group.
        (
            "groups in blocks",
            GroupNormConfig::new(1, 2),
            [1, 2, 92, 92],
        ),
        // The same with two samples and single values (4,355 per channel:
        // 3 blocks), and with vectors of 2 (8,190 per channel).
        (
            "groups in blocks, single values",
            GroupNormConfig::new(2, 4),
            [2, 4, 65, 67],
        ),
        (
            "groups in blocks, pairs",
            GroupNormConfig::new(1, 2),
            [1, 2, 90, 91],
        ),
        // Groups of 32 channels of 576 values (4,608 vectors): channels
        // too short for blocks, streamed.
        (
            "streamed groups",
            GroupNormConfig::new(1, 32),
            [1, 32, 24, 24],
        ),
        // Groups of 16 channels of 483 single values (7,728): more than a
        // team holds (4,096 single values), channels too short for blocks:
        // streamed. With `BURN_NORM_SUMMED_CHANNELS=16` (CI) the backward
        // takes each channel's parameter sums in the pass over the group.
        (
            "streamed groups, channel sums in the pass",
            GroupNormConfig::new(2, 32),
            [1, 32, 21, 23],
        ),
        // One sample's one group of 4 channels x 10,000 values: on the CPU
        // forward by tiles of columns (a group fewer than the threads),
        // channels straddling tiles.
        (
            "one group by columns",
            GroupNormConfig::new(1, 4),
            [1, 4, 100, 100],
        ),
        // No spatial axis: each group is `C / G` values.
        ("rank 2", GroupNormConfig::new(2, 10), [7, 10, 1, 1]),
    ];
    for (name, config, shape) in cases {
        let names: &[&str] = if config.affine {
            &["output", "input grad", "gamma grad", "beta grad"]
        } else {
            &["output", "input grad"]
        };
        check_layer(
            &format!("group norm {name}"),
            shape,
            shape[1],
            names,
            |device| {
                let ad = device.clone().autodiff();
                let mut layer = config.init(&ad);
                layer.gamma = layer.gamma.map(|p| set(p, 0.61, &ad));
                layer.beta = layer.beta.map(|p| set(p, 0.83, &ad));
                output_and_grads(
                    shape,
                    [layer.gamma.as_ref(), layer.beta.as_ref()],
                    |x| layer.forward(x),
                    &ad,
                )
            },
        );
    }
}

#[test]
fn fused_instance_norm_matches_the_composed_path() {
    let affine_running = InstanceNormConfig::new(5)
        .with_affine(true)
        .with_track_running_stats(true);
    let cases = [
        // Instances of 7 values: many teams per GPU cube.
        ("short instances", affine_running.clone(), [3, 5, 7, 1]),
        ("2d", affine_running, [2, 5, 6, 6]),
        ("defaults", InstanceNormConfig::new(3), [2, 3, 50, 50]),
        // Instances of 16,900 values (4,225 vectors): in blocks on the GPU.
        (
            "instances in blocks",
            InstanceNormConfig::new(3)
                .with_affine(true)
                .with_track_running_stats(true),
            [2, 3, 130, 130],
        ),
    ];
    for (name, config, shape) in cases {
        let mut names = vec!["output", "input grad"];
        if config.affine {
            names.extend(["gamma grad", "beta grad"]);
        }
        if config.track_running_stats {
            names.extend(["running mean", "running var"]);
        }
        check_layer(
            &format!("instance norm {name}"),
            shape,
            shape[1],
            &names,
            |device| {
                let ad = device.clone().autodiff();
                let mut layer = config.init(&ad);
                layer.gamma = layer.gamma.map(|p| set(p, 0.61, &ad));
                layer.beta = layer.beta.map(|p| set(p, 0.83, &ad));
                let mut out = output_and_grads(
                    shape,
                    [layer.gamma.as_ref(), layer.beta.as_ref()],
                    |x| layer.forward(x),
                    &ad,
                );
                out.extend(
                    [layer.running_mean(), layer.running_var()]
                        .into_iter()
                        .flatten()
                        .map(values),
                );
                out
            },
        );
    }
}
