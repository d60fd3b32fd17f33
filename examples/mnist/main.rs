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

#[path = "../common/chart.rs"]
mod chart;
mod data;
#[path = "../common/device.rs"]
mod device;
#[path = "../common/download.rs"]
mod download;
mod model;
mod report;
#[path = "../common/train.rs"]
mod train_helpers;

use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_norm::scaler::StandardScaler;
use data::{Mnist, PIXELS, SIDE, Split};
use indicatif::{ProgressBar, ProgressStyle};
use model::{Cnn, CnnConfig, NormKind};
use report::Row;
use std::path::{Path, PathBuf};
use std::time::Instant;
use train_helpers::Rng;

const USAGE: &str = "\
usage: mnist [options]
  --device flex|ndarray|wgpu   backend (default flex)
  --epochs N                   training epochs (default 4; 1 with --limit)
  --batch-size N               (default 128)
  --lr X                       peak learning rate of Adam (default 0.003)
  --width N                    channels of the first convolutions (default 16)
  --seed N                     (default 42)
  --norm batch|renorm|group|none
                               the normalization (default batch; renorm: Batch
                               Renormalization; group: GroupNorm, 4 groups)
  --no-norm                    the same as --norm none
  --compare-small              BatchNorm, BatchRenorm and GroupNorm at a small batch
                               (default --batch-size 4, --limit 8192, --lr 0.001), one chart
  --compare                    train with and without BatchNorm, one chart
  --no-augment                 no random shifts of the training images
  --limit N                    use only the first N training and test images
  --data-dir DIR               MNIST IDX files (.gz or raw); see README
  --out DIR                    outputs (default out/mnist)
  --replot DIR                 redraw DIR's chart from its metrics.csv, no training
  --init-from FILE             start from a PyTorch state_dict of this architecture (.pt or
                               .safetensors, e.g. from examples/mnist/pytorch_reference.py) and
                               evaluate it; --epochs 0 evaluates only";

struct Args {
    device: String,
    epochs: Option<usize>,
    batch_size: usize,
    lr: f64,
    width: usize,
    seed: u64,
    norm: NormKind,
    compare_small: bool,
    compare: bool,
    augment: bool,
    limit: Option<usize>,
    data_dir: Option<PathBuf>,
    out: PathBuf,
    replot: Option<PathBuf>,
    init_from: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: "flex".into(),
        epochs: None,
        batch_size: 128,
        lr: 3e-3,
        width: 16,
        seed: 42,
        norm: NormKind::Batch,
        compare_small: false,
        compare: false,
        augment: true,
        limit: None,
        data_dir: None,
        out: "out/mnist".into(),
        replot: None,
        init_from: None,
    };
    let mut it = std::env::args().skip(1);
    let mut given = Vec::new();
    while let Some(flag) = it.next() {
        given.push(flag.clone());
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: `{v}` is not a valid number"))
        }
        match flag.as_str() {
            "--device" => args.device = value()?,
            "--epochs" => args.epochs = Some(num(&flag, value()?)?),
            "--batch-size" => args.batch_size = num(&flag, value()?)?,
            "--lr" => args.lr = num(&flag, value()?)?,
            "--width" => args.width = num(&flag, value()?)?,
            "--seed" => args.seed = num(&flag, value()?)?,
            "--limit" => args.limit = Some(num(&flag, value()?)?),
            "--data-dir" => args.data_dir = Some(value()?.into()),
            "--out" => args.out = value()?.into(),
            "--replot" => args.replot = Some(value()?.into()),
            "--init-from" => args.init_from = Some(value()?.into()),
            "--no-norm" => args.norm = NormKind::None,
            "--norm" => args.norm = NormKind::parse(&value()?)?,
            "--compare-small" => args.compare_small = true,
            "--compare" => args.compare = true,
            "--no-augment" => args.augment = false,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    if args.compare_small {
        // The small-batch experiment's own defaults, where not given.
        let has = |f: &str| given.iter().any(|g| g == f);
        if !has("--batch-size") {
            args.batch_size = 4;
        }
        if !has("--lr") {
            args.lr = 1e-3;
        }
        if args.limit.is_none() {
            args.limit = Some(8192);
        }
    }
    if args.batch_size < 2 || args.limit == Some(0) {
        return Err("--batch-size must be >= 2, --limit >= 1".into());
    }
    if args.epochs == Some(0) && args.init_from.is_none() {
        return Err("--epochs 0 needs --init-from (a model to evaluate)".into());
    }
    if args.init_from.is_some()
        && (args.norm != NormKind::Batch || args.compare || args.compare_small)
    {
        return Err(
            "--init-from loads the BatchNorm network: not with another --norm or a comparison"
                .into(),
        );
    }
    Ok(args)
}

