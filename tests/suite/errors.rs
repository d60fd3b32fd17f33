//! Bad configs and bad inputs fail with messages that name the layer, what
//! was expected and what arrived; the fallible calls return them as values.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn_norm::{
    BatchNormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig, NormError, RmsNormConfig,
};

fn device() -> Device {
    Device::flex()
}

#[test]
fn invalid_batch_norm_configs_are_rejected_with_the_field_named() {
    let d = device();
    let cases = [
        (
            BatchNormConfig::new(0),
            "BatchNorm: invalid config: `num_features` must be > 0, got 0",
        ),
        (
            BatchNormConfig::new(3).with_epsilon(0.0),
            "BatchNorm: invalid config: `epsilon` must be finite and > 0, got 0",
        ),
        (
            BatchNormConfig::new(3).with_epsilon(-1e-5),
            "`epsilon` must be finite and > 0, got -0.00001",
        ),
        (
            BatchNormConfig::new(3).with_epsilon(f64::NAN),
            "`epsilon` must be finite and > 0, got NaN",
        ),
        (
            BatchNormConfig::new(3).with_epsilon(f64::INFINITY),
            "`epsilon` must be finite and > 0, got inf",
        ),
        (
            BatchNormConfig::new(3).with_momentum(Some(1.5)),
            "`momentum` must be None or a finite value in [0, 1], got 1.5",
        ),
        (
            BatchNormConfig::new(3).with_momentum(Some(-0.1)),
            "`momentum` must be None or a finite value in [0, 1], got -0.1",
        ),
        (
            BatchNormConfig::new(3).with_momentum(Some(f64::NAN)),
            "got NaN",
        ),
    ];
    for (config, message) in cases {
        let err = config.try_init(&d).expect_err(message);
        assert!(
            err.to_string().contains(message),
            "{err} should contain {message}"
        );
        assert!(matches!(
            err,
            NormError::InvalidConfig {
                layer: "BatchNorm",
                ..
            }
        ));
    }
    for momentum in [None, Some(0.0), Some(1.0)] {
        BatchNormConfig::new(3)
            .with_momentum(momentum)
            .try_init(&d)
            .unwrap();
    }
}

#[test]
fn invalid_layer_norm_configs_are_rejected_with_the_field_named() {
    let d = device();
    let cases = [
        (
            LayerNormConfig::new(0),
            "LayerNorm: invalid config: `d_model` must be > 0, got 0",
        ),
        (
            LayerNormConfig::new(4).with_epsilon(0.0),
            "LayerNorm: invalid config: `epsilon` must be finite and > 0, got 0",
        ),
        (
            LayerNormConfig::new(4).with_normalized_shape(Some(vec![2, 3])),
            "`normalized_shape` must be a non-empty shape whose product is d_model, got [2, 3] with d_model = 4",
        ),
        (
            LayerNormConfig::new(4).with_normalized_shape(Some(vec![])),
            "`normalized_shape` must be a non-empty shape",
        ),
    ];
    for (config, message) in cases {
        let err = config.try_init(&d).expect_err(message);
        assert!(
            err.to_string().contains(message),
            "{err} should contain {message}"
        );
    }
}

#[test]
#[should_panic(expected = "BatchNorm: invalid config: `num_features` must be > 0, got 0")]
fn init_panics_with_the_same_message() {
    BatchNormConfig::new(0).init(&device());
}

#[test]
fn batch_norm_rejects_wrong_rank_and_channels() {
    let d = device();
    let bn = BatchNormConfig::new(3).init(&d);
    let err = bn.try_forward(Tensor::<1>::zeros([3], &d)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchNorm: expected input [N, 3, ...] of rank 2 to 5, got shape [3]"
    );
    let err = bn
        .try_forward(Tensor::<6>::zeros([1, 3, 1, 1, 1, 2], &d))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("of rank 2 to 5, got shape [1, 3, 1, 1, 1, 2]"),
        "{err}"
    );
    let err = bn
        .try_forward(Tensor::<4>::zeros([2, 4, 5, 5], &d))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchNorm: expected input [N, 3, ...] of rank 2 to 5, got shape [2, 4, 5, 5]"
    );
    assert_eq!(
        err,
        NormError::InvalidInput {
            layer: "BatchNorm",
            expected: "[N, 3, ...] of rank 2 to 5".into(),
            got: vec![2, 4, 5, 5]
        }
    );
}

#[test]
#[should_panic(expected = "BatchNorm: expected input [N, 3, ...] of rank 2 to 5, got shape [2, 4]")]
fn batch_norm_forward_panics_with_the_message() {
    let d = device();
    BatchNormConfig::new(3)
        .init(&d)
        .forward(Tensor::<2>::zeros([2, 4], &d));
}

