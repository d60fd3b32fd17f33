//! The [`InstanceNorm`] module: state and configuration over
//! [`functional::instance_norm_train`](crate::functional::instance_norm_train)
//! and, with running statistics in evaluation,
//! [`functional::batch_norm`](crate::functional::batch_norm).

use crate::RunningCounter;
use crate::error::{
    NormError, check_channel_input, check_device, check_epsilon, check_features, check_momentum,
};
use crate::functional;
use crate::running_stats::{self, RunningBuffers};
use burn::config::Config;
use burn::module::{
    Content, DisplaySettings, Flag, Initializer, Module, ModuleDisplay, Param, RunningState,
};
use burn::tensor::{Device, Tensor};

const LAYER: &str = "InstanceNorm";

/// Configuration of an [`InstanceNorm`] layer, with PyTorch's knobs and
/// defaults: no `affine` and no running statistics unless asked for
/// (burn-nn's `affine` defaults to `true`; see the README's table).
///
/// ```
/// use burn_norm::InstanceNormConfig;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let norm = InstanceNormConfig::new(3).with_affine(true).init(&device);
/// assert_eq!(norm.forward(Tensor::<4>::ones([2, 3, 4, 4], &device)).dims(), [2, 3, 4, 4]);
/// ```
#[derive(Config, Debug)]
pub struct InstanceNormConfig {
    /// The number of channels `C` of an input `[N, C, ...]`. Must be > 0.
    pub num_channels: usize,
    /// Added to the variance before the square root. Finite and > 0.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// The weight of the current batch in the running statistics, in
    /// `[0, 1]`. `None` leaves them unchanged, as PyTorch's InstanceNorm
    /// (which passes 0 for it; unlike BatchNorm it has no cumulative average).
    #[config(default = "Some(0.1)")]
    pub momentum: Option<f64>,
    /// Whether the layer has a learnable per-channel scale `gamma` and shift
    /// `beta` (PyTorch's default: `false`).
    #[config(default = false)]
    pub affine: bool,
    /// Whether the layer keeps running statistics (averaged over the
    /// instances of each batch) and normalizes with them in evaluation
    /// (PyTorch's default: `false`).
    #[config(default = false)]
    pub track_running_stats: bool,
}

impl InstanceNormConfig {
    /// Checks every field, returning the first invalid one.
    pub fn validate(&self) -> Result<(), NormError> {
        check_features(LAYER, "num_channels", self.num_channels)?;
        check_epsilon(LAYER, self.epsilon)?;
        check_momentum(LAYER, self.momentum)
    }

    /// Builds the layer: `gamma = 1`, `beta = 0`, `running_mean = 0`,
    /// `running_var = 1`, `num_batches_tracked = 0`, as PyTorch.
    pub fn try_init(&self, device: &Device) -> Result<InstanceNorm, NormError> {
        self.validate()?;
        let c = self.num_channels;
        let param = |init: Initializer| self.affine.then(|| init.init([c], device));
        let running = RunningBuffers::new(c, self.track_running_stats, device);
        Ok(InstanceNorm {
            gamma: param(Initializer::Ones),
            beta: param(Initializer::Zeros),
            running_mean: running.mean,
            running_var: running.var,
            num_batches_tracked: running.counter,
            training: Param::from_bool(true),
            momentum: self.momentum,
            epsilon: self.epsilon,
            num_channels: c,
        })
    }

