//! The training loop of one run, its evaluation, and the checks after it
//! (the saved record reloads to the same accuracy; the folded BatchNorms
//! change nothing).

use crate::cli::Args;
use crate::data::{Mnist, Split};
use crate::inputs::batch;
use crate::model::{Cnn, CnnConfig, NormKind};
use crate::report::Row;
use crate::train_helpers::{Rng, warmup_cosine};
use crate::training::{Progress, optimizer_step};
use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamConfig;
use burn::tensor::Device;
use burn_norm::scaler::StandardScaler;
use std::path::Path;
use std::time::Instant;

/// Test loss and accuracy (%) of the model in evaluation mode.
pub fn evaluate(
    model: &Cnn,
    test: &Split,
    scaling: &StandardScaler,
    device: &Device,
) -> (f64, f64) {
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
    warmup_cosine(peak, 0.0, step, total, total / 20)
}

pub struct Outcome {
    pub test_acc: f64,
    pub test_loss: f64,
    pub wall_s: f64,
    pub images_per_s: f64,
}

#[allow(clippy::too_many_arguments)]
pub fn train(
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

    let mut diverged = false;
    for epoch in 1..=epochs {
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut progress =
            Progress::new(per_epoch, format!("[{run}] epoch {epoch}/{epochs}"), "img");
        let (mut epoch_loss, mut epoch_correct, mut epoch_seen) = (0.0, 0usize, 0usize);
        for idx in order.chunks(args.batch_size) {
            if idx.len() < 2 {
                continue; // BatchNorm needs two values per channel.
            }
            let step_start = Instant::now();
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
            let loss_value;
            (model, loss_value) = match optimizer_step(model, &mut optim, loss, lr) {
                Ok(stepped) => stepped,
                Err((unchanged, value)) => {
                    progress.println(format!(
                        "[{run}] step {}: loss is {value}; the run diverged, stopping it",
                        step + 1
                    ));
                    diverged = true;
                    model = unchanged;
                    break;
                }
            };
            step += 1;
            seen += idx.len();
            epoch_seen += idx.len();
            epoch_loss += loss_value * idx.len() as f64;
            epoch_correct += correct.into_scalar::<i64>() as usize;
            progress.step(loss_value, idx.len(), step_start.elapsed());
            if step % 50 == 0 || step == total {
                let report = progress.report();
                rows.push(Row {
                    run: run.into(),
                    kind: "step",
                    epoch,
                    step,
                    lr,
                    train_loss: report.train_loss,
                    train_acc: None,
                    test_loss: None,
                    test_acc: None,
                    images_per_s: report.rate,
                    wall_s: start.elapsed().as_secs_f64(),
                });
            }
        }
        progress.finish();
        if diverged {
            break;
        }
        let rate = progress.rate();
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
