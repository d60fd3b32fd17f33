//! Group and instance normalization: statistics per sample, over blocks of
//! channels and every spatial axis.

use super::batch_norm::RunningBatch;
use super::batch_norm::channel_shape;
use super::core::{has_no_values, no_statistics, without_values};
use super::grouped::{GroupOutput, normalize_groups};
use super::running::{ChannelMoments, RunningMoments};
use crate::backend::{Layout, RunningInput, RunningUpdate, Statistics};
use burn::tensor::Tensor;

/// Group normalization ([Wu & He, 2018](https://arxiv.org/abs/1803.08494)),
/// as PyTorch's `group_norm(x, num_groups, weight, bias, eps)`:
///
/// `y = (x - mean) / sqrt(var + epsilon) * gamma_c + beta_c`
///
/// where `mean` and the biased `var` are taken per sample over each block
/// of `C / num_groups` consecutive channels and all their spatial values,
/// and `gamma`, `beta` are per channel. An input without values (an empty
/// batch) gives an empty output, as PyTorch.
///
/// # Shapes
/// - `x`: `[N, C, ...]`, `C` a multiple of `num_groups`
/// - `gamma`, `beta`: `[C]`
/// - output: the shape of `x`
///
/// # Panics
/// If `x` has rank < 2 or `num_groups` does not divide `C` (the layers check
/// this first and return an error instead).
pub fn group_norm<const D: usize>(
    x: Tensor<D>,
    num_groups: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<D> {
    if has_no_values(&x) {
        return without_values(x.clone(), gamma, beta, channel_shape(&x));
    }
    grouped(
        x,
        num_groups,
        gamma,
        beta,
        epsilon,
        Statistics::Discarded,
        None,
    )
    .output
}

/// The output of [`instance_norm_train`] and the statistics it normalized
/// with.
#[derive(Debug, Clone)]
pub struct InstanceStatistics<const D: usize> {
    /// The normalized input, `[N, C, ...]`.
    pub output: Tensor<D>,
    /// Each instance's mean, `[N, C]`, detached.
    pub mean: Tensor<2>,
    /// Each instance's biased variance, `[N, C]`, detached.
    pub variance: Tensor<2>,
    /// Values per instance (the spatial size).
    pub count: usize,
}

impl<const D: usize> InstanceStatistics<D> {
    /// The per-channel statistics PyTorch's running update takes: each
    /// instance's statistics averaged over the samples.
    pub fn moments(&self) -> ChannelMoments {
        let [_, c] = self.mean.dims();
        ChannelMoments {
            mean: self.mean.clone().mean_dim(0).reshape([c]),
            variance: self.variance.clone().mean_dim(0).reshape([c]),
            count: self.count,
        }
    }
}

/// Instance normalization ([Ulyanov et al.,
/// 2016](https://arxiv.org/abs/1607.08022)) with each instance's own
/// statistics, as PyTorch's `instance_norm` in training:
///
/// `y = (x - mean_nc) / sqrt(var_nc + epsilon) * gamma_c + beta_c`
///
/// over the spatial values of each channel of each sample: [`group_norm`]
/// with one channel per group. An input without values gives an empty
/// output and NaN statistics.
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `gamma`, `beta`: `[C]`
/// - output: `[N, C, ...]`; statistics `[N, C]`
pub fn instance_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> InstanceStatistics<D> {
    let dims = x.dims();
    let [n, c] = [dims[0], dims[1]];
    let count = dims[2..].iter().product();
    if has_no_values(&x) {
        return InstanceStatistics {
            mean: no_statistics([n, c], &x),
            variance: no_statistics([n, c], &x),
            output: without_values(x.clone(), gamma, beta, channel_shape(&x)),
            count,
        };
    }
    let out = grouped(x, c, gamma, beta, epsilon, Statistics::Returned, None);
    let stats = out.statistics();
    InstanceStatistics {
        output: out.output,
        mean: stats.mean.reshape([n, c]),
        variance: stats.var.reshape([n, c]),
        count,
    }
}

/// [`instance_norm_train`] that also folds the batch into running
/// statistics, as PyTorch's `instance_norm` does to the buffers it is
/// given: each instance blends its channel's running statistics with its
/// own ([`update_running_statistics`](super::update_running_statistics),
/// weight `factor`, Bessel's correction over its spatial values), and the
/// new running statistics are those blends averaged over the samples. The
/// blends come from the normalizing operation itself where the backend has
/// a fused kernel ([`batch_norm_train_running`](super::batch_norm_train_running)
/// says why).
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `gamma`, `beta`, `running_mean`, `running_var`:
///   `[C]`
/// - output: `[N, C, ...]`; running statistics `[C]`
///
/// # Panics
/// If the batch has no values or one spatial value (no unbiased variance;
/// the layer returns an error or skips the update instead).
pub fn instance_norm_train_running<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    running_mean: Tensor<1>,
    running_var: Tensor<1>,
    factor: f64,
) -> RunningBatch<D> {
    let dims = x.dims();
    let [n, c] = [dims[0], dims[1]];
    let count = dims[2..].iter().product();
    assert!(
        count > 1 && n > 0,
        "instance_norm_train_running: need samples with more than 1 value per channel, got {dims:?}"
    );
    let running = RunningInput {
        mean: running_mean,
        var: running_var,
        update: RunningUpdate { factor, count },
    };
    let out = grouped(
        x,
        c,
        gamma,
        beta,
        epsilon,
        Statistics::Returned,
        Some(running),
    );
    let blends = out.statistics();
    let average = |t: Tensor<1>| t.reshape([n, c]).mean_dim(0).reshape([c]);
    RunningBatch {
        output: out.output,
        running: RunningMoments {
            mean: average(blends.mean),
            var: average(blends.var),
        },
    }
}

/// `x`, `[N, C, ...]`, normalized per sample and group of `C / num_groups`
/// channels.
fn grouped<const D: usize>(
    x: Tensor<D>,
    num_groups: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    statistics: Statistics,
    running: Option<RunningInput>,
) -> GroupOutput<D> {
    let dims = x.dims();
    assert!(
        D >= 2 && num_groups > 0 && dims[1].is_multiple_of(num_groups),
        "group_norm: expected [N, C, ...] with C a multiple of num_groups = {num_groups}, got {dims:?}"
    );
    normalize_groups(
        x,
        gamma,
        beta,
        Layout::group(dims[1] / num_groups),
        epsilon,
        statistics,
        running,
    )
}
