//! A decoder-only transformer: token + learned position embeddings, blocks of
//! causal self-attention and a GELU MLP with residual connections, a final
//! LayerNorm (or RMSNorm) and a linear head.
//!
//! The MLP's GELU is by default PyTorch's `gelu(approximate="tanh")`
//! (GPT-2's), written as `x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3))`.
//! Burn 0.22.1's exact GELU on flex calls a scalar `erff` whose cost grows
//! with |x|: 7 ms for a [4096, 512] tensor of standard deviation 0.1, 17 ms
//! at 1, 38 ms at 3 (`cargo run --release --example gelu_speed`), and
//! pre-activations spread as the model trains, so the exact GELU made each
//! step slower than the one before (20% over 600 steps). Burn's own
//! `gelu_approximate` uses `tanh`, which is slower still. The sigmoid form
//! costs about 8 ms whatever the values. `--gelu exact` keeps Burn's.

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::{
    MhaInput, MultiHeadAttention, MultiHeadAttentionConfig, generate_autoregressive_mask,
};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gelu, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor};
use burn_norm::{LayerNormConfig, Normalization, RmsNormConfig};

/// Which normalization goes where.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `x + f(LN(x))`, as in GPT-2 and most models since: the residual path
    /// stays an identity, plus one final LayerNorm before the head.
    Pre,
    /// `LN(x + f(x))`, as in the original Transformer (Vaswani et al., 2017).
    Post,
    /// `x + f(RMSNorm(x))` and a final RMSNorm, as in Llama: pre-norm with
    /// RMSNorm (no centering, no shift) in place of LayerNorm.
    Rms,
    /// No normalization at all.
    None,
}

impl Placement {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "pre" => Ok(Self::Pre),
            "post" => Ok(Self::Post),
            "rms" => Ok(Self::Rms),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown --norm `{other}`: expected pre, post, rms or none"
            )),
        }
    }

    /// The layer this placement puts in a block of width `d`, if any.
    fn layer(self, d: usize, device: &Device) -> Option<Normalization> {
        match self {
            Self::Pre | Self::Post => Some(LayerNormConfig::new(d).into()),
            Self::Rms => Some(RmsNormConfig::new(d).into()),
            Self::None => None,
        }
        .map(|config: burn_norm::NormalizationConfig| config.init(device))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pre => "pre-LN",
            Self::Post => "post-LN",
            Self::Rms => "pre-RMS",
            Self::None => "no-norm",
        }
    }
}