#[test]
fn training_on_one_value_per_channel_is_an_error() {
    let d = device().autodiff();
    let bn = BatchNormConfig::new(3).init(&d);
    let err = bn.try_forward(Tensor::<2>::zeros([1, 3], &d)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BatchNorm: expected more than 1 value per channel when training, got input shape [1, 3]"
    );
    assert!(
        bn.try_forward(Tensor::<4>::zeros([1, 3, 1, 1], &d))
            .is_err()
    );
    assert_eq!(
        bn.num_batches_tracked(),
        Some(0),
        "a rejected batch is not counted"
    );
    // One sample with spatial extent has several values per channel: fine.
    bn.try_forward(Tensor::<4>::zeros([1, 3, 2, 1], &d))
        .unwrap();
    // Evaluation with running statistics needs no batch statistics.
    let plain = device();
    bn.valid()
        .try_forward(Tensor::<2>::zeros([1, 3], &plain))
        .unwrap();
    // Without running statistics, every mode uses batch statistics.
    let no_stats = BatchNormConfig::new(3)
        .with_track_running_stats(false)
        .init(&plain);
    assert!(matches!(
        no_stats.try_forward(Tensor::<2>::zeros([1, 3], &plain)),
        Err(NormError::SingleValuePerChannel { .. })
    ));
}

#[test]
fn layer_norm_rejects_wrong_trailing_shape() {
    let d = device();
    let ln = LayerNormConfig::new(8).init(&d);
    let err = ln
        .try_forward(Tensor::<3>::zeros([2, 3, 7], &d))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "LayerNorm: expected input [..., 8], got shape [2, 3, 7]"
    );
    let ln = LayerNormConfig::from_normalized_shape([3, 4]).init(&d);
    let err = ln
        .try_forward(Tensor::<3>::zeros([2, 4, 3], &d))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "LayerNorm: expected input [..., 3, 4], got shape [2, 4, 3]"
    );
    let err = ln.try_forward(Tensor::<1>::zeros([12], &d)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "LayerNorm: expected input [..., 3, 4], got shape [12]"
    );
}

#[test]
fn modes_follow_burns_rule() {
    // Training needs an autodiff device *and* the training flag.
    let ad = device().autodiff();
    let bn = BatchNormConfig::new(2).init(&ad);
    let x = Tensor::<2>::from_floats([[1.0, 10.0], [3.0, 30.0]], &ad);
    bn.forward(x.clone());
    assert_eq!(bn.num_batches_tracked(), Some(1));
    let frozen = bn.clone().valid().train();
    assert_eq!(frozen.num_batches_tracked(), Some(1));
    let mut off = bn.clone();
    off.training = off.training.clone().with_value(false);
    let y = off.forward(x);
    assert_eq!(off.num_batches_tracked(), Some(1), "flag off: no update");
    // Running stats after one step of momentum 0.1: mean 0.1*[2, 20], var 0.9 + 0.1*[2, 200].
    let mean = crate::common::values(bn.running_mean().unwrap());
    let var = crate::common::values(bn.running_var().unwrap());
    crate::common::assert_close("running_mean", &mean, &[0.2, 2.0], 1e-6);
    crate::common::assert_close("running_var", &var, &[1.1, 20.9], 1e-6);
    // Flag off uses them: (1 - 0.2) / sqrt(1.1 + 1e-5).
    let y = crate::common::values(y);
    crate::common::assert_close(
        "eval",
        &y[..1],
        &[(0.8 / (1.1f64 + 1e-5).sqrt()) as f32],
        1e-6,
    );
}

#[test]
fn invalid_family_configs_are_rejected_with_the_field_named() {
    let d = device();
    let check = |err: NormError, message: &str| {
        assert!(
            err.to_string().contains(message),
            "{err} should contain {message}"
        );
    };
    check(
        GroupNormConfig::new(4, 6).try_init(&d).unwrap_err(),
        "GroupNorm: invalid config: `num_groups` must be a divisor of num_channels, got 4 with num_channels = 6",
    );
    check(
        GroupNormConfig::new(0, 6).try_init(&d).unwrap_err(),
        "GroupNorm: invalid config: `num_groups` must be > 0, got 0",
    );
    check(
        GroupNormConfig::new(2, 0).try_init(&d).unwrap_err(),
        "`num_channels` must be > 0, got 0",
    );
    check(
        RmsNormConfig::new(4)
            .with_epsilon(0.0)
            .try_init(&d)
            .unwrap_err(),
        "RmsNorm: invalid config: `epsilon` must be finite and > 0, got 0",
    );
    check(
        RmsNormConfig::new(4)
            .with_normalized_shape(Some(vec![3]))
            .try_init(&d)
            .unwrap_err(),
        "RmsNorm: invalid config: `normalized_shape` must be a non-empty shape whose product is d_model",
    );
    check(
        InstanceNormConfig::new(3)
            .with_momentum(Some(2.0))
            .try_init(&d)
            .unwrap_err(),
        "InstanceNorm: invalid config: `momentum` must be None or a finite value in [0, 1], got 2",
    );
    check(
        InstanceNormConfig::new(0).try_init(&d).unwrap_err(),
        "InstanceNorm: invalid config: `num_channels` must be > 0, got 0",
    );
}

