//! Records save and load with nothing lost: parameters, running statistics
//! and the counter round-trip bit-exact through Burn's record files.

use crate::common::values;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};
use burn_norm::{BatchNorm, BatchNormConfig, LayerNormConfig};

fn bits(t: Tensor<1>) -> Vec<u32> {
    values(t).into_iter().map(f32::to_bits).collect()
}

fn randomize(p: &Option<Param<Tensor<1>>>, n: usize, device: &Device) -> Option<Param<Tensor<1>>> {
    p.as_ref()
        .map(|_| Param::from_tensor(Tensor::random([n], Distribution::Normal(0.0, 1.0), device)))
}

fn trained_batch_norm(device: &Device, c: usize) -> BatchNorm {
    let ad = device.clone().autodiff();
    let mut bn = BatchNormConfig::new(c).with_momentum(None).init(&ad);
    bn.gamma = randomize(&bn.gamma, c, &ad);
    bn.beta = randomize(&bn.beta, c, &ad);
    for _ in 0..3 {
        bn.forward(Tensor::<3>::random(
            [4, c, 5],
            Distribution::Normal(1.0, 3.0),
            &ad,
        ));
    }
    bn
}

fn batch_norm_record_round_trips_bit_exact(device: &Device) {
    let dir = tempdir("bn");
    let path = dir.join("bn");
    let bn = trained_batch_norm(device, 4);
    bn.clone().save_file(&path).expect("save");

    let loaded = BatchNormConfig::new(4)
        .with_momentum(None)
        .init(device)
        .load_file(&path);
    let param = |p: &Option<Param<Tensor<1>>>| bits(p.as_ref().unwrap().val());
    assert_eq!(param(&loaded.gamma), param(&bn.gamma));
    assert_eq!(param(&loaded.beta), param(&bn.beta));
    assert_eq!(
        bits(loaded.running_mean().unwrap()),
        bits(bn.running_mean().unwrap())
    );
    assert_eq!(
        bits(loaded.running_var().unwrap()),
        bits(bn.running_var().unwrap())
    );
    assert_eq!(loaded.num_batches_tracked(), Some(3));
    // And the loaded layer keeps counting from there (momentum None uses it).
    let ad = loaded.autodiff_on(device);
    ad.forward(Tensor::<2>::random(
        [3, 4],
        Distribution::Default,
        &device.clone().autodiff(),
    ));
    assert_eq!(ad.num_batches_tracked(), Some(4));
}

fn layer_norm_record_round_trips_bit_exact(device: &Device) {
    let dir = tempdir("ln");
    let path = dir.join("ln");
    let mut ln = LayerNormConfig::from_normalized_shape([2, 3]).init(device);
    ln.gamma = randomize(&ln.gamma, 6, device);
    ln.beta = randomize(&ln.beta, 6, device);
    ln.clone().save_file(&path).expect("save");
    let loaded = LayerNormConfig::from_normalized_shape([2, 3])
        .init(device)
        .load_file(&path);
    assert_eq!(
        bits(loaded.gamma.unwrap().val()),
        bits(ln.gamma.unwrap().val())
    );
    assert_eq!(
        bits(loaded.beta.unwrap().val()),
        bits(ln.beta.unwrap().val())
    );
}

fn loading_a_record_for_other_features_fails_clearly(device: &Device) {
    let dir = tempdir("mismatch");
    let path = dir.join("bn");
    trained_batch_norm(device, 4)
        .save_file(&path)
        .expect("save");
    let err = BatchNormConfig::new(5)
        .init(device)
        .try_load_file(&path)
        .expect_err("a 4-feature record cannot load into 5 features");
    let message = err.to_string();
    for part in [
        "gamma: shape mismatch",
        "[5]",
        "[4]",
        "running_mean: shape mismatch",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

/// A fresh folder under the target directory, removed first if present.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "burn-norm-records-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

trait AutodiffOn {
    fn autodiff_on(self, device: &Device) -> Self;
}

impl AutodiffOn for BatchNorm {
    /// Moves a loaded module to the autodiff flavour of `device` for training.
    fn autodiff_on(self, device: &Device) -> Self {
        self.to_device(&device.clone().autodiff()).train()
    }
}

on_every_backend!(
    batch_norm_record_round_trips_bit_exact,
    layer_norm_record_round_trips_bit_exact,
    loading_a_record_for_other_features_fails_clearly,
);
