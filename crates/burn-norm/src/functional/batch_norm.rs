//! Batch normalization: statistics per channel, over the batch and every
//! spatial axis.

use super::accumulation::widened;
use super::core::{affine, has_no_values, no_statistics, standardize, without_values};
use super::grouped::{GroupStatistics, normalize_groups};
use super::running::{ChannelMoments, RunningMoments};
use crate::backend::{Layout, RunningInput, RunningUpdate, Statistics};
use burn::tensor::Tensor;

/// The shape `[1, C, 1, ...]` that per-channel vectors broadcast to.
pub(super) fn channel_shape<const D: usize>(x: &Tensor<D>) -> [usize; D] {
    let mut shape = [1; D];
    shape[1] = x.dims()[1];
    shape
}

/// Batch normalization with given statistics (evaluation with running
/// statistics).
///
/// `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`, per channel.
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `mean`, `var`, `gamma`, `beta`: `[C]`
/// - output: `[N, C, ...]`
pub fn batch_norm<const D: usize>(
    x: Tensor<D>,
    mean: Tensor<1>,
    var: Tensor<1>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<D> {
    widened(x, [gamma, beta], |x, [gamma, beta]| {
        let shape = channel_shape(&x);
        let dtype = x.dtype();
        let mean = mean.cast(dtype).reshape(shape);
        let var = var.cast(dtype).reshape(shape);
        affine(standardize(x - mean, var, epsilon), gamma, beta, shape)
    })
}

/// The output of [`batch_norm_train`] and the statistics it normalized with.
#[derive(Debug, Clone)]
pub struct BatchStatistics<const D: usize> {
    /// The normalized input, `[N, C, ...]`.
    pub output: Tensor<D>,
    /// The batch mean per channel, `[C]`, detached.
    pub mean: Tensor<1>,
    /// The biased batch variance per channel, `[C]`, detached.
    pub variance: Tensor<1>,
    /// The number of values each channel's statistics were taken over
    /// (`N x spatial`).
    pub count: usize,
}

/// Batch normalization with the statistics of the batch itself (training).
///
/// `y = (x - mean_c) / sqrt(var_c + epsilon) * gamma + beta`, where `mean_c`
/// and the biased `var_c` are taken over every axis but the channel axis 1.
/// Gradients flow into `x`, `gamma` and `beta` through the statistics.
///
/// On backends with a fused kernel (see [`crate::backend`]) this is one
/// operation with a handwritten backward; elsewhere it is composed from
/// Burn's tensor operations. Both compute the same formula.
///
/// An input without values (`N = 0`, or a zero-size spatial axis) gives an
/// empty output (zero gradients for `gamma` and `beta`, as PyTorch), `count`
/// 0 and NaN statistics.
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `gamma`, `beta`: `[C]`
/// - output: `[N, C, ...]`; returned statistics: `[C]`
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> BatchStatistics<D> {
    let count = values_per_channel(&x);
    if has_no_values(&x) {
        let channels = x.dims()[1];
        return BatchStatistics {
            mean: no_statistics([channels], &x),
            variance: no_statistics([channels], &x),
            output: without_values(x.clone(), gamma, beta, channel_shape(&x)),
            count,
        };
    }
    let (output, stats) = normalize_channels(x, gamma, beta, epsilon, None);
    BatchStatistics {
        output,
        mean: stats.mean,
        variance: stats.var,
        count,
    }
}

/// `N x spatial` of an `[N, C, ...]` input.
fn values_per_channel<const D: usize>(x: &Tensor<D>) -> usize {
    let dims = x.dims();
    dims.iter().product::<usize>() / dims[1].max(1)
}

/// `x` (`[N, C, ...]`, with values) normalized per channel, and the
/// channels' statistics: the batch's, or with `running` the running
/// statistics updated with them.
fn normalize_channels<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    running: Option<RunningInput>,
) -> (Tensor<D>, GroupStatistics) {
    // The kernels take `[N, C, ...]` of any rank (see `Groups::of`): a
    // reshape is one operation more under fusion.
    let grouped = normalize_groups(
        x,
        gamma,
        beta,
        Layout::BATCH,
        epsilon,
        Statistics::Returned,
        running,
    );
    let stats = grouped.statistics();
    (grouped.output, stats)
}

/// What [`batch_norm_train_running`] returns.
#[derive(Debug, Clone)]
pub struct RunningBatch<const D: usize> {
    /// The normalized input, `[N, C, ...]`.
    pub output: Tensor<D>,
    /// The running statistics after this batch, `[C]`, detached, in the
    /// dtype of the running statistics given.
    pub running: RunningMoments,
}

