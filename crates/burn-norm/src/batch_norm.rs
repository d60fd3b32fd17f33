//! The [`BatchNorm`] module: state and configuration over
//! [`functional::batch_norm`](crate::functional::batch_norm) and
//! [`functional::batch_norm_train`](crate::functional::batch_norm_train).

use crate::RunningCounter;
use crate::error::{
    NormError, check_channel_input, check_device, check_epsilon, check_features, check_momentum,
};
use crate::functional;
use crate::running_stats::{self, RunningBuffers};
use crate::sync::SyncReplica;
use burn::config::Config;
use burn::module::{
    Content, DisplaySettings, Flag, Initializer, Module, ModuleDisplay, Param, RunningState,
};
use burn::tensor::{Device, Tensor};

const LAYER: &str = "BatchNorm";

/// Configuration of a [`BatchNorm`] layer, with PyTorch's knobs and defaults.
///
/// ```
/// use burn_norm::BatchNormConfig;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let bn = BatchNormConfig::new(3).with_momentum(None).init(&device);
/// let y = bn.forward(Tensor::<4>::ones([2, 3, 4, 4], &device));
/// assert_eq!(y.dims(), [2, 3, 4, 4]);
/// ```
#[derive(Config, Debug)]
pub struct BatchNormConfig {
    /// The number of channels `C` of an input `[N, C, ...]`. Must be > 0.
    pub num_features: usize,
    /// Added to the variance before the square root. Finite and > 0.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// The weight of the current batch in the running statistics, in `[0, 1]`;
    /// `None` takes the cumulative average of all batches, as PyTorch.
    #[config(default = "Some(0.1)")]
    pub momentum: Option<f64>,
    /// Whether the layer has a learnable per-channel scale `gamma` and shift
    /// `beta`.
    #[config(default = true)]
    pub affine: bool,
    /// Whether the layer keeps running statistics for evaluation. Without
    /// them it has no buffers and normalizes with batch statistics in every
    /// mode, as PyTorch.
    #[config(default = true)]
    pub track_running_stats: bool,
    /// Ghost batch normalization (Hoffer et al., 2017; Keras'
    /// `virtual_batch_size`): in training, normalize each chunk of this
    /// many samples with its own statistics; the running statistics take
    /// the chunks' averaged mean and variance, once per step. `None` (the
    /// default, PyTorch's behaviour) uses the whole batch. The training
    /// batch must be a multiple of it.
    #[config(default = "None")]
    pub virtual_batch_size: Option<usize>,
}

impl BatchNormConfig {
    /// Checks every field, returning the first invalid one.
    pub fn validate(&self) -> Result<(), NormError> {
        check_features(LAYER, "num_features", self.num_features)?;
        check_epsilon(LAYER, self.epsilon)?;
        if self.virtual_batch_size == Some(0) {
            return Err(NormError::InvalidConfig {
                layer: LAYER,
                field: "virtual_batch_size",
                expected: "None or > 0",
                got: "Some(0)".into(),
            });
        }
        check_momentum(LAYER, self.momentum)
    }

    /// Builds the layer: `gamma = 1`, `beta = 0`, `running_mean = 0`,
    /// `running_var = 1`, `num_batches_tracked = 0`, as PyTorch.
    pub fn try_init(&self, device: &Device) -> Result<BatchNorm, NormError> {
        self.validate()?;
        let c = self.num_features;
        let param = |init: Initializer| self.affine.then(|| init.init([c], device));
        let running = RunningBuffers::new(c, self.track_running_stats, device);
        Ok(BatchNorm {
            gamma: param(Initializer::Ones),
            beta: param(Initializer::Zeros),
            running_mean: running.mean,
            running_var: running.var,
            num_batches_tracked: running.counter,
            training: Param::from_bool(true),
            momentum: self.momentum,
            epsilon: self.epsilon,
            virtual_batch_size: self.virtual_batch_size,
            num_features: c,
            sync: None,
        })
    }

