//! Train a small character-level transformer on Tiny Shakespeare with
//! burn-norm's LayerNorm (or RMSNorm), and show what the normalization buys.
//!
//! ```sh
//! cargo run --release --example charlm                         # default run (pre-LN)
//! cargo run --release --example charlm -- --compare            # pre-LN vs pre-RMS vs post-LN vs none
//! cargo run --release --example charlm -- --generate 500 --prompt "ROMEO:"
//! cargo run --release --example charlm -- --smoke              # tiny model, a few steps
//! cargo run --release --example charlm -- --help
//! ```
//!
//! The model, its configuration, the vocabulary, `metrics.csv` and
//! `chart.png` go to `--out` (default `out/charlm`); the record reloaded from
//! disk is checked to give the same validation loss.
//!
//! `cli.rs` is the command line, `train.rs` the training loop (on the
//! skeleton the examples share, `../common/training.rs`), `sample.rs` the
//! text generation, `report.rs` the metrics file, the chart and the table.

#[path = "../common/chart.rs"]
mod chart;
mod cli;
mod data;
#[path = "../common/device.rs"]
mod device;
#[path = "../common/download.rs"]
mod download;
mod model;
mod report;
mod sample;
mod train;
#[path = "../common/train.rs"]
mod train_helpers;
#[path = "../common/training.rs"]
mod training;

use data::Corpus;
use model::Placement;

fn run() -> Result<(), String> {
    let args = cli::parse();
    if let Some(dir) = &args.replot {
        let rows = report::read_csv(&dir.join("metrics.csv"))?;
        let chart = dir.join("chart.png");
        // The uniform guess for Tiny Shakespeare's 65 characters.
        report::draw_chart(
            &chart,
            &format!(
                "char transformer, Tiny Shakespeare, {} backend",
                args.device
            ),
            &rows,
            65f64.ln(),
        )?;
        println!("redrew {}", chart.display());
        return Ok(());
    }
    let device = device::device_named(&args.device)?;
    if let Some(n) = args.generate {
        let (model, vocab) = train::load_model(&args.out, &device)?;
        let text = sample::generate(
            &model,
            &vocab,
            &args.prompt,
            n,
            args.temperature,
            args.top_k,
            args.seed,
            &device,
        )?;
        println!("{}{text}", args.prompt);
        return Ok(());
    }

    let (mut text, source) = data::load(args.data.as_deref())?;
    if args.smoke {
        // A slice keeps the smoke run's validation cheap.
        text = text.chars().take(40_000).collect();
    }
    let corpus = Corpus::new(&source.display().to_string(), &text, args.context)?;
    println!(
        "{} characters from {} ({} distinct): {} for training, {} for validation",
        corpus.train.len() + corpus.valid.len(),
        source.display(),
        corpus.vocab.len(),
        corpus.train.len(),
        corpus.valid.len()
    );
    let kinds = if args.compare {
        vec![
            Placement::Pre,
            Placement::Rms,
            Placement::Post,
            Placement::None,
        ]
    } else {
        vec![args.norm]
    };
    let runs: Vec<(&str, Placement)> = kinds.into_iter().map(|k| (k.name(), k)).collect();
    let mut rows = Vec::new();
    let mut outcomes = Vec::new();
    for ((name, norm), out) in runs.iter().zip(training::run_dirs(&args.out, &runs)) {
        let outcome = train::train(name, *norm, &args, &corpus, &device, &out, &mut rows)?;
        outcomes.push((*name, outcome));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let csv = args.out.join("metrics.csv");
    report::write_csv(&csv, &rows)?;
    let chart = args.out.join("chart.png");
    let lr = rows.iter().map(|r| r.lr).fold(0.0, f64::max);
    let title = format!(
        "char transformer, {} blocks x {}, {} backend, peak lr {lr}",
        args.layers, args.d_model, args.device
    );
    report::draw_chart(&chart, &title, &rows, (corpus.vocab.len() as f64).ln())?;
    report::print_table(&outcomes);
    println!("\nwrote {} and {}", csv.display(), chart.display());

    // Show what the (first) trained model learned, from the saved files.
    let dir = if args.compare {
        args.out.join(Placement::Pre.name())
    } else {
        args.out.clone()
    };
    let (model, vocab) = train::load_model(&dir, &device)?;
    let n = if args.smoke { 60 } else { 400 };
    // A corpus of one's own may lack the default prompt's newline.
    let prompt = if vocab.encode(&args.prompt).is_ok() {
        args.prompt.clone()
    } else {
        vocab.decode(&corpus.train[..1])
    };
    let sample = sample::generate(
        &model,
        &vocab,
        &prompt,
        n,
        args.temperature,
        args.top_k,
        args.seed,
        &device,
    )?;
    println!(
        "\nsample from {} (temperature {}, prompt {prompt:?}):\n{prompt}{sample}",
        dir.display(),
        args.temperature
    );
    Ok(())
}

fn main() {
    device::keep_freed_memory();
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
