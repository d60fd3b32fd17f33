//! The char transformer example's command line.

use crate::model::{GeluKind, Placement};
use clap::{CommandFactory, Parser, error::ErrorKind};
use std::path::PathBuf;

/// Train a small character-level transformer on Tiny Shakespeare with
/// burn-norm's LayerNorm (or RMSNorm), and show what the normalization buys.
#[derive(Parser, Debug)]
#[command(name = "charlm")]
pub struct Args {
    /// Backend: flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// pre-LN, post-LN, pre-RMSNorm (Llama) or none: pre, post, rms, none.
    #[arg(long, default_value = "pre", value_parser = Placement::parse)]
    pub norm: Placement,
    /// The MLP's GELU: PyTorch's tanh approximation, or the exact erf form
    /// (slower on flex as training goes on; see model.rs): tanh, exact.
    #[arg(long, default_value = "tanh", value_parser = GeluKind::parse)]
    pub gelu: GeluKind,
    /// Train pre-LN, pre-RMS, post-LN and no-norm alike, one chart.
    #[arg(long, conflicts_with = "norm")]
    pub compare: bool,
    /// Optimizer steps [default: 1000; 500 with --compare; 20 with --smoke].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Characters per sequence.
    #[arg(long, default_value_t = 128)]
    pub context: usize,
    /// Width.
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Peak AdamW learning rate [default: 0.003; 0.01 with --compare].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip each parameter's gradient to this norm; 0 = off.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Validate every N steps.
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Windows for periodic validation (the final validation covers the
    /// whole split).
    #[arg(long, default_value_t = 64)]
    pub eval_windows: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Any UTF-8 text [default: Tiny Shakespeare, see the README].
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Outputs.
    #[arg(long, default_value = "out/charlm")]
    pub out: PathBuf,
    /// Tiny model, 20 steps on a slice of the text (for CI).
    #[arg(long)]
    pub smoke: bool,
    /// Load the model in --out and sample N characters.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Start of the sample.
    #[arg(long, default_value = "\n", hide_default_value = true)]
    pub prompt: String,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the N likeliest characters; 0 = all.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Redraw DIR's chart from its metrics.csv, no training.
    #[arg(long, value_name = "DIR")]
    pub replot: Option<PathBuf>,
}

/// Parses the command line and applies `--smoke`'s sizes; on `--help` or a
/// bad option prints clap's message and exits.
pub fn parse() -> Args {
    let mut args = Args::parse();
    let fail = |message: String| -> ! {
        Args::command()
            .error(ErrorKind::ValueValidation, message)
            .exit()
    };
    if args.smoke {
        (
            args.d_model,
            args.layers,
            args.heads,
            args.context,
            args.batch_size,
        ) = (32, 2, 2, 32, 8);
        args.steps.get_or_insert(20);
        (args.warmup, args.eval_every, args.eval_windows) = (5, 10, 8);
    }
    let positive = [
        ("--steps", args.steps.unwrap_or(1)),
        ("--batch-size", args.batch_size),
        ("--context", args.context),
        ("--d-model", args.d_model),
        ("--layers", args.layers),
        ("--heads", args.heads),
        ("--eval-every", args.eval_every),
        ("--eval-windows", args.eval_windows),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        fail(format!("{flag} must be at least 1"));
    }
    if !args.d_model.is_multiple_of(args.heads) {
        fail(format!(
            "--d-model {} is not a multiple of --heads {}",
            args.d_model, args.heads
        ));
    }
    if !(0.0..1.0).contains(&args.dropout)
        || args.lr.is_some_and(|lr| !is_positive(lr))
        || args.clip < 0.0
        || !is_positive(args.temperature)
    {
        fail("--dropout must be in [0, 1), --lr and --temperature > 0, --clip >= 0".into());
    }
    args
}

/// Whether `v > 0`: false for NaN, which the option checks must reject.
fn is_positive(v: f64) -> bool {
    v > 0.0
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }
}
