//! The [`GroupNorm`] module: state and configuration over
//! [`functional::group_norm`](crate::functional::group_norm).

use crate::error::{NormError, check_channel_input, check_device, check_epsilon, check_features};
use crate::functional;
use burn::config::Config;
use burn::module::{Content, DisplaySettings, Initializer, Module, ModuleDisplay, Param};
use burn::tensor::{Device, Tensor};

const LAYER: &str = "GroupNorm";

/// Configuration of a [`GroupNorm`] layer, with PyTorch's knobs and
/// defaults (the same as burn-nn's).
///
/// ```
/// use burn_norm::GroupNormConfig;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let gn = GroupNormConfig::new(2, 6).init(&device);
/// assert_eq!(gn.forward(Tensor::<4>::ones([1, 6, 3, 3], &device)).dims(), [1, 6, 3, 3]);
/// ```
#[derive(Config, Debug)]
pub struct GroupNormConfig {
    /// The number of groups the channels are split into. Must divide
    /// `num_channels`.
    pub num_groups: usize,
    /// The number of channels `C` of an input `[N, C, ...]`. Must be > 0.
    pub num_channels: usize,
    /// Added to the variance before the square root. Finite and > 0.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Whether the layer has a learnable per-channel scale `gamma` and shift
    /// `beta`.
    #[config(default = true)]
    pub affine: bool,
}

impl GroupNormConfig {
    /// Checks every field, returning the first invalid one.
    pub fn validate(&self) -> Result<(), NormError> {
        check_features(LAYER, "num_groups", self.num_groups)?;
        check_features(LAYER, "num_channels", self.num_channels)?;
        check_epsilon(LAYER, self.epsilon)?;
        if !self.num_channels.is_multiple_of(self.num_groups) {
            return Err(NormError::InvalidConfig {
                layer: LAYER,
                field: "num_groups",
                expected: "a divisor of num_channels",
                got: format!(
                    "{} with num_channels = {}",
                    self.num_groups, self.num_channels
                ),
            });
        }
        Ok(())
    }

    /// Builds the layer: `gamma = 1`, `beta = 0`, as PyTorch.
    pub fn try_init(&self, device: &Device) -> Result<GroupNorm, NormError> {
        self.validate()?;
        let c = self.num_channels;
        let param = |init: Initializer| self.affine.then(|| init.init([c], device));
        Ok(GroupNorm {
            gamma: param(Initializer::Ones),
            beta: param(Initializer::Zeros),
            num_groups: self.num_groups,
            num_channels: c,
            epsilon: self.epsilon,
            affine: self.affine,
        })
    }

    /// Builds the layer, see [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> GroupNorm {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Group normalization ([Wu & He, 2018](https://arxiv.org/abs/1803.08494)),
/// as `torch.nn.GroupNorm`:
///
/// `y = (x - mean) / sqrt(var + epsilon) * gamma_c + beta_c`
///
/// where `mean` and the biased `var` are taken per sample over each group of
/// `C / num_groups` consecutive channels and all their spatial values.
/// Independent of the batch (any `N`, including 1), so it behaves the same in
/// training and evaluation. Half-precision inputs accumulate in f32.
///
/// Build it with [`GroupNormConfig`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct GroupNorm {
    /// The learnable scale, `[C]`; `None` without `affine`.
    pub gamma: Option<Param<Tensor<1>>>,
    /// The learnable shift, `[C]`; `None` without `affine`.
    pub beta: Option<Param<Tensor<1>>>,
    /// See [`GroupNormConfig::num_groups`].
    pub num_groups: usize,
    /// See [`GroupNormConfig::num_channels`].
    pub num_channels: usize,
    /// See [`GroupNormConfig::epsilon`].
    pub epsilon: f64,
    /// See [`GroupNormConfig::affine`].
    pub affine: bool,
}

impl GroupNorm {
    /// Normalizes `input`, see [`GroupNorm`].
    ///
    /// # Shapes
    /// - `input`: `[N, C, ...]`, rank 2 or more
    /// - output: the shape of `input`
    ///
    /// # Errors
    /// If the rank is below 2, the channel count is not `num_channels`, or
    /// the input is on another device than the layer.
    pub fn try_forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let dims = input.dims();
        check_channel_input(LAYER, &dims, self.num_channels, (2, None))?;
        check_device(LAYER, &input.device(), &self.devices())?;
        Ok(functional::group_norm(
            input,
            self.num_groups,
            self.gamma.as_ref().map(Param::val),
            self.beta.as_ref().map(Param::val),
            self.epsilon,
        ))
    }

    /// Normalizes `input`, see [`try_forward`](Self::try_forward).
    ///
    /// # Panics
    /// Where `try_forward` returns an error, with its message.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.try_forward(input).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl ModuleDisplay for GroupNorm {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("num_groups", &self.num_groups)
            .add("num_channels", &self.num_channels)
            .add("epsilon", &self.epsilon)
            .add("affine", &self.affine)
            .optional()
    }
}
