//! Drop-in check: the same model source compiles and trains against
//! `burn::nn` and against `burn_norm`, with only the import changed, and the
//! two train alike (training-mode math is the same; only burn-nn's running
//! variance differs, which training does not read).

use burn::tensor::Device;

mod with_burn_nn {
    use burn::nn::norm::{Normalization, NormalizationConfig};
    use burn::nn::{
        BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, InstanceNorm, InstanceNormConfig,
        LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig,
    };
    include!("drop_in_model.rs");
}

mod with_burn_norm {
    use burn_norm::{
        BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, InstanceNorm, InstanceNormConfig,
        LayerNorm, LayerNormConfig, Normalization, NormalizationConfig, RmsNorm, RmsNormConfig,
    };
    include!("drop_in_model.rs");
}

fn model_trains_with_only_the_import_changed(device: &Device) {
    let device = device.clone().autodiff();
    let ours = with_burn_norm::train(&device, 30);
    let theirs = with_burn_nn::train(&device, 30);
    assert!(
        ours[29] < 0.5 * ours[0],
        "training should reduce the loss: {} -> {}",
        ours[0],
        ours[29]
    );
    for (step, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs().max(1e-2),
            "step {step}: burn_norm loss {a} vs burn::nn loss {b}"
        );
    }
}

on_every_backend!(model_trains_with_only_the_import_changed);
