//! Train a CNN on MNIST with burn-norm's BatchNorm, and show what it buys.
//!
//! ```sh
//! cargo run --release --example mnist                      # the default run
//! cargo run --release --example mnist -- --compare         # BatchNorm vs none, one chart
//! cargo run --release --example mnist -- --limit 512       # smoke run (1 epoch)
//! cargo run --release --example mnist -- --help
//! ```
//!
//! Blocks of conv3x3 -> BatchNorm -> ReLU, then a classifier; evaluation on
//! the 10,000 test images with the running statistics (`.valid()`). Writes the
//! model record, `metrics.csv` and `chart.png` into `--out` (default
//! `out/mnist`), and checks that the record reloaded from disk scores the
//! same test accuracy.
//!
//! `cli.rs` is the command line, `train.rs` the training loop (on the
//! skeleton the examples share, `../common/training.rs`), `report.rs` the
//! metrics file, the chart and the table.

#[path = "../common/chart.rs"]
mod chart;
mod cli;
mod data;
#[path = "../common/device.rs"]
mod device;
#[path = "../common/download.rs"]
mod download;
mod inputs;
mod model;
mod report;
mod train;
#[path = "../common/train.rs"]
mod train_helpers;
#[path = "../common/training.rs"]
mod training;

use cli::Args;
use data::Mnist;
use model::NormKind;
use std::path::Path;

/// Redraws the chart of an earlier run from its `metrics.csv`.
fn replot(dir: &Path, args: &Args) -> Result<(), String> {
    let rows = report::read_csv(&dir.join("metrics.csv"))?;
    let compare = rows.iter().any(|r| r.run != rows[0].run);
    let chart = dir.join(if compare { "compare.png" } else { "chart.png" });
    let lr = rows.iter().map(|r| r.lr).fold(0.0, f64::max);
    report::draw_chart(
        &chart,
        &format!("MNIST CNN, {} backend, peak lr {lr:.3}", args.device),
        &rows,
    )?;
    println!("redrew {}", chart.display());
    Ok(())
}

fn run() -> Result<(), String> {
    let args = cli::parse();
    if let Some(dir) = &args.replot {
        return replot(dir, &args);
    }
    let device = device::device_named(&args.device)?;
    let mut data = data::load(args.data_dir.as_deref())?;
    if let Some(limit) = args.limit {
        data = Mnist {
            train: data.train.truncate(limit),
            test: data.test.truncate(limit),
        };
    }
    let scaler = inputs::fit_scaler(&data.train)?;
    println!(
        "{} training / {} test images; pixels scaled to [0, 1], then standardized (StandardScaler) with the training set's mean {:.4} and std {:.4}",
        data.train.len(),
        data.test.len(),
        scaler.mean().expect("fitted")[0],
        scaler.scale().expect("fitted")[0]
    );
    let kinds: Vec<NormKind> = if args.compare {
        vec![NormKind::Batch, NormKind::None]
    } else if args.compare_small {
        vec![NormKind::Batch, NormKind::Renorm, NormKind::Group]
    } else {
        vec![args.norm]
    };
    let runs: Vec<(&str, NormKind)> = kinds.into_iter().map(|k| (k.name(), k)).collect();
    let mut rows = Vec::new();
    let mut outcomes = Vec::new();
    for ((name, norm), out) in runs.iter().zip(training::run_dirs(&args.out, &runs)) {
        let outcome = train::train(name, *norm, &args, &data, &scaler, &device, &out, &mut rows)?;
        outcomes.push((*name, outcome));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let csv = args.out.join("metrics.csv");
    report::write_csv(&csv, &rows).map_err(|e| format!("{}: {e}", csv.display()))?;
    let chart = args.out.join(if runs.len() > 1 {
        "compare.png"
    } else {
        "chart.png"
    });
    let title = format!("MNIST CNN, {} backend, peak lr {}", args.device, args.lr);
    report::draw_chart(&chart, &title, &rows)?;
    report::print_table(&outcomes);
    println!("\nwrote {} and {}", csv.display(), chart.display());
    Ok(())
}

fn main() {
    device::keep_freed_memory();
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
