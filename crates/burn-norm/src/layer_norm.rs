//! The [`LayerNorm`] module: state and configuration over
//! [`functional::layer_norm`](crate::functional::layer_norm).

use crate::error::{
    NormError, check_device, check_epsilon, check_features, check_normalized_shape,
    check_trailing_shape,
};
use crate::functional;
use burn::config::Config;
use burn::module::{Content, DisplaySettings, Initializer, Module, ModuleDisplay, Param};
use burn::tensor::{Device, Tensor};

const LAYER: &str = "LayerNorm";

/// Configuration of a [`LayerNorm`] layer.
///
/// `LayerNormConfig::new(d_model)` is the same call as in `burn::nn`, so
/// swapping the import is enough; the other fields carry PyTorch's knobs.
///
/// ```
/// use burn_norm::LayerNormConfig;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// // Over the last axis, as burn::nn::LayerNorm:
/// let ln = LayerNormConfig::new(8).init(&device);
/// assert_eq!(ln.forward(Tensor::<3>::ones([2, 5, 8], &device)).dims(), [2, 5, 8]);
/// // Over the last two axes, as torch.nn.LayerNorm([4, 8]):
/// let ln = LayerNormConfig::from_normalized_shape([4, 8]).init(&device);
/// assert_eq!(ln.forward(Tensor::<3>::ones([2, 4, 8], &device)).dims(), [2, 4, 8]);
/// ```
#[derive(Config, Debug)]
pub struct LayerNormConfig {
    /// The number of values normalized together per sample: the size of the
    /// last axis, or the product of `normalized_shape`. Must be > 0.
    pub d_model: usize,
    /// Added to the variance before the square root. Finite and > 0.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Whether the layer has learnable `gamma` (and `beta` if `bias`).
    #[config(default = true)]
    pub elementwise_affine: bool,
    /// Whether the layer has a learnable shift `beta` (with
    /// `elementwise_affine`).
    #[config(default = true)]
    pub bias: bool,
    /// PyTorch's `normalized_shape`: the trailing axes to normalize over.
    /// `None` means `[d_model]`, the last axis. Its product must be `d_model`.
    #[config(default = "None")]
    pub normalized_shape: Option<Vec<usize>>,
}

impl LayerNormConfig {
    /// A config that normalizes over the trailing axes `normalized_shape`, as
    /// `torch.nn.LayerNorm(normalized_shape)`.
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

    /// Builds the layer: `gamma = 1`, `beta = 0`, as PyTorch.
    pub fn try_init(&self, device: &Device) -> Result<LayerNorm, NormError> {
        self.validate()?;
        let param = |on: bool, init: Initializer| on.then(|| init.init([self.d_model], device));
        Ok(LayerNorm {
            gamma: param(self.elementwise_affine, Initializer::Ones),
            beta: param(self.elementwise_affine && self.bias, Initializer::Zeros),
            epsilon: self.epsilon,
            normalized_shape: self.shape(),
        })
    }

    /// Builds the layer, see [`try_init`](Self::try_init).
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> LayerNorm {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Layer normalization ([Ba et al., 2016](https://arxiv.org/abs/1607.06450)),
/// as `torch.nn.LayerNorm`.
///
/// `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`, where `mean` and the
/// biased `var` are taken per sample over the trailing `normalized_shape` axes.
/// Half-precision inputs accumulate their statistics in f32. The layer behaves
/// the same in training and evaluation.
///
/// Build it with [`LayerNormConfig`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct LayerNorm {
    /// The learnable scale, `[d_model]` (for a multi-axis `normalized_shape`,
    /// the row-major flattening of PyTorch's `weight`); `None` without
    /// `elementwise_affine`.
    pub gamma: Option<Param<Tensor<1>>>,
    /// The learnable shift, `[d_model]`; `None` without `bias`.
    pub beta: Option<Param<Tensor<1>>>,
    /// See [`LayerNormConfig::epsilon`].
    pub epsilon: f64,
    #[module(skip)]
    normalized_shape: Vec<usize>,
}

impl LayerNorm {
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
        Ok(functional::layer_norm(
            input,
            k,
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

impl ModuleDisplay for LayerNorm {
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
            .add("bias", &self.beta.is_some())
            .optional()
    }
}
