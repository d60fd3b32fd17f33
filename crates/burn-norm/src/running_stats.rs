//! The running statistics of BatchNorm and InstanceNorm: their buffers,
//! initial values and PyTorch update, in one place.
//!
//! The buffers stay fields of each layer (`running_mean`, `running_var`,
//! `num_batches_tracked`) rather than a nested module, so that record keys
//! are PyTorch's and burn-nn's (`bn.running_mean`, not
//! `bn.stats.running_mean`).

use crate::RunningCounter;
use crate::functional::{self, ChannelMoments, RunningMoments};
use burn::module::{Module, ModuleMapper, Param, RunningState};
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
    let factor = next_factor(counter, momentum);
    if batch.count == 0 {
        return;
    }
    update(mean, var, batch, factor);
}

/// Advances the counter of a training step and returns the step's weight:
/// `momentum`, or `1 / steps` (the cumulative average) where it is `None`.
pub(crate) fn next_factor(counter: &RunningCounter, momentum: Option<f64>) -> f64 {
    let steps = counter.increment();
    momentum.unwrap_or(1.0 / steps as f64)
}

/// The running statistics as an operation that updates them takes them:
/// on `device`, in their own dtype.
pub(crate) fn current(
    mean: &RunningState<Tensor<1>>,
    var: &RunningState<Tensor<1>>,
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    (
        mean.value_sync().to_device(device),
        var.value_sync().to_device(device),
    )
}

/// A training forward whose operation also updates the running statistics
/// (`functional::batch_norm_train_running`,
/// `functional::instance_norm_train_running`): `train` gets the current
/// running mean and variance on `device` and returns the output and the
/// new values, which are [`publish`]ed.
pub(crate) fn train_updating<const D: usize>(
    mean: &RunningState<Tensor<1>>,
    var: &RunningState<Tensor<1>>,
    device: &Device,
    train: impl FnOnce(Tensor<1>, Tensor<1>) -> functional::RunningBatch<D>,
) -> Tensor<D> {
    let (running_mean, running_var) = current(mean, var, device);
    let batch = train(running_mean, running_var);
    publish(mean, var, batch.running);
    batch.output
}

/// Folds one batch's statistics into `mean` and `var` with weight `factor`
/// ([`functional::update_running_statistics`]), and [`publish`]es the
/// result.
pub(crate) fn update(
    mean: &RunningState<Tensor<1>>,
    var: &RunningState<Tensor<1>>,
    batch: &ChannelMoments,
    factor: f64,
) {
    let (running_mean, running_var) = current(mean, var, &batch.mean.device());
    // The buffers keep their dtype (f32 for a model in f32) whatever the
    // input's was: an f16 or f64 batch's statistics are cast to it.
    let dtype = running_mean.dtype();
    let batch = ChannelMoments {
        mean: batch.mean.clone().cast(dtype),
        variance: batch.variance.clone().cast(dtype),
        count: batch.count,
    };
    let running = functional::update_running_statistics(running_mean, running_var, &batch, factor);
    publish(mean, var, running);
}

/// Stores a step's new running statistics as the buffers' values, at once,
/// so that a record taken right after training holds this step.
///
/// Not through `RunningState::update`: that keeps the value pending per
/// thread until a sync, and the sync divides it by the number of threads
/// that updated (`div_scalar(1)` on one thread), two tensor operations a
/// step. Between two of our operations that read and write the buffers
/// (BatchNorm's running update in its kernel), Burn's fusion ran each as a
/// launch of its own: two launches a layer on lavapipe where the kernel is
/// one (docs/benchmarks.md, twenty-first session). The value is set
/// through `Module::map`, which replaces it in the state that the layer's
/// clones share. Every update of our layers' buffers goes through here, so
/// none is ever pending; as before (an update synced at once), the last
/// thread to write a shared buffer sets it.
pub(crate) fn publish(
    mean: &RunningState<Tensor<1>>,
    var: &RunningState<Tensor<1>>,
    running: RunningMoments,
) {
    set(mean, running.mean.detach());
    set(var, running.var.detach());
}

/// Replaces `state`'s value by `value`.
fn set(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    /// A mapper that gives the one buffer it visits `value`.
    struct Replace(Option<Tensor<1>>);
    impl ModuleMapper for Replace {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let value = self.0.take().expect("a running state holds one tensor");
            Param::initialized(param.id, Tensor::from_dispatch(value.into_dispatch()))
        }
    }
    // `map` consumes a clone and writes the state the clones share.
    let _ = state.clone().map(&mut Replace(Some(value)));
}
