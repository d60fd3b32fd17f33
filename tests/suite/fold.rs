//! Folding an evaluated BatchNorm into the Conv2d or Linear before it: the
//! folded layer gives the pair's outputs (1e-5 relative), and what cannot
//! be folded is a clear error.

use crate::common::{assert_close, values};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2dConfig;
use burn::nn::{LinearConfig, LinearLayout};
use burn::tensor::{Device, Distribution, Tensor};
use burn_norm::{BatchNorm, BatchNormConfig, FoldBatchNorm, NormError};

/// A BatchNorm with random gamma and beta and running statistics from three
/// training batches of `shape` (mean 2, std 3), returned evaluated.
fn trained<const D: usize>(device: &Device, shape: [usize; D]) -> BatchNorm {
    let ad = device.clone().autodiff();
    let c = shape[1];
    let mut bn = BatchNormConfig::new(c).with_momentum(None).init(&ad);
    let random = |seed: f64| {
        let v: Vec<f32> = (0..c)
            .map(|i| ((i as f64 + 1.0) * seed).sin() as f32 + 1.2)
            .collect();
        Param::from_tensor(Tensor::<1>::from_floats(v.as_slice(), &ad))
    };
    bn.gamma = Some(random(0.7));
    bn.beta = Some(random(1.9));
    for _ in 0..3 {
        bn.forward(Tensor::<D>::random(
            shape,
            Distribution::Normal(2.0, 3.0),
            &ad,
        ));
    }
    bn.valid().to_device(device)
}

fn conv_folds_exactly(device: &Device) {
    for bias in [true, false] {
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .with_bias(bias)
            .init(device);
        let bn = trained(device, [4, 5, 6, 6]);
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, device);
        let expected = values(bn.forward(conv.forward(x.clone())));
        let folded = conv.fold_batch_norm(&bn).expect("fold");
        assert!(folded.bias.is_some(), "a folded conv has a bias");
        assert_close(
            &format!("conv (bias {bias}) + BatchNorm, folded"),
            &values(folded.forward(x)),
            &expected,
            1e-5,
        );
    }
}

fn linear_folds_exactly(device: &Device) {
    for layout in [LinearLayout::Row, LinearLayout::Col] {
        for bias in [true, false] {
            let linear = LinearConfig::new(6, 4)
                .with_layout(layout)
                .with_bias(bias)
                .init(device);
            let bn = trained(device, [16, 4]);
            let x = Tensor::<2>::random([5, 6], Distribution::Default, device);
            let expected = values(bn.forward(linear.forward(x.clone())));
            let folded = linear.fold_batch_norm(&bn).expect("fold");
            let what = format!("linear ({layout:?}, bias {bias}) + BatchNorm1d, folded");
            assert_close(&what, &values(folded.forward(x.clone())), &expected, 1e-5);
            // The folded layer saves and loads in its layout's record form.
            let dir = std::env::temp_dir().join(format!(
                "burn-norm-fold-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            folded.clone().save_file(dir.join("linear")).expect("save");
            let loaded = LinearConfig::new(6, 4)
                .with_layout(layout)
                .init(device)
                .load_file(dir.join("linear"));
            assert_close(
                &format!("{what}, reloaded"),
                &values(loaded.forward(x)),
                &expected,
                1e-5,
            );
        }
    }
}

on_every_backend!(conv_folds_exactly, linear_folds_exactly);

#[test]
fn what_cannot_be_folded_is_a_clear_error() {
    let device = Device::flex();
    let conv = || Conv2dConfig::new([3, 5], [3, 3]).init(&device);
    let message = |bn: &BatchNorm| conv().fold_batch_norm(bn).unwrap_err().to_string();

    let training = BatchNormConfig::new(5).init(&device);
    assert_eq!(
        message(&training),
        "BatchNorm: cannot fold into the Conv2d before it: the BatchNorm is in training mode (its output would use batch statistics): call .valid() first"
    );
    let other = BatchNormConfig::new(4).init(&device).valid();
    assert_eq!(
        message(&other),
        "BatchNorm: cannot fold into the Conv2d before it: the BatchNorm has 4 channels, the layer outputs 5"
    );
    let untracked = BatchNormConfig::new(5)
        .with_track_running_stats(false)
        .init(&device)
        .valid();
    assert!(matches!(
        conv().fold_batch_norm(&untracked),
        Err(NormError::Fold { .. })
    ));
    assert!(message(&untracked).contains("no running statistics"));
}