/// The MLP's activation; see the module docs.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum GeluKind {
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, through a sigmoid.
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt(2)))`, Burn's `Gelu`.
    Exact,
}

impl GeluKind {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "tanh" => Ok(Self::Tanh),
            "exact" => Ok(Self::Exact),
            other => Err(format!("unknown --gelu `{other}`: expected tanh or exact")),
        }
    }

    fn apply(self, gelu: &Gelu, x: Tensor<3>) -> Tensor<3> {
        match self {
            // tanh(z) = 2 sigmoid(2z) - 1, so 0.5 x (1 + tanh(z)) = x sigmoid(2z).
            Self::Tanh => {
                let z = (x.clone() * x.clone() * x.clone() * 0.044715 + x.clone()) * 1.595_769_1;
                x * sigmoid(z)
            }
            Self::Exact => gelu.forward(x),
        }
    }
}

#[derive(Config, Debug)]
pub struct CharTransformerConfig {
    /// Number of distinct characters.
    pub vocab_size: usize,
    /// Longest sequence the position embedding covers.
    #[config(default = 128)]
    pub context: usize,
    #[config(default = 128)]
    pub d_model: usize,
    #[config(default = 4)]
    pub n_layers: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    /// Hidden width of the MLP as a multiple of `d_model`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    #[config(default = 0.0)]
    pub dropout: f64,
    #[config(default = "Placement::Pre")]
    pub norm: Placement,
    #[config(default = "GeluKind::Tanh")]
    pub gelu: GeluKind,
}

/// One block: causal self-attention, then the MLP, each with a residual
/// connection and (depending on [`Placement`]) a LayerNorm.
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: Option<Normalization>,
    attn: MultiHeadAttention,
    mlp_norm: Option<Normalization>,
    fc: Linear,
    gelu: Gelu,
    proj: Linear,
    dropout: Dropout,
    #[module(skip)]
    placement: Placement,
    #[module(skip)]
    gelu_kind: GeluKind,
}

impl Block {
    fn new(config: &CharTransformerConfig, device: &Device) -> Self {
        let norm = || config.norm.layer(config.d_model, device);
        let d = config.d_model;
        Self {
            attn_norm: norm(),
            // Masked scores as -inf rather than Burn's default -1e4: the
            // weights are the same zeros, but flex's `exp` takes glibc's
            // slow underflow path for every masked score at -1e4 (about
            // three times an ordinary value's time, `examples/exp_speed.rs`).
            attn: MultiHeadAttentionConfig::new(d, config.n_heads)
                .with_dropout(config.dropout)
                .with_min_float(f64::NEG_INFINITY)
                .init(device),
            mlp_norm: norm(),
            fc: LinearConfig::new(d, config.mlp_ratio * d).init(device),
            gelu: Gelu::new(),
            proj: LinearConfig::new(config.mlp_ratio * d, d).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            placement: config.norm,
            gelu_kind: config.gelu,
        }
    }

    /// `[B, T, d_model]` -> `[B, T, d_model]`; `mask` is `[B, T, T]`, true
    /// where a position must not attend (the future).
    fn forward(&self, x: Tensor<3>, mask: Tensor<3, burn::tensor::Bool>) -> Tensor<3> {
        let norm = |ln: &Option<Normalization>, x: Tensor<3>| match ln {
            Some(ln) => ln.forward(x),
            None => x,
        };
        let attn = |x: Tensor<3>| {
            let out = self
                .attn
                .forward(MhaInput::self_attn(x).mask_attn(mask.clone()))
                .context;
            self.dropout.forward(out)
        };
        let mlp = |x: Tensor<3>| {
            self.dropout.forward(
                self.proj
                    .forward(self.gelu_kind.apply(&self.gelu, self.fc.forward(x))),
            )
        };
        match self.placement {
            Placement::Pre | Placement::Rms => {
                let x = x.clone() + attn(norm(&self.attn_norm, x));
                x.clone() + mlp(norm(&self.mlp_norm, x))
            }
            Placement::Post => {
                let x = norm(&self.attn_norm, x.clone() + attn(x));
                norm(&self.mlp_norm, x.clone() + mlp(x))
            }
            Placement::None => {
                let x = x.clone() + attn(x);
                x.clone() + mlp(x)
            }
        }
    }
}

/// Character-level language model: tokens `[B, T]` -> logits `[B, T, vocab]`.
#[derive(Module, Debug)]
pub struct CharTransformer {
    token: Embedding,
    position: Embedding,
    dropout: Dropout,
    blocks: Vec<Block>,
    /// Pre-norm ends with a normalization (the residual stream is never
    /// normalized otherwise); post-LN's last block already ends with one.
    final_norm: Option<Normalization>,
    head: Linear,
    #[module(skip)]
    context: usize,
}

impl CharTransformerConfig {
    pub fn init(&self, device: &Device) -> CharTransformer {
        CharTransformer {
            token: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            position: EmbeddingConfig::new(self.context, self.d_model).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            blocks: (0..self.n_layers)
                .map(|_| Block::new(self, device))
                .collect(),
            final_norm: matches!(self.norm, Placement::Pre | Placement::Rms)
                .then(|| self.norm.layer(self.d_model, device))
                .flatten(),
            head: LinearConfig::new(self.d_model, self.vocab_size).init(device),
            context: self.context,
        }
    }
}

impl CharTransformer {
    /// Longest input [`forward`](Self::forward) accepts.
    pub fn context(&self) -> usize {
        self.context
    }

    /// `[B, T]` token ids (T <= context) -> logits `[B, T, vocab]`; position
    /// `t` sees tokens `0..=t` only.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, len] = tokens.dims();
        assert!(
            len <= self.context,
            "sequence of {len} tokens is longer than the context of {}",
            self.context
        );
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let mut x = self
            .dropout
            .forward(self.token.forward(tokens) + self.position.forward(positions));
        let mask = generate_autoregressive_mask(batch, len, &device);
        for block in &self.blocks {
            x = block.forward(x, mask.clone());
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(x);
        }
        self.head.forward(x)
    }
}
