//! Folding an evaluated [`BatchNorm`] into the layer before it, for
//! inference: one layer fewer, the same outputs.
//!
//! With running statistics `mean`, `var`, the evaluated BatchNorm is an
//! affine map per channel, `y = x * s + t` with
//! `s = gamma / sqrt(var + epsilon)` and `t = beta - mean * s`; a layer
//! `x = W u + b` before it becomes `y = (s W) u + (s b + t)`.

use crate::BatchNorm;
use crate::error::NormError;
use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// The per-channel scale `s` and shift `t` of an evaluated BatchNorm.
struct ChannelAffine {
    scale: Tensor<1>,
    shift: Tensor<1>,
}

/// `s` and `t` of `bn`, checked against `channels` output channels of
/// `target`.
fn channel_affine(
    bn: &BatchNorm,
    channels: usize,
    target: &str,
) -> Result<ChannelAffine, NormError> {
    let fail = |reason: String| NormError::Fold {
        target: target.to_string(),
        reason,
    };
    if bn.training.is_enabled() {
        return Err(fail(
            "the BatchNorm is in training mode (its output would use batch statistics): call .valid() first".into(),
        ));
    }
    let (Some(mean), Some(var)) = (bn.running_mean(), bn.running_var()) else {
        return Err(fail(
            "the BatchNorm has no running statistics (track_running_stats = false): it always normalizes with batch statistics".into(),
        ));
    };
    if bn.num_features() != channels {
        return Err(fail(format!(
            "the BatchNorm has {} channels, the layer outputs {channels}",
            bn.num_features()
        )));
    }
    let device = mean.device();
    // As the forward computes it: `(x - mean) * (1 / sqrt(var + eps)) * gamma + beta`.
    let rstd = var.add_scalar(bn.epsilon).sqrt().recip();
    let scale = match &bn.gamma {
        Some(gamma) => rstd * gamma.val().to_device(&device),
        None => rstd,
    };
    let shift = match &bn.beta {
        Some(beta) => beta.val().to_device(&device) - mean * scale.clone(),
        None => -(mean * scale.clone()),
    };
    Ok(ChannelAffine { scale, shift })
}

/// Folds an evaluated [`BatchNorm`] into the layer that feeds it.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::conv::Conv2dConfig;
/// use burn::tensor::{Device, Distribution, Tensor};
/// use burn_norm::{BatchNormConfig, FoldBatchNorm};
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([3, 8], [3, 3]).init(&device);
/// let bn = BatchNormConfig::new(8).init(&device).valid();
/// let x = Tensor::<4>::random([2, 3, 9, 9], Distribution::Default, &device);
/// let before = bn.forward(conv.forward(x.clone()));
/// let folded = conv.fold_batch_norm(&bn).unwrap();
/// before.into_data().assert_approx_eq::<f32>(&folded.forward(x).into_data(), Default::default());
/// ```
pub trait FoldBatchNorm: Sized {
    /// The layer followed by `bn`, as one layer: the same outputs (up to
    /// rounding) in evaluation.
    ///
    /// # Errors
    /// If `bn` is in training mode (not [`valid()`](burn::module::Module::valid)),
    /// has no running statistics, or has another number of channels than
    /// the layer's outputs.
    fn fold_batch_norm(self, bn: &BatchNorm) -> Result<Self, NormError>;
}

impl FoldBatchNorm for Conv2d {
    /// Scales each output channel's kernel; a convolution without bias
    /// gains one.
    fn fold_batch_norm(self, bn: &BatchNorm) -> Result<Self, NormError> {
        let [out, _, _, _] = self.weight.dims();
        let ChannelAffine { scale, shift } = channel_affine(bn, out, "Conv2d")?;
        let per_channel = scale.clone().reshape([out, 1, 1, 1]);
        Ok(Conv2d {
            weight: self.weight.map(|w| w * per_channel),
            bias: Some(fold_bias(self.bias, scale, shift)),
            ..self
        })
    }
}

impl FoldBatchNorm for Linear {
    /// Scales each output feature's weights (the weight is `[d_input,
    /// d_output]` in memory whatever the layout its records use; the
    /// parameter keeps its record mappers); a linear layer without bias
    /// gains one.
    fn fold_batch_norm(self, bn: &BatchNorm) -> Result<Self, NormError> {
        let [_, out] = self.weight.dims();
        let ChannelAffine { scale, shift } = channel_affine(bn, out, "Linear")?;
        let per_feature = scale.clone().reshape([1, out]);
        Ok(Linear {
            weight: self.weight.map(|w| w * per_feature),
            bias: Some(fold_bias(self.bias, scale, shift)),
        })
    }
}

/// `b * s + t`, or `t` for a layer without bias.
fn fold_bias(
    bias: Option<Param<Tensor<1>>>,
    scale: Tensor<1>,
    shift: Tensor<1>,
) -> Param<Tensor<1>> {
    match bias {
        Some(b) => b.map(|b| b * scale + shift),
        None => Param::from_tensor(shift),
    }
}
