//! PyTorch's running-statistics update, shared by BatchNorm and
//! InstanceNorm.

use crate::backend::RunningUpdate;
use burn::tensor::Tensor;

/// Per-channel statistics of one training batch, as the running update
/// takes them.
#[derive(Debug, Clone)]
pub struct ChannelMoments {
    /// The mean per channel, `[C]`.
    pub mean: Tensor<1>,
    /// The biased variance per channel, `[C]` (for InstanceNorm, the mean
    /// over the samples of each instance's biased variance).
    pub variance: Tensor<1>,
    /// The number of values each variance was taken over (BatchNorm:
    /// `N x spatial`; InstanceNorm: `spatial`).
    pub count: usize,
}

/// Running statistics after an update.
#[derive(Debug, Clone)]
pub struct RunningMoments {
    /// The new running mean, `[C]`.
    pub mean: Tensor<1>,
    /// The new running (unbiased) variance, `[C]`.
    pub var: Tensor<1>,
}

/// PyTorch's running-statistics update after one training batch:
///
/// `running_mean = (1 - f) * running_mean + f * mean`
/// `running_var  = (1 - f) * running_var  + f * var * n / (n - 1)`
///
/// The running variance takes the *unbiased* batch variance (Bessel's
/// correction over the `n = count` values per channel), while the batch is
/// normalized with the biased one. `factor` is the momentum, or `1 / steps`
/// for BatchNorm's cumulative average.
///
/// # Panics
/// If `batch.count < 2`: one value has no unbiased variance.
pub fn update_running_statistics(
    running_mean: Tensor<1>,
    running_var: Tensor<1>,
    batch: &ChannelMoments,
    factor: f64,
) -> RunningMoments {
    assert!(
        batch.count > 1,
        "update_running_statistics: need more than 1 value per channel, got {}",
        batch.count
    );
    let correction = RunningUpdate {
        factor,
        count: batch.count,
    }
    .correction();
    let unbiased = batch.variance.clone().mul_scalar(correction);
    RunningMoments {
        mean: running_mean.mul_scalar(1.0 - factor) + batch.mean.clone().mul_scalar(factor),
        var: running_var.mul_scalar(1.0 - factor) + unbiased.mul_scalar(factor),
    }
}