#[test]
fn family_layers_reject_wrong_inputs() {
    let d = device();
    let gn = GroupNormConfig::new(2, 4).init(&d);
    let err = gn
        .try_forward(Tensor::<3>::zeros([2, 3, 5], &d))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "GroupNorm: expected input [N, 4, ...] of rank 2 or more, got shape [2, 3, 5]"
    );
    let rms = RmsNormConfig::new(8).init(&d);
    let err = rms.try_forward(Tensor::<2>::zeros([2, 7], &d)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RmsNorm: expected input [..., 8], got shape [2, 7]"
    );
    let norm = InstanceNormConfig::new(3).init(&d);
    let err = norm
        .try_forward(Tensor::<2>::zeros([2, 3], &d))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "InstanceNorm: expected input [N, 3, ...] of rank 3 to 5, got shape [2, 3]"
    );
    // One spatial value has no variance: PyTorch refuses it too.
    let err = norm
        .try_forward(Tensor::<4>::zeros([2, 3, 1, 1], &d))
        .unwrap_err();
    assert_eq!(
        err,
        NormError::SingleSpatialValue {
            layer: "InstanceNorm",
            got: vec![2, 3, 1, 1]
        }
    );
    assert!(err.to_string().contains("more than 1 spatial value"));
    // With running statistics in evaluation it is fine.
    let tracked = InstanceNormConfig::new(3)
        .with_track_running_stats(true)
        .init(&d);
    let y = tracked.forward(Tensor::<4>::ones([2, 3, 1, 1], &d));
    // (1 - 0) / sqrt(1 + 1e-5) with the initial running statistics.
    let expected = 1.0 / (1.0f32 + 1e-5).sqrt();
    for v in y.into_data().try_to_vec::<f32>().unwrap() {
        assert!((v - expected).abs() < 1e-6, "{v}");
    }
}

/// An input on another device than the layer is an error naming both (Burn
/// stopped inside the operation: "input tensor `gamma` is on the wrong
/// backend"); the autodiff and plain views of one device are the same
/// device. Layers without parameters are checked through their buffers.
#[test]
#[allow(deprecated)] // Burn 0.22 deprecates ndarray but still ships it.
fn an_input_on_another_device_is_an_error() {
    let (layer_device, other) = (Device::flex(), Device::ndarray());
    let x2 = || Tensor::<2>::ones([2, 4], &other);
    let x4 = || Tensor::<4>::ones([2, 4, 3, 3], &other);
    let errors = [
        LayerNormConfig::new(4)
            .init(&layer_device)
            .try_forward(x2())
            .err(),
        RmsNormConfig::new(4)
            .init(&layer_device)
            .try_forward(x2())
            .err(),
        GroupNormConfig::new(2, 4)
            .init(&layer_device)
            .try_forward(x4())
            .err(),
        InstanceNormConfig::new(4)
            .with_track_running_stats(true)
            .init(&layer_device)
            .try_forward(x4())
            .err(),
        BatchNormConfig::new(4)
            .with_affine(false)
            .init(&layer_device)
            .try_forward(x4())
            .err(),
        burn_norm::BatchRenormConfig::new(4)
            .init(&layer_device.clone().autodiff())
            .try_forward(Tensor::<4>::ones([2, 4, 3, 3], &other.clone().autodiff()))
            .err(),
    ];
    let layers = [
        "LayerNorm",
        "RmsNorm",
        "GroupNorm",
        "InstanceNorm",
        "BatchNorm",
        "BatchRenorm",
    ];
    for (err, name) in errors.into_iter().zip(layers) {
        let err = err.unwrap_or_else(|| panic!("{name} took an input on another device"));
        assert!(
            matches!(err, NormError::DeviceMismatch { layer, .. } if layer == name),
            "{name}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("Flex") && text.contains("NdArray") && text.contains("to_device"),
            "{text}"
        );
    }
    // A layer built for training takes inference inputs on the plain device.
    let ln = LayerNormConfig::new(4).init(&layer_device.clone().autodiff());
    assert!(
        ln.try_forward(Tensor::<2>::ones([2, 4], &layer_device))
            .is_ok()
    );
}
