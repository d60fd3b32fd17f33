//! The CNN: conv -> BatchNorm -> ReLU blocks, then a classifier.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use burn_norm::{BatchNorm, BatchNormConfig, FoldBatchNorm, NormError};

#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Channels of the first two convolutions; the last two have twice as many.
    #[config(default = 16)]
    pub width: usize,
    /// BatchNorm after every convolution and the hidden linear layer; without
    /// it, those places hold the identity (and the layers get a bias back).
    #[config(default = true)]
    pub norm: bool,
    #[config(default = 128)]
    pub hidden: usize,
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// `conv3x3 -> BatchNorm (or identity) -> ReLU`.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: Option<BatchNorm>,
    relu: Relu,
}

impl ConvBlock {
    fn new(channels: [usize; 2], norm: bool, device: &Device) -> Self {
        Self {
            // BatchNorm's beta makes a convolution bias redundant.
            conv: Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(!norm)
                .init(device),
            norm: norm.then(|| BatchNormConfig::new(channels[1]).init(device)),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        self.relu.forward(x)
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
    relu: Relu,
    dropout: Dropout,
    head: Linear,
}

impl CnnConfig {
    pub fn init(&self, device: &Device) -> Cnn {
        let (w, n) = (self.width, self.norm);
        Cnn {
            blocks: vec![
                ConvBlock::new([1, w], n, device),
                ConvBlock::new([w, w], n, device),
                ConvBlock::new([w, 2 * w], n, device),
                ConvBlock::new([2 * w, 2 * w], n, device),
            ],
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            hidden: LinearConfig::new(2 * w * 7 * 7, self.hidden)
                .with_bias(!n)
                .init(device),
            hidden_norm: n.then(|| BatchNormConfig::new(self.hidden).init(device)),
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
        let x = match &self.hidden_norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        self.head
            .forward(self.dropout.forward(self.relu.forward(x)))
    }
}

impl Cnn {
    /// The same network for inference with every BatchNorm folded into the
    /// convolution or linear layer before it (`burn_norm::FoldBatchNorm`):
    /// the same outputs, four conv blocks and the hidden layer with one
    /// operation fewer each. The model must be evaluated (`.valid()`).
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
                    relu: block.relu,
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
