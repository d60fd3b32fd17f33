//! A first look at burn-norm: one small model, any backend.
//!
//! ```sh
//! cargo run --release --example demo                   # flex (CPU), the default
//! cargo run --release --example demo -- --device ndarray
//! cargo run --release --example demo -- --device wgpu  # GPU, or lavapipe on CPU
//! ```
//!
//! Trains a conv -> BatchNorm -> ReLU -> linear -> LayerNorm -> linear network on
//! a synthetic task, prints the loss and the BatchNorm running statistics,
//! saves the model, reloads it and checks that evaluation is unchanged.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use burn_norm::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig};
use std::time::Instant;

#[path = "common/device.rs"]
mod device;

#[derive(Module, Debug)]
struct Net {
    conv: Conv2d,
    bn: BatchNorm,
    hidden: Linear,
    ln: LayerNorm,
    head: Linear,
    relu: Relu,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([3, 16], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            bn: BatchNormConfig::new(16).init(device),
            hidden: LinearConfig::new(16 * 8 * 8, 64).init(device),
            ln: LayerNormConfig::new(64).init(device),
            head: LinearConfig::new(64, 1).init(device),
            relu: Relu::new(),
        }
    }

    /// `[N, 3, 8, 8]` -> `[N, 1]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn.forward(self.conv.forward(x)));
        let x = self
            .relu
            .forward(self.ln.forward(self.hidden.forward(x.flatten(1, 3))));
        self.head.forward(x)
    }
}

fn device_from_args() -> Result<Device, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => device::device_named("flex"),
        [flag, name] if flag == "--device" => device::device_named(name),
        _ => Err("usage: demo [--device flex|ndarray|wgpu]".into()),
    }
}

fn main() {
    let device = device_from_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let train_device = device.clone().autodiff();
    train_device.seed(0);

    // Target: the mean of the input's first channel, squared — any smooth
    // function of the pixels would do.
    let x = Tensor::<4>::random([32, 3, 8, 8], Distribution::Normal(2.0, 3.0), &train_device);
    let y = x
        .clone()
        .narrow(1, 0, 1)
        .mean_dims(&[2, 3])
        .flatten::<2>(1, 3)
        .square();

    let mut model = Net::new(&train_device);
    let mut optim = AdamConfig::new().init();
    let start = Instant::now();
    for step in 1..=100 {
        let loss = MseLoss::new().forward(model.forward(x.clone()), y.clone(), Reduction::Mean);
        if step % 20 == 0 || step == 1 {
            println!(
                "step {step:>3}  loss {:.5}",
                loss.clone().into_scalar::<f32>()
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    println!("trained 100 steps in {:.2?}", start.elapsed());
    println!(
        "BatchNorm after {:?} batches:",
        model.bn.num_batches_tracked()
    );
    println!(
        "  running_mean[..4] = {:?}",
        &head(model.bn.running_mean().unwrap())
    );
    println!(
        "  running_var[..4]  = {:?}",
        &head(model.bn.running_var().unwrap())
    );

    // Evaluation uses the running statistics; a saved record reproduces it.
    let eval = model.valid();
    let x_eval = x.inner();
    let before = eval.forward(x_eval.clone());
    let path = std::env::temp_dir().join("burn-norm-demo");
    eval.clone().save_file(&path).expect("save the model");
    let loaded = Net::new(&device).load_file(&path);
    let after = loaded.forward(x_eval);
    let same = before.to_data() == after.to_data();
    println!(
        "saved to {}; reloaded evaluation identical: {same}",
        path.display()
    );
    assert!(same, "a reloaded model must evaluate identically");
}

fn head(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[..4].to_vec()
}
