//! The [`BatchRenorm`] module: state and configuration over
//! [`functional::batch_renorm_train`](crate::functional::batch_renorm_train)
//! and, in evaluation, [`functional::batch_norm`](crate::functional::batch_norm).

use crate::RunningCounter;
use crate::error::{
    NormError, check_channel_input, check_device, check_epsilon, check_features, check_momentum,
};
use crate::functional::{self, RenormLimits};
use crate::running_stats::{self, RunningBuffers};
use burn::config::Config;
use burn::module::{
    Content, DisplaySettings, Flag, Initializer, Module, ModuleDisplay, Param, RunningState,
};
use burn::tensor::{Device, Tensor};

const LAYER: &str = "BatchRenorm";

/// Configuration of a [`BatchRenorm`] layer: BatchNorm's knobs (PyTorch's
/// defaults) and the renormalization limits, as Keras'
/// `BatchNormalization(renorm=True, renorm_clipping={"rmax", "dmax"})`.
///
/// ```
/// use burn_norm::BatchRenormConfig;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex().autodiff();
/// let norm = BatchRenormConfig::new(8).with_warmup_steps(1000).init(&device);
/// let y = norm.forward(Tensor::<4>::ones([4, 8, 3, 3], &device));
/// ```
#[derive(Config, Debug)]
pub struct BatchRenormConfig {
    /// The number of channels `C` of an input `[N, C, ...]`. Must be > 0.
    pub num_features: usize,
    /// Added to the variances before the square root. Finite and > 0.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// The weight of the current batch in the running statistics, in
    /// `[0, 1]`; `None` takes the cumulative average, as BatchNorm.
    #[config(default = "Some(0.1)")]
    pub momentum: Option<f64>,
    /// Whether the layer has a learnable per-channel `gamma` and `beta`.
    #[config(default = true)]
    pub affine: bool,
    /// The largest scale correction `r` (`[1 / rmax, rmax]`), >= 1; the
    /// paper's final value, 3, by default.
    #[config(default = 3.0)]
    pub rmax: f64,
    /// The largest shift correction `d` (`[-dmax, dmax]`, in running
    /// standard deviations), >= 0; the paper's final value, 5, by default.
    #[config(default = 5.0)]
    pub dmax: f64,
    /// Training steps over which the limits grow linearly from `rmax = 1`,
    /// `dmax = 0` (plain BatchNorm) to their values; 0 (the default, as
    /// Keras) applies them from the first step.
    #[config(default = 0)]
    pub warmup_steps: u64,
}

impl BatchRenormConfig {
    /// Checks every field, returning the first invalid one.
    pub fn validate(&self) -> Result<(), NormError> {
        check_features(LAYER, "num_features", self.num_features)?;
        check_epsilon(LAYER, self.epsilon)?;
        check_momentum(LAYER, self.momentum)?;
        let invalid = |field, expected, got: f64| NormError::InvalidConfig {
            layer: LAYER,
            field,
            expected,
            got: got.to_string(),
        };
        if !(self.rmax.is_finite() && self.rmax >= 1.0) {
            return Err(invalid("rmax", "finite and >= 1", self.rmax));
        }
        if !(self.dmax.is_finite() && self.dmax >= 0.0) {
            return Err(invalid("dmax", "finite and >= 0", self.dmax));
        }
        Ok(())
    }

    /// Builds the layer: `gamma = 1`, `beta = 0`, `running_mean = 0`,
    /// `running_var = 1`, `num_batches_tracked = 0`.
    pub fn try_init(&self, device: &Device) -> Result<BatchRenorm, NormError> {
        self.validate()?;
        let c = self.num_features;
        let param = |init: Initializer| self.affine.then(|| init.init([c], device));
        let running = RunningBuffers::new(c, true, device);
        let (Some(running_mean), Some(running_var), Some(counter)) =
            (running.mean, running.var, running.counter)
        else {
            unreachable!("tracked buffers were asked for");
        };
        Ok(BatchRenorm {
            gamma: param(Initializer::Ones),
            beta: param(Initializer::Zeros),
            running_mean,
            running_var,
            num_batches_tracked: counter,
            training: Param::from_bool(true),
            momentum: self.momentum,
            epsilon: self.epsilon,
            rmax: self.rmax,
            dmax: self.dmax,
            warmup_steps: self.warmup_steps,
            num_features: c,
        })
    }