/// The input standardization, fitted on the training images (pixels / 255)
/// in batches: `burn_norm::scaler::StandardScaler` over the one channel, so
/// `x = (p / 255 - mean) / std` with the training set's mean and
/// (population) standard deviation. Saved with the model as `scaler.json`.
fn fit_scaler(train: &Split) -> Result<StandardScaler, String> {
    let mut scaler = StandardScaler::new(1);
    let device = Device::flex();
    let all: Vec<usize> = (0..train.len()).collect();
    for idx in all.chunks(10_000) {
        let pixels: Vec<f32> = idx
            .iter()
            .flat_map(|&i| &train.images[i * PIXELS..(i + 1) * PIXELS])
            .map(|&p| p as f32 / 255.0)
            .collect();
        let batch =
            Tensor::<4>::from_data(TensorData::new(pixels, [idx.len(), 1, SIDE, SIDE]), &device);
        scaler.partial_fit(&batch).map_err(|e| e.to_string())?;
    }
    Ok(scaler)
}

/// A batch of images `[B, 1, 28, 28]` (scaled, optionally shifted by up to 2
/// pixels) and labels `[B]`.
fn batch(
    split: &Split,
    idx: &[usize],
    scaling: &StandardScaler,
    rng: Option<&mut Rng>,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let mut pixels = Vec::with_capacity(idx.len() * PIXELS);
    let mut shifts = rng;
    for &i in idx {
        let image = &split.images[i * PIXELS..(i + 1) * PIXELS];
        let (dy, dx) = match shifts.as_deref_mut() {
            Some(rng) => (rng.below(5) as isize - 2, rng.below(5) as isize - 2),
            None => (0, 0),
        };
        for y in 0..SIDE as isize {
            for x in 0..SIDE as isize {
                let (sy, sx) = (y - dy, x - dx);
                let inside = (0..SIDE as isize).contains(&sy) && (0..SIDE as isize).contains(&sx);
                let p = if inside {
                    image[sy as usize * SIDE + sx as usize]
                } else {
                    0
                };
                pixels.push(p as f32 / 255.0);
            }
        }
    }
    let labels: Vec<i64> = idx.iter().map(|&i| split.labels[i] as i64).collect();
    let images = Tensor::from_data(TensorData::new(pixels, [idx.len(), 1, SIDE, SIDE]), device);
    (
        scaling
            .transform(images)
            .expect("the scaler was fitted on images of this shape"),
        Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
    )
}

/// Test loss and accuracy (%) of the model in evaluation mode.
fn evaluate(model: &Cnn, test: &Split, scaling: &StandardScaler, device: &Device) -> (f64, f64) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss, mut correct) = (0.0, 0usize);
    let all: Vec<usize> = (0..test.len()).collect();
    for idx in all.chunks(1000) {
        let (x, y) = batch(test, idx, scaling, None, device);
        let logits = model.forward(x);
        correct += logits
            .clone()
            .argmax(1)
            .flatten::<1>(0, 1)
            .equal(y.clone())
            .int()
            .sum()
            .into_scalar::<i64>() as usize;
        loss += loss_fn.forward(logits, y).into_scalar::<f64>() * idx.len() as f64;
    }
    (
        loss / test.len() as f64,
        100.0 * correct as f64 / test.len() as f64,
    )
}

