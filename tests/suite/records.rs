//! Records save and load with nothing lost: parameters, running statistics
//! and the counter round-trip bit-exact through Burn's record files.

use crate::common::values;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};
use burn_norm::{
    BatchNorm, BatchNormConfig, GroupNormConfig, InstanceNormConfig, LayerNormConfig,
    Normalization, NormalizationConfig, RmsNormConfig,
};

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

fn family_records_round_trip_bit_exact(device: &Device) {
    let dir = tempdir("family");
    // RMSNorm: gamma.
    let mut rms = RmsNormConfig::new(5).init(device);
    rms.gamma = randomize(&rms.gamma, 5, device);
    rms.clone().save_file(dir.join("rms")).expect("save");
    let loaded = RmsNormConfig::new(5)
        .init(device)
        .load_file(dir.join("rms"));
    assert_eq!(
        bits(loaded.gamma.unwrap().val()),
        bits(rms.gamma.unwrap().val())
    );

    // GroupNorm: gamma and beta.
    let mut gn = GroupNormConfig::new(2, 4).init(device);
    gn.gamma = randomize(&gn.gamma, 4, device);
    gn.beta = randomize(&gn.beta, 4, device);
    gn.clone().save_file(dir.join("gn")).expect("save");
    let loaded = GroupNormConfig::new(2, 4)
        .init(device)
        .load_file(dir.join("gn"));
    assert_eq!(
        bits(loaded.gamma.unwrap().val()),
        bits(gn.gamma.unwrap().val())
    );
    assert_eq!(
        bits(loaded.beta.unwrap().val()),
        bits(gn.beta.unwrap().val())
    );

    // InstanceNorm with running statistics, after two training steps.
    let config = InstanceNormConfig::new(3)
        .with_affine(true)
        .with_track_running_stats(true);
    let ad = device.clone().autodiff();
    let mut norm = config.init(&ad);
    norm.gamma = randomize(&norm.gamma, 3, &ad);
    norm.beta = randomize(&norm.beta, 3, &ad);
    for _ in 0..2 {
        norm.forward(Tensor::<3>::random(
            [2, 3, 6],
            Distribution::Normal(1.0, 3.0),
            &ad,
        ));
    }
    norm.clone().save_file(dir.join("in")).expect("save");
    let loaded = config.init(device).load_file(dir.join("in"));
    let param = |p: &Option<Param<Tensor<1>>>| bits(p.as_ref().unwrap().val());
    assert_eq!(param(&loaded.gamma), param(&norm.gamma));
    assert_eq!(param(&loaded.beta), param(&norm.beta));
    assert_eq!(
        bits(loaded.running_mean().unwrap()),
        bits(norm.running_mean().unwrap())
    );
    assert_eq!(
        bits(loaded.running_var().unwrap()),
        bits(norm.running_var().unwrap())
    );
    // Not 0.1 * 0 + ...: the statistics moved away from their initial values.
    assert_ne!(values(loaded.running_var().unwrap()), vec![1.0; 3]);

    // Through the enum as well.
    let config: NormalizationConfig = RmsNormConfig::new(0).into();
    let wrapped = config.clone().with_num_features(5).init(device);
    let Normalization::Rms(mut inner) = wrapped else {
        panic!("an RmsNorm config builds an RmsNorm");
    };
    inner.gamma = randomize(&inner.gamma, 5, device);
    let wrapped = Normalization::Rms(inner);
    wrapped.clone().save_file(dir.join("enum")).expect("save");
    let loaded = config
        .with_num_features(5)
        .init(device)
        .load_file(dir.join("enum"));
    let (Normalization::Rms(a), Normalization::Rms(b)) = (loaded, wrapped) else {
        panic!("still RmsNorm");
    };
    assert_eq!(bits(a.gamma.unwrap().val()), bits(b.gamma.unwrap().val()));
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
    family_records_round_trip_bit_exact,
    loading_a_record_for_other_features_fails_clearly,
);