    /// Builds the layer, see [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> BatchRenorm {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Batch renormalization ([Ioffe, 2017](https://arxiv.org/abs/1702.03275)):
/// BatchNorm whose training output is corrected towards the running
/// statistics, so that training and evaluation agree even for small or
/// non-i.i.d. batches.
///
/// - Training: `y = gamma * (x̂ r + d) + beta` with `x̂` the batch-normalized
///   input, `r = clip(σ_B / σ, 1/rmax, rmax)`, `d = clip((μ_B - μ) / σ,
///   -dmax, dmax)` from the batch's and the running statistics, constants
///   for the gradient; then the running statistics are updated as
///   BatchNorm's (unbiased variance, PyTorch's momentum rule) and
///   `num_batches_tracked` counts the step. The limits grow from 1 and 0
///   over `warmup_steps`.
/// - Evaluation: the running statistics, as BatchNorm.
///
/// Build it with [`BatchRenormConfig`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct BatchRenorm {
    /// The learnable scale `gamma`, `[C]`; `None` when `affine = false`.
    pub gamma: Option<Param<Tensor<1>>>,
    /// The learnable shift `beta`, `[C]`; `None` when `affine = false`.
    pub beta: Option<Param<Tensor<1>>>,
    running_mean: RunningState<Tensor<1>>,
    running_var: RunningState<Tensor<1>>,
    num_batches_tracked: RunningCounter,
    /// Whether training behavior is enabled for this layer.
    pub training: Param<Flag>,
    /// See [`BatchRenormConfig::momentum`].
    pub momentum: Option<f64>,
    /// See [`BatchRenormConfig::epsilon`].
    pub epsilon: f64,
    /// See [`BatchRenormConfig::rmax`].
    pub rmax: f64,
    /// See [`BatchRenormConfig::dmax`].
    pub dmax: f64,
    /// See [`BatchRenormConfig::warmup_steps`].
    pub warmup_steps: u64,
    num_features: usize,
}

impl BatchRenorm {
    /// The running mean, `[C]`.
    pub fn running_mean(&self) -> Tensor<1> {
        self.running_mean.value_sync()
    }

    /// The running (unbiased) variance, `[C]`.
    pub fn running_var(&self) -> Tensor<1> {
        self.running_var.value_sync()
    }

    /// The number of training steps taken.
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked.get()
    }

    /// The limits of the next training step: `rmax`, `dmax` scaled by the
    /// warm-up's progress (`steps taken / warmup_steps`, at most 1).
    pub fn limits(&self) -> RenormLimits {
        let progress = if self.warmup_steps == 0 {
            1.0
        } else {
            (self.num_batches_tracked() as f64 / self.warmup_steps as f64).min(1.0)
        };
        RenormLimits {
            rmax: 1.0 + (self.rmax - 1.0) * progress,
            dmax: self.dmax * progress,
        }
    }

    /// Normalizes `input`, see [`BatchRenorm`] for the formula and the modes.
    ///
    /// # Shapes
    /// - `input`: `[N, C, ...]`, rank 2 to 5
    /// - output: the shape of `input`
    ///
    /// An input without values gives an empty output, as
    /// [`BatchNorm::try_forward`](crate::BatchNorm::try_forward): in training the step is counted and the
    /// running statistics stay as they are.
    ///
    /// # Errors
    /// If the rank or the channel count is wrong, if training and each
    /// channel has a single value, or if the input is on another device
    /// than the layer.
    pub fn try_forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let dims = input.dims();
        check_channel_input(LAYER, &dims, self.num_features, (2, Some(5)))?;
        check_device(LAYER, &input.device(), &self.devices())?;
        let gamma = self.gamma.as_ref().map(Param::val);
        let beta = self.beta.as_ref().map(Param::val);
        if !(input.device().is_autodiff() && self.training.is_enabled()) {
            return Ok(functional::batch_norm(
                input,
                self.running_mean.value(),
                self.running_var.value(),
                gamma,
                beta,
                self.epsilon,
            ));
        }
        // One value per channel has no variance; none at all (an empty
        // batch) is BatchNorm's no-op step.
        if dims.iter().product::<usize>() / self.num_features == 1 {
            return Err(NormError::SingleValuePerChannel {
                layer: LAYER,
                got: dims.to_vec(),
            });
        }
        let device = input.device();
        let out = functional::batch_renorm_train(
            input,
            self.running_mean.value_sync().to_device(&device),
            self.running_var.value_sync().to_device(&device),
            gamma,
            beta,
            self.epsilon,
            self.limits(),
        );
        running_stats::step(
            &self.running_mean,
            &self.running_var,
            &self.num_batches_tracked,
            &out.batch.moments(),
            self.momentum,
        );
        Ok(out.batch.output)
    }

    /// Normalizes `input`, see [`try_forward`](Self::try_forward).
    ///
    /// # Panics
    /// Where `try_forward` returns an error, with its message.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.try_forward(input).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl ModuleDisplay for BatchRenorm {
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
            .add("rmax", &self.rmax)
            .add("dmax", &self.dmax)
            .add("warmup_steps", &self.warmup_steps)
            .optional()
    }
}