/// Folds the evaluated model's BatchNorms into the layers before them and
/// reports what that changes: the logits (within 1e-5), the accuracy (the
/// same) and the evaluation throughput over the test set (best of three
/// alternating runs each).
fn report_folding(
    run: &str,
    model: &Cnn,
    test: &Split,
    scaling: &StandardScaler,
    device: &Device,
) -> Result<(), String> {
    let folded = model
        .clone()
        .fold_batch_norms()
        .map_err(|e| e.to_string())?;
    let idx: Vec<usize> = (0..test.len().min(1000)).collect();
    let (x, _) = batch(test, &idx, scaling, None, device);
    let (a, b) = (model.forward(x.clone()), folded.forward(x));
    let scale = a.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = (a - b).abs().max().into_scalar::<f32>() / scale;
    if diff > 1e-5 {
        return Err(format!(
            "folding changed the logits by {diff:.2e} of their largest value"
        ));
    }
    let mut rates = [Vec::new(), Vec::new()];
    let mut accuracy = [0.0; 2];
    for _ in 0..3 {
        for (i, m) in [model, &folded].into_iter().enumerate() {
            let start = Instant::now();
            accuracy[i] = evaluate(m, test, scaling, device).1;
            rates[i].push(test.len() as f64 / start.elapsed().as_secs_f64());
        }
    }
    let best = |r: &Vec<f64>| r.iter().copied().fold(0.0, f64::max);
    if accuracy[0] != accuracy[1] {
        return Err(format!(
            "folding changed the test accuracy: {:.2}% -> {:.2}%",
            accuracy[0], accuracy[1]
        ));
    }
    println!(
        "[{run}] BatchNorms folded into the layers before them: logits within {diff:.1e} (relative), test accuracy {:.2}% unchanged, evaluation {:.0} -> {:.0} img/s ({:.2}x)",
        accuracy[1],
        best(&rates[0]),
        best(&rates[1]),
        best(&rates[1]) / best(&rates[0]),
    );
    Ok(())
}

/// Linear warm-up over the first 5% of the steps, then cosine decay to zero.
fn learning_rate(peak: f64, step: usize, total: usize) -> f64 {
    train_helpers::warmup_cosine(peak, 0.0, step, total, total / 20)
}

struct Outcome {
    test_acc: f64,
    test_loss: f64,
    wall_s: f64,
    images_per_s: f64,
}

