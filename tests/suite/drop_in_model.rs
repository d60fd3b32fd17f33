// A small Burn model written against `burn::nn`'s normalization layers.
// `drop_in.rs` includes this file twice: once after a
// `use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, ...};` line and once
// after the same line with `burn_norm` in place of `burn::nn`. Nothing else
// differs. (InstanceNorm's `affine` is set because its defaults differ:
// PyTorch's `false`, which burn-norm follows, against burn-nn's `true`.)

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct Net {
    conv: Conv2d,
    bn: BatchNorm,
    gn: GroupNorm,
    instance: InstanceNorm,
    relu: Relu,
    hidden: Linear,
    ln: LayerNorm,
    rms: RmsNorm,
    chosen: Normalization,
    head: Linear,
}

/// Deterministic weights of `shape`, in `[-scale, scale]`: not the device's
/// random generator, which other tests running in parallel on the same
/// device draw from between a seed and an initialization.
fn fixed<const D: usize>(shape: [usize; D], seed: f32, scale: f32, device: &Device) -> Param<Tensor<D>> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i as f32 + 1.0) * seed).sin() * scale).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), device))
}

impl Net {
    pub fn new(device: &Device) -> Self {
        let mut net = Self::layers(device);
        net.conv.weight = fixed([4, 1, 3, 3], 0.37, 0.5, device);
        net.conv.bias = Some(fixed([4], 0.59, 0.1, device));
        net.hidden.weight = fixed([64, 16], 0.73, 0.125, device);
        net.hidden.bias = Some(fixed([16], 0.97, 0.1, device));
        net.head.weight = fixed([16, 2], 1.31, 0.25, device);
        net.head.bias = Some(fixed([2], 2.11, 0.1, device));
        net
    }

    fn layers(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([1, 4], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            bn: BatchNormConfig::new(4).init(device),
            gn: GroupNormConfig::new(2, 4).init(device),
            instance: InstanceNormConfig::new(4).with_affine(true).init(device),
            relu: Relu::new(),
            hidden: LinearConfig::new(4 * 4 * 4, 16).init(device),
            ln: LayerNormConfig::new(16).init(device),
            rms: RmsNormConfig::new(16).with_epsilon(1e-5).init(device),
            chosen: NormalizationConfig::from(LayerNormConfig::new(0))
                .with_num_features(16)
                .init(device),
            head: LinearConfig::new(16, 2).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn.forward(self.conv.forward(x)));
        let x = self.instance.forward(self.gn.forward(x));
        let x = self.hidden.forward(x.flatten(1, 3));
        let x = self.chosen.forward(self.rms.forward(self.ln.forward(x)));
        self.head.forward(self.relu.forward(x))
    }
}

/// Trains `Net` for `steps` Adam steps on a fixed synthetic regression task and
/// returns the loss before each step.
pub fn train(device: &Device, steps: usize) -> Vec<f32> {
    let mut model = Net::new(device);
    let mut optim = AdamConfig::new().init();
    let n = 16;
    let x: Vec<f32> = (0..n * 16).map(|i| ((i as f32) * 0.731).sin() * 2.0 + 0.5).collect();
    let y: Vec<f32> = (0..n * 2).map(|i| ((i as f32) * 1.37).cos()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [n, 1, 4, 4]), device);
    let y = Tensor::<2>::from_data(TensorData::new(y, [n, 2]), device);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = MseLoss::new().forward(model.forward(x.clone()), y.clone(), Reduction::Mean);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    // Evaluation mode must run too (running statistics on a plain device).
    let _ = model.valid().forward(x.inner());
    losses
}