    /// Builds the layer, see [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> BatchNorm {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Batch normalization ([Ioffe & Szegedy, 2015](https://arxiv.org/abs/1502.03167))
/// over `[N, C]`, `[N, C, L]`, `[N, C, H, W]` or `[N, C, D, H, W]` inputs:
/// PyTorch's `BatchNorm1d/2d/3d` in one layer.
///
/// `y = (x - mean_c) / sqrt(var_c + epsilon) * gamma_c + beta_c`
///
/// - Training (an autodiff device and the layer's training flag on, Burn's
///   rule): `mean_c` and the *biased* `var_c` of the batch, over every axis but
///   `C`. The running statistics are then updated with the *unbiased* batch
///   variance, and `num_batches_tracked` counts the step, as PyTorch.
/// - Evaluation ([`valid()`](Module::valid), the flag off, or a plain device):
///   the running statistics.
/// - Without running statistics (`track_running_stats = false`): batch
///   statistics in every mode.
///
/// Build it with [`BatchNormConfig`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct BatchNorm {
    /// The learnable scale `gamma`, `[C]`; `None` when `affine = false`.
    pub gamma: Option<Param<Tensor<1>>>,
    /// The learnable shift `beta`, `[C]`; `None` when `affine = false`.
    pub beta: Option<Param<Tensor<1>>>,
    running_mean: Option<RunningState<Tensor<1>>>,
    running_var: Option<RunningState<Tensor<1>>>,
    num_batches_tracked: Option<RunningCounter>,
    /// Whether training behavior is enabled for this layer.
    pub training: Param<Flag>,
    /// See [`BatchNormConfig::momentum`].
    pub momentum: Option<f64>,
    /// See [`BatchNormConfig::epsilon`].
    pub epsilon: f64,
    /// See [`BatchNormConfig::virtual_batch_size`].
    pub virtual_batch_size: Option<usize>,
    num_features: usize,
    /// This replica's handle when the statistics are synchronized across
    /// data-parallel replicas ([`synchronized`](Self::synchronized)); not
    /// part of the record.
    #[module(skip)]
    sync: Option<SyncReplica>,
}

impl BatchNorm {
    /// The running mean, `[C]`; `None` without running statistics.
    pub fn running_mean(&self) -> Option<Tensor<1>> {
        self.running_mean.as_ref().map(RunningState::value_sync)
    }

    /// The running (unbiased) variance, `[C]`; `None` without running
    /// statistics.
    pub fn running_var(&self) -> Option<Tensor<1>> {
        self.running_var.as_ref().map(RunningState::value_sync)
    }

    /// The number of training batches seen; `None` without running statistics.
    pub fn num_batches_tracked(&self) -> Option<u64> {
        self.num_batches_tracked.as_ref().map(RunningCounter::get)
    }

    /// The number of channels `C`.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// This layer as one replica of a synchronized BatchNorm (PyTorch's
    /// `SyncBatchNorm`): in training, each replica's slice of the batch is
    /// normalized with the statistics of the whole batch, summed across the
    /// replicas through `replica`, and the backward sums the gradient's two
    /// per-channel sums the same way. Evaluation is unchanged (running
    /// statistics), and the running statistics are the whole batch's, the
    /// same on every replica. See [`crate::sync`] and
    /// [`functional::batch_norm_train_synced`].
    ///
    /// ```
    /// use burn_norm::{BatchNormConfig, sync::ThreadCombiner};
    /// use burn::tensor::{Device, Tensor};
    ///
    /// let device = Device::flex().autodiff();
    /// // Two replicas on two threads, each with its own copy of the layer
    /// // (as each device holds its own model) and half of the batch.
    /// let replicas = ThreadCombiner::group(2);
    /// let outputs: Vec<Vec<f32>> = std::thread::scope(|s| {
    ///     let runs: Vec<_> = replicas
    ///         .into_iter()
    ///         .enumerate()
    ///         .map(|(rank, replica)| {
    ///             let device = device.clone();
    ///             s.spawn(move || {
    ///                 let bn = BatchNormConfig::new(2).init(&device).synchronized(replica);
    ///                 let x = Tensor::<2>::from_floats([[rank as f32, 10.0 * rank as f32]], &device);
    ///                 bn.forward(x).into_data().to_vec::<f32>().unwrap()
    ///             })
    ///         })
    ///         .collect();
    ///     runs.into_iter().map(|r| r.join().unwrap()).collect()
    /// });
    /// // The batch [[0, 0], [1, 10]] normalized as one: -1 and +1 per channel.
    /// assert!((outputs[0][0] + 1.0).abs() < 1e-3 && (outputs[1][1] - 1.0).abs() < 1e-3);
    /// ```
    ///
    /// Each replica needs its own copy of the layer: Burn's `Module::clone`
    /// shares the running-statistics buffers between the clones.
    pub fn synchronized(mut self, replica: SyncReplica) -> Self {
        self.sync = Some(replica);
        self
    }

    /// The replica handle of a [`synchronized`](Self::synchronized) layer.
    pub fn sync_replica(&self) -> Option<&SyncReplica> {
        self.sync.as_ref()
    }

    /// Normalizes `input`, see [`BatchNorm`] for the formula and the modes.
    ///
    /// # Shapes
    /// - `input`: `[N, C, ...]`, rank 2 to 5
    /// - output: the shape of `input`
    ///
    /// An input without values (`N = 0`, or a zero-size spatial axis) gives
    /// an empty output, as PyTorch: in training the step is counted
    /// (`num_batches_tracked`) and the running statistics stay as they are.
    ///
    /// # Errors
    /// If the rank or the channel count is wrong, or if batch statistics are
    /// needed and each channel has a single value (`N x spatial = 1`), or if
    /// the input is on another device than the layer.
    pub fn try_forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let dims = input.dims();
        check_channel_input(LAYER, &dims, self.num_features, (2, Some(5)))?;
        check_device(LAYER, &input.device(), &self.devices())?;
        let training = input.device().is_autodiff() && self.training.is_enabled();
        let gamma = self.gamma.as_ref().map(Param::val);
        let beta = self.beta.as_ref().map(Param::val);