#[allow(clippy::too_many_arguments)]
fn train(
    run: &str,
    norm: NormKind,
    args: &Args,
    data: &Mnist,
    scaling: &StandardScaler,
    device: &Device,
    out: &Path,
    rows: &mut Vec<Row>,
) -> Result<Outcome, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let epochs = args
        .epochs
        .unwrap_or(if args.limit.is_some() { 1 } else { 4 });
    let train_device = device.clone().autodiff();
    train_device.seed(args.seed);
    let config = CnnConfig::new().with_width(args.width).with_norm(norm);
    let mut model = config.init(&train_device);
    if let Some(file) = &args.init_from {
        burn_norm::pytorch::load_pytorch(&mut model, file).map_err(|e| e.to_string())?;
        let (loss, acc) = evaluate(&model.valid(), &data.test, scaling, device);
        println!(
            "[{run}] loaded {}: test accuracy {acc:.2}%, test loss {loss:.4} (evaluation mode, before any training here)",
            file.display()
        );
    }
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let mut rng = Rng(args.seed);
    let n = data.train.len();
    let per_epoch = n.div_ceil(args.batch_size);
    let total = per_epoch * epochs;
    let start = Instant::now();
    let mut step = 0;
    let mut seen = 0usize;
    println!(
        "\n[{run}] {} parameters, {epochs} epochs of {per_epoch} steps, batch {}, peak lr {}",
        model.num_params(),
        args.batch_size,
        args.lr
    );

    for epoch in 1..=epochs {
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let bar = ProgressBar::new(per_epoch as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("[{run}] epoch {epoch}/{epochs}"));
        let epoch_start = Instant::now();
        let (mut epoch_loss, mut epoch_correct, mut epoch_seen) = (0.0, 0usize, 0usize);
        let (mut window_loss, mut window_steps) = (0.0, 0usize);
        for idx in order.chunks(args.batch_size) {
            if idx.len() < 2 {
                continue; // BatchNorm needs two values per channel.
            }
            let augment = args.augment.then_some(&mut rng);
            let (x, y) = batch(&data.train, idx, scaling, augment, &train_device);
            let logits = model.forward(x);
            let correct = logits
                .clone()
                .argmax(1)
                .flatten::<1>(0, 1)
                .equal(y.clone())
                .int()
                .sum();
            let loss = loss_fn.forward(logits, y);
            let lr = learning_rate(args.lr, step, total);
            let loss_value = loss.clone().into_scalar::<f64>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);

            step += 1;
            seen += idx.len();
            epoch_seen += idx.len();
            epoch_loss += loss_value * idx.len() as f64;
            epoch_correct += correct.into_scalar::<i64>() as usize;
            window_loss += loss_value;
            window_steps += 1;
            let rate = epoch_seen as f64 / epoch_start.elapsed().as_secs_f64();
            bar.inc(1);
            bar.set_message(format!("loss {loss_value:.4} | {rate:.0} img/s"));
            if step % 50 == 0 || step == total {
                rows.push(Row {
                    run: run.into(),
                    kind: "step",
                    epoch,
                    step,
                    lr,
                    train_loss: window_loss / window_steps as f64,
                    train_acc: None,
                    test_loss: None,
                    test_acc: None,
                    images_per_s: rate,
                    wall_s: start.elapsed().as_secs_f64(),
                });
                (window_loss, window_steps) = (0.0, 0);
            }
        }
        bar.finish_and_clear();
        let rate = epoch_seen as f64 / epoch_start.elapsed().as_secs_f64();
        let (test_loss, test_acc) = evaluate(&model.valid(), &data.test, scaling, device);
        let (train_loss, train_acc) = (
            epoch_loss / epoch_seen as f64,
            100.0 * epoch_correct as f64 / epoch_seen as f64,
        );
        println!(
            "[{run}] epoch {epoch}/{epochs}: train loss {train_loss:.4} acc {train_acc:.2}% | test loss {test_loss:.4} acc {test_acc:.2}% | {rate:.0} img/s | {:.1}s",
            start.elapsed().as_secs_f64()
        );
        rows.push(Row {
            run: run.into(),
            kind: "epoch",
            epoch,
            step,
            lr: learning_rate(args.lr, step.saturating_sub(1), total),
            train_loss,
            train_acc: Some(train_acc),
            test_loss: Some(test_loss),
            test_acc: Some(test_acc),
            images_per_s: rate,
            wall_s: start.elapsed().as_secs_f64(),
        });
    }
    let wall_s = start.elapsed().as_secs_f64();

    // Evaluation uses the running statistics; the record must reproduce it.
    let model = model.valid();
    let (test_loss, test_acc) = evaluate(&model, &data.test, scaling, device);
    let record = out.join("model");
    model
        .clone()
        .save_file(&record)
        .map_err(|e| format!("saving {}: {e}", record.display()))?;
    config
        .save(out.join("config.json"))
        .map_err(|e| format!("saving the config: {e}"))?;
    std::fs::write(
        out.join("scaler.json"),
        serde_json::to_string_pretty(scaling).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("saving the scaler: {e}"))?;
    let reloaded = config
        .init(device)
        .try_load_file(&record)
        .map_err(|e| format!("reloading {}: {e}", record.display()))?;
    let (_, reloaded_acc) = evaluate(&reloaded, &data.test, scaling, device);
    if reloaded_acc != test_acc {
        return Err(format!(
            "the reloaded record scores {reloaded_acc}% instead of {test_acc}%"
        ));
    }
    if config.norm == NormKind::Batch {
        report_folding(run, &model, &data.test, scaling, device)?;
    }
    println!(
        "[{run}] test accuracy {test_acc:.2}% (reloaded record: {reloaded_acc:.2}%, identical) | {wall_s:.1}s, {:.0} img/s | saved to {}",
        seen as f64 / wall_s,
        out.display()
    );
    Ok(Outcome {
        test_acc,
        test_loss,
        wall_s,
        images_per_s: seen as f64 / wall_s,
    })
}

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
    let args = parse_args()?;
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
    let scaler = fit_scaler(&data.train)?;
    let scaling = &scaler;
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
    for (name, norm) in &runs {
        let out = if args.compare || args.compare_small {
            args.out.join(name)
        } else {
            args.out.clone()
        };
        outcomes.push((
            *name,
            train(name, *norm, &args, &data, scaling, &device, &out, &mut rows)?,
        ));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let csv = args.out.join("metrics.csv");
    report::write_csv(&csv, &rows).map_err(|e| format!("{}: {e}", csv.display()))?;
    let chart = args.out.join(if args.compare || args.compare_small {
        "compare.png"
    } else {
        "chart.png"
    });
    let title = format!("MNIST CNN, {} backend, peak lr {}", args.device, args.lr);
    report::draw_chart(&chart, &title, &rows)?;
    println!("\n| run | test accuracy | test loss | wall time | images/s |\n|---|---|---|---|---|");
    for (name, o) in &outcomes {
        println!(
            "| {name} | {:.2}% | {:.4} | {:.1} s | {:.0} |",
            o.test_acc, o.test_loss, o.wall_s, o.images_per_s
        );
    }
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
