//! [`NormalizationConfig`] and [`Normalization`]: one config field and one
//! module field that hold any layer of the family, as burn-nn's, so that a
//! model can choose its normalization from configuration.

use crate::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, InstanceNorm, InstanceNormConfig,
    LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig,
};
use burn::config::Config;
use burn::module::Module;
use burn::nn::Identity;
use burn::tensor::{Device, Tensor};

/// The configuration of any normalization layer, as burn-nn's enum of the
/// same name: build one with a placeholder feature count, then match it to
/// the layer it goes in with [`with_num_features`](Self::with_num_features).
///
/// ```
/// use burn_norm::{NormalizationConfig, RmsNormConfig};
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// let choice: NormalizationConfig = RmsNormConfig::new(0).into();
/// let norm = choice.with_num_features(16).init(&device);
/// assert_eq!(norm.forward(Tensor::<2>::ones([3, 16], &device)).dims(), [3, 16]);
/// ```
#[derive(Config, Debug)]
#[non_exhaustive]
pub enum NormalizationConfig {
    /// No normalization.
    Identity,
    /// [`BatchNorm`].
    Batch(BatchNormConfig),
    /// [`GroupNorm`].
    Group(GroupNormConfig),
    /// [`InstanceNorm`].
    Instance(InstanceNormConfig),
    /// [`LayerNorm`].
    Layer(LayerNormConfig),
    /// [`RmsNorm`].
    Rms(RmsNormConfig),
}

macro_rules! from_config {
    ($($config:ident => $variant:ident),*) => {$(
        impl From<$config> for NormalizationConfig {
            fn from(config: $config) -> Self {
                Self::$variant(config)
            }
        }
    )*};
}
from_config!(BatchNormConfig => Batch, GroupNormConfig => Group, InstanceNormConfig => Instance,
    LayerNormConfig => Layer, RmsNormConfig => Rms);

impl NormalizationConfig {
    /// Builds the layer.
    ///
    /// # Panics
    /// If the config is invalid (the message says which field and why).
    pub fn init(&self, device: &Device) -> Normalization {
        match self {
            Self::Identity => Normalization::Identity(Identity::new()),
            Self::Batch(config) => Normalization::Batch(config.init(device)),
            Self::Group(config) => Normalization::Group(config.init(device)),
            Self::Instance(config) => Normalization::Instance(config.init(device)),
            Self::Layer(config) => Normalization::Layer(config.init(device)),
            Self::Rms(config) => Normalization::Rms(config.init(device)),
        }
    }

    /// The same config for `num_features` features (channels, or the
    /// normalized size of LayerNorm and RMSNorm, which then normalize over
    /// the last axis).
    pub fn with_num_features(self, num_features: usize) -> Self {
        match self {
            Self::Identity => self,
            Self::Batch(config) => Self::Batch(BatchNormConfig {
                num_features,
                ..config
            }),
            Self::Group(config) => Self::Group(GroupNormConfig {
                num_channels: num_features,
                ..config
            }),
            Self::Instance(config) => Self::Instance(InstanceNormConfig {
                num_channels: num_features,
                ..config
            }),
            Self::Layer(config) => Self::Layer(LayerNormConfig {
                d_model: num_features,
                normalized_shape: None,
                ..config
            }),
            Self::Rms(config) => Self::Rms(RmsNormConfig {
                d_model: num_features,
                normalized_shape: None,
                ..config
            }),
        }
    }

    /// The number of features (0 for `Identity`).
    pub fn num_features(&self) -> usize {
        match self {
            Self::Identity => 0,
            Self::Batch(config) => config.num_features,
            Self::Group(config) => config.num_channels,
            Self::Instance(config) => config.num_channels,
            Self::Layer(config) => config.d_model,
            Self::Rms(config) => config.d_model,
        }
    }
}

/// Any normalization layer, built by [`NormalizationConfig::init`].
#[derive(Module, Debug)]
#[non_exhaustive]
pub enum Normalization {
    /// No normalization.
    Identity(Identity),
    /// [`BatchNorm`].
    Batch(BatchNorm),
    /// [`GroupNorm`].
    Group(GroupNorm),
    /// [`InstanceNorm`].
    Instance(InstanceNorm),
    /// [`LayerNorm`].
    Layer(LayerNorm),
    /// [`RmsNorm`].
    Rms(RmsNorm),
}

impl Normalization {
    /// Normalizes `input` with the wrapped layer (see each layer's shapes).
    ///
    /// # Panics
    /// Where the wrapped layer's `forward` does.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Identity(norm) => norm.forward(input),
            Self::Batch(norm) => norm.forward(input),
            Self::Group(norm) => norm.forward(input),
            Self::Instance(norm) => norm.forward(input),
            Self::Layer(norm) => norm.forward(input),
            Self::Rms(norm) => norm.forward(input),
        }
    }
}