        match (&self.running_mean, &self.running_var) {
            (Some(running_mean), Some(running_var)) if !training => Ok(functional::batch_norm(
                input,
                running_mean.value(),
                running_var.value(),
                gamma,
                beta,
                self.epsilon,
            )),
            _ => {
                let count = dims.iter().product::<usize>() / self.num_features;
                // One value per channel has no variance. None at all (an
                // empty batch) is PyTorch's no-op step: an empty output,
                // and the running statistics left as they are. A replica's
                // slice may hold one value per channel, or none; the
                // synchronized statistics check the whole batch.
                if count == 1 && !(training && self.sync.is_some()) {
                    return Err(NormError::SingleValuePerChannel {
                        layer: LAYER,
                        got: dims.to_vec(),
                    });
                }
                let batch = match (&self.sync, self.virtual_batch_size) {
                    (Some(replica), virtual_batch_size) if training => {
                        if virtual_batch_size.is_some_and(|v| v < dims[0]) {
                            return Err(NormError::InvalidConfig {
                                layer: LAYER,
                                field: "virtual_batch_size",
                                expected: "None for a synchronized layer (ghost batches are per replica, synchronized statistics are global)",
                                got: format!("{virtual_batch_size:?}"),
                            });
                        }
                        let device = input.device();
                        if !crate::backend::has_combine(&device) {
                            return Err(NormError::UnsupportedDevice {
                                layer: LAYER,
                                what: "synchronized statistics (replicas on threads: flex, ndarray, wgpu)",
                                device: format!("{device:?}"),
                            });
                        }
                        functional::batch_norm_train_synced(
                            input,
                            gamma,
                            beta,
                            self.epsilon,
                            replica,
                        )
                    }
                    (_, Some(v)) if training && v < dims[0] && count > 0 => {
                        if !dims[0].is_multiple_of(v) || count / dims[0] * v <= 1 {
                            return Err(NormError::InvalidInput {
                                layer: LAYER,
                                expected: format!(
                                    "[N, {}, ...] with N a multiple of virtual_batch_size = {v} (and more than 1 value per channel in each chunk)",
                                    self.num_features
                                ),
                                got: dims.to_vec(),
                            });
                        }
                        functional::ghost_batch_norm_train(input, v, gamma, beta, self.epsilon)
                    }
                    // The running statistics updated in the same operation.
                    _ if training && count > 0 && self.num_batches_tracked.is_some() => {
                        return Ok(self.train_tracking(input, gamma, beta));
                    }
                    _ => functional::batch_norm_train(input, gamma, beta, self.epsilon),
                };
                if training {
                    self.track(&batch);
                }
                Ok(batch.output)
            }
        }
    }

    /// Normalizes `input`, see [`try_forward`](Self::try_forward).
    ///
    /// # Panics
    /// Where `try_forward` returns an error, with its message.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.try_forward(input).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A training step of a layer with running statistics, on a batch with
    /// more than one value per channel: the output, the running statistics
    /// updated as PyTorch in the same operation
    /// ([`functional::batch_norm_train_running`]).
    fn train_tracking<const D: usize>(
        &self,
        input: Tensor<D>,
        gamma: Option<Tensor<1>>,
        beta: Option<Tensor<1>>,
    ) -> Tensor<D> {
        let (Some(mean), Some(var), Some(counter)) = (
            &self.running_mean,
            &self.running_var,
            &self.num_batches_tracked,
        ) else {
            unreachable!("called for layers with running statistics");
        };
        let factor = running_stats::next_factor(counter, self.momentum);
        let device = input.device();
        running_stats::train_updating(mean, var, &device, |running_mean, running_var| {
            functional::batch_norm_train_running(
                input,
                gamma,
                beta,
                self.epsilon,
                running_mean,
                running_var,
                factor,
            )
        })
    }

    /// Folds one training batch into the running statistics, as PyTorch.
    fn track<const D: usize>(&self, batch: &functional::BatchStatistics<D>) {
        let (Some(mean), Some(var), Some(counter)) = (
            &self.running_mean,
            &self.running_var,
            &self.num_batches_tracked,
        ) else {
            return;
        };
        running_stats::step(mean, var, counter, &batch.moments(), self.momentum);
    }
}

impl ModuleDisplay for BatchNorm {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("num_features", &self.num_features)
            .add("epsilon", &self.epsilon)
            .add("momentum", &format!("{:?}", self.momentum))
            .add("affine", &self.gamma.is_some())
            .add("track_running_stats", &self.running_mean.is_some())
            .add(
                "virtual_batch_size",
                &format!("{:?}", self.virtual_batch_size),
            )
            .add("synchronized", &self.sync.is_some())
            .optional()
    }
}
