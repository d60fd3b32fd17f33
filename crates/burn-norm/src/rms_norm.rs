//! The [`RmsNorm`] module: state and configuration over
//! [`functional::rms_norm`](crate::functional::rms_norm).

use crate::error::{
    NormError, check_device, check_epsilon, check_features, check_normalized_shape,
    check_trailing_shape,
};
use crate::functional;
use burn::config::Config;
use burn::module::{Content, DisplaySettings, Initializer, Module, ModuleDisplay, Param};
use burn::tensor::{Device, Tensor};

const LAYER: &str = "RmsNorm";

/// Configuration of an [`RmsNorm`] layer.
///
/// `RmsNormConfig::new(d_model)` is the same call as in `burn::nn`; the
/// defaults are PyTorch's (see `epsilon`).
///
/// ```
/// use burn_norm::RmsNormConfig;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let rms = RmsNormConfig::new(8).with_epsilon(1e-6).init(&device);
/// assert_eq!(rms.forward(Tensor::<3>::ones([2, 5, 8], &device)).dims(), [2, 5, 8]);
/// ```
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// The number of values normalized together per sample: the size of the
    /// last axis, or the product of `normalized_shape`. Must be > 0.
    pub d_model: usize,
    /// Added to the mean square before the square root. Finite and > 0. The
    /// default is `f32::EPSILON` (1.19e-7), what PyTorch's `eps=None` gives
    /// for f32 inputs (for f16, bf16 or f64 inputs PyTorch takes that dtype's
    /// epsilon instead: set it explicitly there). burn-nn's default is 1e-5.
    #[config(default = 1.1920928955078125e-7)]
    pub epsilon: f64,
    /// Whether the layer has a learnable scale `gamma`.
    #[config(default = true)]
    pub elementwise_affine: bool,
    /// PyTorch's `normalized_shape`: the trailing axes to normalize over.
    /// `None` means `[d_model]`, the last axis. Its product must be `d_model`.
    #[config(default = "None")]
    pub normalized_shape: Option<Vec<usize>>,
}

impl RmsNormConfig {
    /// A config that normalizes over the trailing axes `normalized_shape`, as
    /// `torch.nn.RMSNorm(normalized_shape)`.
    pub fn from_normalized_shape(normalized_shape: impl Into<Vec<usize>>) -> Self {
        let shape = normalized_shape.into();
        Self::new(shape.iter().product()).with_normalized_shape(Some(shape))
    }

    /// The trailing shape normalized over.
    pub fn shape(&self) -> Vec<usize> {
        self.normalized_shape
            .clone()
            .unwrap_or_else(|| vec![self.d_model])
    }

    /// Checks every field, returning the first invalid one.
    pub fn validate(&self) -> Result<(), NormError> {
        check_features(LAYER, "d_model", self.d_model)?;
        check_epsilon(LAYER, self.epsilon)?;
        check_normalized_shape(LAYER, &self.shape(), self.d_model)
    }

    /// Builds the layer: `gamma = 1`, as PyTorch.
    pub fn try_init(&self, device: &Device) -> Result<RmsNorm, NormError> {
        self.validate()?;
        Ok(RmsNorm {
            gamma: self
                .elementwise_affine
                .then(|| Initializer::Ones.init([self.d_model], device)),
            epsilon: self.epsilon,
            normalized_shape: self.shape(),
        })
    }

    /// Builds the layer, see [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> RmsNorm {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Root-mean-square normalization ([Zhang & Sennrich,
/// 2019](https://arxiv.org/abs/1910.07467)), as `torch.nn.RMSNorm`:
///
/// `y = x / sqrt(mean(x²) + epsilon) * gamma`
///
/// with the mean taken per sample over the trailing `normalized_shape` axes;
/// no centering and no shift. Half-precision inputs accumulate in f32. The
/// layer behaves the same in training and evaluation.
///
/// Build it with [`RmsNormConfig`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct RmsNorm {
    /// The learnable scale, `[d_model]` (for a multi-axis `normalized_shape`,
    /// the row-major flattening of PyTorch's `weight`); `None` without
    /// `elementwise_affine`.
    pub gamma: Option<Param<Tensor<1>>>,
    /// See [`RmsNormConfig::epsilon`].
    pub epsilon: f64,
    #[module(skip)]
    normalized_shape: Vec<usize>,
}

impl RmsNorm {
    /// The trailing shape normalized over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    /// Normalizes `input` over its trailing `normalized_shape` axes.
    ///
    /// # Shapes
    /// - `input`: `[..., *normalized_shape]`
    /// - output: the shape of `input`
    ///
    /// # Errors
    /// If the trailing axes of `input` are not `normalized_shape`, or the
    /// input is on another device than the layer.
    pub fn try_forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<D>, NormError> {
        check_trailing_shape(LAYER, &input.dims(), &self.normalized_shape)?;
        check_device(LAYER, &input.device(), &self.devices())?;
        let k = self.normalized_shape.len();
        Ok(functional::rms_norm(
            input,
            k,
            self.gamma.as_ref().map(Param::val),
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

impl ModuleDisplay for RmsNorm {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("normalized_shape", &format!("{:?}", self.normalized_shape))
            .add("epsilon", &self.epsilon)
            .add("elementwise_affine", &self.gamma.is_some())
            .optional()
    }
}