/// [`batch_norm_train`] that also folds the batch into running statistics,
/// as PyTorch's `F.batch_norm(.., training=True)` does to the buffers it is
/// given: the output, and `running_mean` and `running_var` after
/// [`update_running_statistics`](super::update_running_statistics) with weight `factor` (the momentum, or
/// `1 / steps` for a cumulative average).
///
/// Where the backend has a fused kernel the update is part of the same
/// operation, which reads the old running statistics and writes the new
/// ones. Composed from tensor operations after it, the updates of a layer
/// called many times with nothing reading its statistics (forwards that
/// only recalibrate them) stay queued under Burn's fusion, each depending
/// on the one before, and past about 25 of them Burn 0.22.1 ran them
/// unfused, seven to nine launches a layer (docs/benchmarks.md,
/// twenty-first session).
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `gamma`, `beta`, `running_mean`, `running_var`:
///   `[C]`
/// - output: `[N, C, ...]`; running statistics `[C]`
///
/// # Panics
/// If the batch has fewer than 2 values per channel (no unbiased
/// variance; the layer returns an error instead).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn_norm::functional::batch_norm_train_running;
///
/// let device = Device::flex();
/// // One channel, values 1 and 3: mean 2, biased variance 1, unbiased 2.
/// let x = Tensor::<2>::from_floats([[1.0], [3.0]], &device);
/// let (mean, var) = (Tensor::zeros([1], &device), Tensor::ones([1], &device));
/// let batch = batch_norm_train_running(x, None, None, 0.0, mean, var, 0.5);
/// assert_eq!(batch.output.into_data().to_vec::<f32>().unwrap(), [-1.0, 1.0]);
/// // 0.5 * 0 + 0.5 * 2 = 1; 0.5 * 1 + 0.5 * 2 = 1.5.
/// assert_eq!(batch.running.mean.into_data().to_vec::<f32>().unwrap(), [1.0]);
/// assert_eq!(batch.running.var.into_data().to_vec::<f32>().unwrap(), [1.5]);
/// ```
pub fn batch_norm_train_running<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    running_mean: Tensor<1>,
    running_var: Tensor<1>,
    factor: f64,
) -> RunningBatch<D> {
    let count = values_per_channel(&x);
    assert!(
        count > 1,
        "batch_norm_train_running: need more than 1 value per channel, got {count}"
    );
    let running = RunningInput {
        mean: running_mean,
        var: running_var,
        update: RunningUpdate { factor, count },
    };
    let (output, stats) = normalize_channels(x, gamma, beta, epsilon, Some(running));
    RunningBatch {
        output,
        running: RunningMoments {
            mean: stats.mean,
            var: stats.var,
        },
    }
}

/// Ghost batch normalization ([Hoffer et al., 2017](https://arxiv.org/abs/1705.08741)):
/// [`batch_norm_train`] on each chunk of `virtual_batch_size` samples
/// separately, the outputs concatenated in order.
///
/// The returned statistics are what a running-statistics update takes, as
/// Keras' `BatchNormalization(virtual_batch_size=..)` computes them: the
/// chunks' means and biased variances averaged over the chunks, with
/// `count` the values of one chunk per channel (so the update's Bessel
/// correction is the chunk's). One update per step, not one per chunk.
///
/// # Shapes
/// - `x`: `[N, C, ...]` with `N` a multiple of `virtual_batch_size`
/// - output: `[N, C, ...]`; statistics `[C]`
///
/// # Panics
/// If `virtual_batch_size` is 0 or does not divide `N` (the layer checks
/// this first and returns an error instead).
pub fn ghost_batch_norm_train<const D: usize>(
    x: Tensor<D>,
    virtual_batch_size: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> BatchStatistics<D> {
    let n = x.dims()[0];
    if has_no_values(&x) {
        return batch_norm_train(x, gamma, beta, epsilon);
    }
    assert!(
        virtual_batch_size > 0 && n.is_multiple_of(virtual_batch_size),
        "ghost_batch_norm_train: the batch ({n}) must be a multiple of virtual_batch_size ({virtual_batch_size})"
    );
    let chunks: Vec<BatchStatistics<D>> = (0..n / virtual_batch_size)
        .map(|i| {
            batch_norm_train(
                x.clone()
                    .narrow(0, i * virtual_batch_size, virtual_batch_size),
                gamma.clone(),
                beta.clone(),
                epsilon,
            )
        })
        .collect();
    let k = chunks.len() as f64;
    let average = |f: fn(&BatchStatistics<D>) -> Tensor<1>| {
        chunks
            .iter()
            .map(f)
            .reduce(|a, b| a + b)
            .expect("at least one chunk")
            .div_scalar(k)
    };
    let mean = average(|c| c.mean.clone());
    let variance = average(|c| c.variance.clone());
    let count = chunks[0].count;
    BatchStatistics {
        output: Tensor::cat(chunks.into_iter().map(|c| c.output).collect(), 0),
        mean,
        variance,
        count,
    }
}

impl<const D: usize> BatchStatistics<D> {
    /// The statistics, for [`update_running_statistics`](super::update_running_statistics).
    pub fn moments(&self) -> ChannelMoments {
        ChannelMoments {
            mean: self.mean.clone(),
            variance: self.variance.clone(),
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::update_running_statistics;
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn running_statistics_use_the_unbiased_variance() {
        let device = Device::flex();
        // One channel, values 1 and 3: mean 2, biased var 1, unbiased var 2.
        let x = Tensor::<2>::from_data(TensorData::from([[1.0f32], [3.0]]), &device);
        let batch = batch_norm_train(x, None, None, 1e-5);
        assert_eq!(batch.count, 2);
        assert_eq!(values(batch.variance.clone()), [1.0]);
        let running = update_running_statistics(
            Tensor::zeros([1], &device),
            Tensor::ones([1], &device),
            &batch.moments(),
            0.5,
        );
        // 0.5 * 0 + 0.5 * 2 = 1; 0.5 * 1 + 0.5 * 2 = 1.5.
        assert_eq!(values(running.mean), [1.0]);
        assert_eq!(values(running.var), [1.5]);
    }
}
