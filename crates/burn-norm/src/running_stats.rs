//! The running statistics of BatchNorm and InstanceNorm: their buffers,
//! initial values and PyTorch update, in one place.
//!
//! The buffers stay fields of each layer (`running_mean`, `running_var`,
//! `num_batches_tracked`) rather than a nested module, so that record keys
//! are PyTorch's and burn-nn's (`bn.running_mean`, not
//! `bn.stats.running_mean`).

use crate::RunningCounter;
use crate::functional::{self, ChannelMoments};
use burn::module::RunningState;
use burn::tensor::{Device, Tensor};

/// A layer's running-statistics buffers; all `None` without
/// `track_running_stats`.
pub(crate) struct RunningBuffers {
    pub mean: Option<RunningState<Tensor<1>>>,
    pub var: Option<RunningState<Tensor<1>>>,
    pub counter: Option<RunningCounter>,
}

impl RunningBuffers {
    /// `running_mean = 0`, `running_var = 1`, `num_batches_tracked = 0`
    /// for `channels` channels, as PyTorch.
    pub fn new(channels: usize, track: bool, device: &Device) -> Self {
        let state = |value: Tensor<1>| track.then(|| RunningState::new(value));
        RunningBuffers {
            mean: state(Tensor::zeros([channels], device)),
            var: state(Tensor::ones([channels], device)),
            counter: track.then(|| RunningCounter::new(device)),
        }
    }
}

/// One training step of BatchNorm's running statistics, as PyTorch: the
/// counter advances, then the batch is folded in with `momentum`, or with
/// `1 / steps` (the cumulative average) where it is `None`. A batch without
/// values (`count` 0: an empty batch) advances the counter only, as
/// PyTorch's BatchNorm does, rather than fold in the NaN of `0 / 0`.
pub(crate) fn step(
    mean: &RunningState<Tensor<1>>,
    var: &RunningState<Tensor<1>>,
    counter: &RunningCounter,
    batch: &ChannelMoments,
    momentum: Option<f64>,
) {
    let steps = counter.increment();
    if batch.count == 0 {
        return;
    }
    update(mean, var, batch, momentum.unwrap_or(1.0 / steps as f64));
}

/// Folds one batch's statistics into `mean` and `var` with weight `factor`
/// ([`functional::update_running_statistics`]), and publishes the result at
/// once so that a record taken right after training holds this step
/// (`RunningState` keeps an update pending until it is synced, and records
/// read the synced value).
pub(crate) fn update(
    mean: &RunningState<Tensor<1>>,
    var: &RunningState<Tensor<1>>,
    batch: &ChannelMoments,
    factor: f64,
) {
    let device = batch.mean.device();
    let (running_mean, running_var) = (
        mean.value_sync().to_device(&device),
        var.value_sync().to_device(&device),
    );
    // The buffers keep their dtype (f32 for a model in f32) whatever the
    // input's was: an f16 or f64 batch's statistics are cast to it.
    let dtype = running_mean.dtype();
    let batch = ChannelMoments {
        mean: batch.mean.clone().cast(dtype),
        variance: batch.variance.clone().cast(dtype),
        count: batch.count,
    };
    let running = functional::update_running_statistics(running_mean, running_var, &batch, factor);
    mean.update(running.mean.detach());
    var.update(running.var.detach());
    mean.value_sync();
    var.value_sync();
}
