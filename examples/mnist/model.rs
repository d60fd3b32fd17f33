//! The CNN: conv -> BatchNorm (or BatchRenorm, GroupNorm) -> ReLU blocks,
//! then a classifier.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use burn_norm::{
    BatchNorm, BatchNormConfig, BatchRenorm, BatchRenormConfig, FoldBatchNorm, GroupNorm,
    GroupNormConfig, NormError,
};

/// Which normalization follows each convolution and the hidden layer.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// BatchNorm (the default).
    Batch,
    /// Batch Renormalization (Ioffe, 2017): BatchNorm corrected towards its
    /// running statistics, for small batches.
    Renorm,
    /// GroupNorm, 4 groups: per-sample statistics, independent of the batch.
    Group,
    /// No normalization (the layers get their bias back).
    None,
}

impl NormKind {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "batch" => Ok(Self::Batch),
            "renorm" => Ok(Self::Renorm),
            "group" => Ok(Self::Group),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown --norm `{other}`: expected batch, renorm, group or none"
            )),
        }
    }

    /// The run's name in tables and charts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Batch => "batchnorm",
            Self::Renorm => "batchrenorm",
            Self::Group => "groupnorm",
            Self::None => "no-norm",
        }
    }
}

/// One of the normalizations of [`NormKind`] over `channels` channels, as
/// three optional fields (at most one set) flattened into the owner: an enum
/// or a wrapper struct would add a level to the record keys, and the
/// BatchNorm network's keys must stay those of its PyTorch twin
/// (`blocks.0.norm.weight`, see `pytorch_reference.py`).
#[derive(Module, Debug)]
pub struct Norms {
    norm: Option<BatchNorm>,
    renorm: Option<BatchRenorm>,
    group: Option<GroupNorm>,
}

fn norms(kind: NormKind, channels: usize, device: &Device) -> Norms {
    Norms {
        norm: (kind == NormKind::Batch).then(|| BatchNormConfig::new(channels).init(device)),
        renorm: (kind == NormKind::Renorm).then(|| BatchRenormConfig::new(channels).init(device)),
        group: (kind == NormKind::Group).then(|| GroupNormConfig::new(4, channels).init(device)),
    }
}

fn normalize<const D: usize>(
    norm: &Option<BatchNorm>,
    renorm: &Option<BatchRenorm>,
    group: &Option<GroupNorm>,
    x: Tensor<D>,
) -> Tensor<D> {
    match (norm, renorm, group) {
        (Some(n), _, _) => n.forward(x),
        (_, Some(n), _) => n.forward(x),
        (_, _, Some(n)) => n.forward(x),
        _ => x,
    }
}

#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Channels of the first two convolutions; the last two have twice as many.
    #[config(default = 16)]
    pub width: usize,
    /// The normalization after every convolution and the hidden linear
    /// layer; with `None` those places hold the identity (and the layers get
    /// a bias back).
    #[config(default = "NormKind::Batch")]
    pub norm: NormKind,
    #[config(default = 128)]
    pub hidden: usize,
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// `conv3x3 -> normalization (or identity) -> ReLU`.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: Option<BatchNorm>,
    renorm: Option<BatchRenorm>,
    group: Option<GroupNorm>,
    relu: Relu,
}

impl ConvBlock {
    fn new(channels: [usize; 2], kind: NormKind, device: &Device) -> Self {
        let Norms {
            norm,
            renorm,
            group,
        } = norms(kind, channels[1], device);
        Self {
            // The normalization's beta makes a convolution bias redundant.
            conv: Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(kind == NormKind::None)
                .init(device),
            norm,
            renorm,
            group,
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        self.relu
            .forward(normalize(&self.norm, &self.renorm, &self.group, x))
    }
}

/// `[N, 1, 28, 28]` -> logits `[N, 10]`: two blocks, pool, two blocks, pool,
/// linear -> BatchNorm1d -> ReLU -> dropout -> linear.
#[derive(Module, Debug)]
pub struct Cnn {
    blocks: Vec<ConvBlock>,
    pool: MaxPool2d,
    hidden: Linear,
    hidden_norm: Option<BatchNorm>,
    hidden_renorm: Option<BatchRenorm>,
    hidden_group: Option<GroupNorm>,
    relu: Relu,
    dropout: Dropout,
    head: Linear,
}

impl CnnConfig {
    pub fn init(&self, device: &Device) -> Cnn {
        let (w, n) = (self.width, self.norm);
        let hidden = norms(n, self.hidden, device);
        Cnn {
            blocks: vec![
                ConvBlock::new([1, w], n, device),
                ConvBlock::new([w, w], n, device),
                ConvBlock::new([w, 2 * w], n, device),
                ConvBlock::new([2 * w, 2 * w], n, device),
            ],
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            hidden: LinearConfig::new(2 * w * 7 * 7, self.hidden)
                .with_bias(n == NormKind::None)
                .init(device),
            hidden_norm: hidden.norm,
            hidden_renorm: hidden.renorm,
            hidden_group: hidden.group,
            relu: Relu::new(),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.hidden, 10).init(device),
        }
    }
}

impl Cnn {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.blocks[1].forward(self.blocks[0].forward(x));
        let x = self.pool.forward(x);
        let x = self.blocks[3].forward(self.blocks[2].forward(x));
        let x = self.pool.forward(x);
        let x = self.hidden.forward(x.flatten(1, 3));
        let x = normalize(
            &self.hidden_norm,
            &self.hidden_renorm,
            &self.hidden_group,
            x,
        );
        self.head
            .forward(self.dropout.forward(self.relu.forward(x)))
    }
}

impl Cnn {
    /// The same network for inference with every BatchNorm folded into the
    /// convolution or linear layer before it (`burn_norm::FoldBatchNorm`):
    /// the same outputs, four conv blocks and the hidden layer with one
    /// operation fewer each. The model must be evaluated (`.valid()`) and
    /// use BatchNorm.
    pub fn fold_batch_norms(self) -> Result<Cnn, NormError> {
        let blocks = self
            .blocks
            .into_iter()
            .map(|block| {
                let conv = match &block.norm {
                    Some(norm) => block.conv.fold_batch_norm(norm)?,
                    None => block.conv,
                };
                Ok(ConvBlock {
                    conv,
                    norm: None,
                    ..block
                })
            })
            .collect::<Result<_, NormError>>()?;
        let hidden = match &self.hidden_norm {
            Some(norm) => self.hidden.fold_batch_norm(norm)?,
            None => self.hidden,
        };
        Ok(Cnn {
            blocks,
            hidden,
            hidden_norm: None,
            ..self
        })
    }
}