    /// Builds the layer, see [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> InstanceNorm {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Instance normalization ([Ulyanov et al.,
/// 2016](https://arxiv.org/abs/1607.08022)) over `[N, C, L]`, `[N, C, H, W]`
/// or `[N, C, D, H, W]` inputs: PyTorch's `InstanceNorm1d/2d/3d` in one layer.
///
/// `y = (x - mean_nc) / sqrt(var_nc + epsilon) * gamma_c + beta_c`
///
/// - Each instance's own statistics (the biased mean and variance over the
///   spatial values of one channel of one sample) in training (an autodiff
///   device and the layer's training flag on) and whenever
///   `track_running_stats` is off. With running statistics, training also
///   updates them with the instances' statistics averaged over the batch
///   (unbiased variance), as PyTorch.
/// - Evaluation with `track_running_stats`: the running statistics.
///
/// As in PyTorch, `num_batches_tracked` is kept (for checkpoints) but never
/// advanced by InstanceNorm.
///
/// Build it with [`InstanceNormConfig`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct InstanceNorm {
    /// The learnable scale `gamma`, `[C]`; `None` when `affine = false`.
    pub gamma: Option<Param<Tensor<1>>>,
    /// The learnable shift `beta`, `[C]`; `None` when `affine = false`.
    pub beta: Option<Param<Tensor<1>>>,
    running_mean: Option<RunningState<Tensor<1>>>,
    running_var: Option<RunningState<Tensor<1>>>,
    num_batches_tracked: Option<RunningCounter>,
    /// Whether training behavior is enabled for this layer.
    pub training: Param<Flag>,
    /// See [`InstanceNormConfig::momentum`].
    pub momentum: Option<f64>,
    /// See [`InstanceNormConfig::epsilon`].
    pub epsilon: f64,
    num_channels: usize,
}

impl InstanceNorm {
    /// The running mean, `[C]`; `None` without running statistics.
    pub fn running_mean(&self) -> Option<Tensor<1>> {
        self.running_mean.as_ref().map(RunningState::value_sync)
    }

    /// The running (unbiased) variance, `[C]`; `None` without running
    /// statistics.
    pub fn running_var(&self) -> Option<Tensor<1>> {
        self.running_var.as_ref().map(RunningState::value_sync)
    }

    /// PyTorch's `num_batches_tracked` (loaded and saved, never advanced);
    /// `None` without running statistics.
    pub fn num_batches_tracked(&self) -> Option<u64> {
        self.num_batches_tracked.as_ref().map(RunningCounter::get)
    }

    /// The number of channels `C`.
    pub fn num_channels(&self) -> usize {
        self.num_channels
    }

    /// Normalizes `input`, see [`InstanceNorm`] for the formula and the modes.
    ///
    /// # Shapes
    /// - `input`: `[N, C, ...]`, rank 3 to 5
    /// - output: the shape of `input`
    ///
    /// An input without values (`N = 0`, or a zero-size spatial axis) gives
    /// an empty output and leaves the running statistics as they are
    /// (PyTorch 2.x writes NaN into them).
    ///
    /// # Errors
    /// If the rank or the channel count is wrong, or if instance statistics
    /// are needed and each instance has a single value, or if the input is
    /// on another device than the layer.
    pub fn try_forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let dims = input.dims();
        check_channel_input(LAYER, &dims, self.num_channels, (3, Some(5)))?;
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
            (running_mean, running_var) => {
                // One spatial value has no variance; none at all (an empty
                // batch) gives an empty output and no statistics to track.
                if dims[2..].iter().product::<usize>() == 1 {
                    return Err(NormError::SingleSpatialValue {
                        layer: LAYER,
                        got: dims.to_vec(),
                    });
                }
                let track = training && !functional::has_no_values(&input);
                if let (true, Some(mean), Some(var)) = (track, running_mean, running_var) {
                    // Updated in the operation that normalizes, as
                    // BatchNorm's (`functional::batch_norm_train_running`).
                    let factor = self.momentum.unwrap_or(0.0);
                    let device = input.device();
                    return Ok(running_stats::train_updating(
                        mean,
                        var,
                        &device,
                        |running_mean, running_var| {
                            functional::instance_norm_train_running(
                                input,
                                gamma,
                                beta,
                                self.epsilon,
                                running_mean,
                                running_var,
                                factor,
                            )
                        },
                    ));
                }
                // Nothing to track: the same normalization (a group per
                // channel) without the statistics, which a GPU would
                // otherwise allocate for nobody.
                Ok(functional::group_norm(
                    input,
                    dims[1],
                    gamma,
                    beta,
                    self.epsilon,
                ))
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
}

impl ModuleDisplay for InstanceNorm {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("num_channels", &self.num_channels)
            .add("epsilon", &self.epsilon)
            .add("momentum", &format!("{:?}", self.momentum))
            .add("affine", &self.gamma.is_some())
            .add("track_running_stats", &self.running_mean.is_some())
            .optional()
    }
}
