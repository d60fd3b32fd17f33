//! The MNIST example's command line.

use crate::model::NormKind;
use clap::{CommandFactory, Parser, error::ErrorKind};
use std::path::PathBuf;

/// Train a CNN on MNIST with burn-norm's BatchNorm, and show what it buys.
#[derive(Parser, Debug)]
#[command(name = "mnist")]
struct Cli {
    /// Backend: flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    device: String,
    /// Training epochs [default: 4; 1 with --limit].
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per step [default: 128; 4 with --compare-small].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate of Adam [default: 0.003; 0.001 with --compare-small].
    #[arg(long)]
    lr: Option<f64>,
    /// Channels of the first convolutions.
    #[arg(long, default_value_t = 16)]
    width: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The normalization: batch, renorm (Batch Renormalization), group
    /// (GroupNorm, 4 groups) or none.
    #[arg(long, default_value = "batch", value_parser = NormKind::parse)]
    norm: NormKind,
    /// The same as --norm none.
    #[arg(long, conflicts_with = "norm")]
    no_norm: bool,
    /// BatchNorm, BatchRenorm and GroupNorm at a small batch, one chart
    /// (defaults --batch-size 4, --limit 8192, --lr 0.001).
    #[arg(long, conflicts_with_all = ["compare", "norm", "no_norm"])]
    compare_small: bool,
    /// Train with and without BatchNorm, one chart.
    #[arg(long, conflicts_with_all = ["norm", "no_norm"])]
    compare: bool,
    /// No random shifts of the training images.
    #[arg(long)]
    no_augment: bool,
    /// Use only the first N training and test images.
    #[arg(long)]
    limit: Option<usize>,
    /// MNIST IDX files (.gz or raw); see the README.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Outputs.
    #[arg(long, default_value = "out/mnist")]
    out: PathBuf,
    /// Redraw DIR's chart from its metrics.csv, no training.
    #[arg(long, value_name = "DIR")]
    replot: Option<PathBuf>,
    /// Start from a PyTorch state_dict of this architecture (.pt or
    /// .safetensors, e.g. from examples/mnist/pytorch_reference.py) and
    /// evaluate it; --epochs 0 evaluates only.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["compare", "compare_small", "norm", "no_norm"])]
    init_from: Option<PathBuf>,
}

/// The settings a run uses: the command line with its defaults resolved.
pub struct Args {
    pub device: String,
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub lr: f64,
    pub width: usize,
    pub seed: u64,
    pub norm: NormKind,
    pub compare_small: bool,
    pub compare: bool,
    pub augment: bool,
    pub limit: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub out: PathBuf,
    pub replot: Option<PathBuf>,
    pub init_from: Option<PathBuf>,
}

/// Parses the command line; on `--help` or a bad option prints clap's
/// message and exits.
pub fn parse() -> Args {
    let cli = Cli::parse();
    let fail = |message: &str| -> ! {
        Cli::command()
            .error(ErrorKind::ValueValidation, message)
            .exit()
    };
    let small = cli.compare_small;
    let args = Args {
        device: cli.device,
        epochs: cli.epochs,
        batch_size: cli.batch_size.unwrap_or(if small { 4 } else { 128 }),
        lr: cli.lr.unwrap_or(if small { 1e-3 } else { 3e-3 }),
        width: cli.width,
        seed: cli.seed,
        norm: if cli.no_norm {
            NormKind::None
        } else {
            cli.norm
        },
        compare_small: small,
        compare: cli.compare,
        augment: !cli.no_augment,
        limit: cli.limit.or(small.then_some(8192)),
        data_dir: cli.data_dir,
        out: cli.out,
        replot: cli.replot,
        init_from: cli.init_from,
    };
    if args.batch_size < 2 {
        fail("--batch-size must be at least 2 (BatchNorm needs two values per channel)");
    }
    if args.limit == Some(0) {
        fail("--limit must be at least 1");
    }
    if args.lr.is_nan() || args.lr <= 0.0 {
        fail("--lr must be > 0");
    }
    if args.epochs == Some(0) && args.init_from.is_none() {
        fail("--epochs 0 needs --init-from (a model to evaluate)");
    }
    args
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
