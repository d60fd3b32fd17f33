//! The training loop of one run, its validation, and the saved model
//! (reloaded and checked to give the same validation loss).

use crate::cli::Args;
use crate::data::{Corpus, Vocab};
use crate::model::{CharTransformer, CharTransformerConfig, Placement};
use crate::report::Row;
use crate::train_helpers::{Rng, warmup_cosine};
use crate::training::{Progress, optimizer_step};
use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamWConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::Path;
use std::time::Instant;

/// Inputs `[B, T]` and next-character targets `[B*T]` for the windows
/// starting at `starts`.
pub fn batch(
    tokens: &[usize],
    starts: &[usize],
    len: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let mut inputs = Vec::with_capacity(starts.len() * len);
    let mut targets = Vec::with_capacity(starts.len() * len);
    for &s in starts {
        inputs.extend(tokens[s..s + len].iter().map(|&t| t as i64));
        targets.extend(tokens[s + 1..s + len + 1].iter().map(|&t| t as i64));
    }
    (
        Tensor::from_data(TensorData::new(inputs, [starts.len(), len]), device),
        Tensor::from_data(TensorData::new(targets, [starts.len() * len]), device),
    )
}

/// Mean cross-entropy (nats/char) of `model` over the windows at `starts`.
pub fn loss_of(
    model: &CharTransformer,
    tokens: &[usize],
    starts: &[usize],
    len: usize,
    device: &Device,
) -> Tensor<1> {
    let (inputs, targets) = batch(tokens, starts, len, device);
    let logits = model.forward(inputs);
    let [b, t, v] = logits.dims();
    CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits.reshape([b * t, v]), targets)
}

/// Start offsets of the non-overlapping validation windows; `limit` picks
/// that many, evenly spread, for the quick periodic estimate.
pub fn validation_starts(valid: &[usize], context: usize, limit: Option<usize>) -> Vec<usize> {
    let all: Vec<usize> = (0..valid.len().saturating_sub(context + 1) / context + 1)
        .map(|i| i * context)
        .collect();
    match limit {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n]).collect(),
        _ => all,
    }
}

/// Validation loss over `starts`, in evaluation mode.
pub fn evaluate(
    model: &CharTransformer,
    valid: &[usize],
    starts: &[usize],
    context: usize,
    device: &Device,
) -> f64 {
    let mut total = 0.0;
    for chunk in starts.chunks(32) {
        total +=
            loss_of(model, valid, chunk, context, device).into_scalar::<f64>() * chunk.len() as f64;
    }
    total / starts.len() as f64
}

pub struct Outcome {
    pub val_loss: f64,
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub diverged: bool,
}

pub fn train(
    run: &str,
    norm: Placement,
    args: &Args,
    corpus: &Corpus,
    device: &Device,
    out: &Path,
    rows: &mut Vec<Row>,
) -> Result<Outcome, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let steps = args.steps.unwrap_or(if args.compare { 500 } else { 1000 });
    let peak_lr = args.lr.unwrap_or(if args.compare { 1e-2 } else { 3e-3 });
    let train_device = device.clone().autodiff();
    train_device.seed(args.seed);
    let config = CharTransformerConfig::new(corpus.vocab.len())
        .with_context(args.context)
        .with_d_model(args.d_model)
        .with_n_layers(args.layers)
        .with_n_heads(args.heads)
        .with_dropout(args.dropout)
        .with_norm(norm)
        .with_gelu(args.gelu);
    let mut model = config.init(&train_device);
    let clipping = (args.clip > 0.0).then_some(GradientClippingConfig::Norm(args.clip as f32));
    let mut optim = AdamWConfig::new()
        .with_beta_2(0.99)
        .with_weight_decay(args.weight_decay as f32)
        .with_grad_clipping(clipping)
        .init();
    let mut rng = Rng(args.seed);
    let t = args.context;
    let quick = validation_starts(&corpus.valid, t, Some(args.eval_windows));
    println!(
        "\n[{run}] {} parameters, {steps} steps of {} x {t} characters, peak lr {peak_lr}, {} blocks x {} wide",
        model.num_params(),
        args.batch_size,
        args.layers,
        args.d_model
    );

    let mut progress = Progress::new(steps, format!("[{run}]"), "tok");
    let tokens = args.batch_size * t;
    let mut diverged = false;
    for step in 1..=steps {
        let step_start = Instant::now();
        let starts: Vec<usize> = (0..args.batch_size)
            .map(|_| rng.below(corpus.train.len() - t))
            .collect();
        let loss = loss_of(&model, &corpus.train, &starts, t, &train_device);
        let lr = warmup_cosine(peak_lr, peak_lr / 10.0, step - 1, steps, args.warmup);
        let loss_value;
        (model, loss_value) = match optimizer_step(model, &mut optim, loss, lr) {
            Ok(stepped) => stepped,
            Err((unchanged, value)) => {
                // Keep the record of the failure rather than training on NaN.
                diverged = true;
                model = unchanged;
                progress.println(format!(
                    "[{run}] step {step}: loss is {value}; the run diverged, stopping it"
                ));
                rows.push(Row {
                    run: run.into(),
                    step,
                    lr,
                    train_loss: value,
                    val_loss: Some(value),
                    tokens_per_s: 0.0,
                    wall_s: progress.wall_s(),
                });
                break;
            }
        };
        progress.step(loss_value, tokens, step_start.elapsed());
        let validate = step % args.eval_every == 0 || step == steps;
        if step % 10 == 0 || validate {
            let report = progress.report();
            let val_loss = validate
                .then(|| evaluate(&model.clone().valid(), &corpus.valid, &quick, t, device));
            if let Some(v) = val_loss {
                // The throughput now: training time since the last
                // validation, where `rate` averages since the start.
                let recent = progress.interval();
                progress.println(format!(
                    "[{run}] step {step}/{steps}: train {:.4} | val {v:.4} (quick, {} windows) | lr {lr:.2e} | {:.0} tok/s ({:.0} over the last {} steps)",
                    report.train_loss,
                    quick.len(),
                    report.rate,
                    recent.rate,
                    recent.steps
                ));
            }
            rows.push(Row {
                run: run.into(),
                step,
                lr,
                train_loss: report.train_loss,
                val_loss,
                tokens_per_s: report.rate,
                wall_s: report.wall_s,
            });
        }
    }
    progress.finish();
    let wall_s = progress.wall_s();
    let tokens_per_s = rows.last().map_or(0.0, |r| r.tokens_per_s);

    let model = model.valid();
    let all = validation_starts(&corpus.valid, t, None);
    let val_loss = if diverged {
        f64::NAN
    } else {
        evaluate(&model, &corpus.valid, &all, t, device)
    };
    let record = out.join("model");
    model
        .save_file(&record)
        .map_err(|e| format!("saving {}: {e}", record.display()))?;
    config
        .save(out.join("config.json"))
        .map_err(|e| format!("saving the config: {e}"))?;
    corpus.vocab.save(&out.join("vocab.json"))?;
    if !diverged {
        let reloaded = load_model(out, device)?.0;
        let again = evaluate(&reloaded, &corpus.valid, &all, t, device);
        if again != val_loss {
            return Err(format!(
                "the reloaded record gives validation loss {again} instead of {val_loss}"
            ));
        }
    }
    println!(
        "[{run}] validation loss {val_loss:.4} nats/char over all {} windows ({} characters; reloaded record identical) | {wall_s:.1}s, {tokens_per_s:.0} tok/s | saved to {}",
        all.len(),
        all.len() * t,
        out.display()
    );
    Ok(Outcome {
        val_loss,
        wall_s,
        tokens_per_s,
        diverged,
    })
}

/// The model, its vocabulary and its configuration saved in `dir`.
pub fn load_model(dir: &Path, device: &Device) -> Result<(CharTransformer, Vocab), String> {
    let config_path = dir.join("config.json");
    let config = CharTransformerConfig::load(&config_path).map_err(|e| {
        format!(
            "{}: {e} (train a model first, or pass --out DIR of a trained one)",
            config_path.display()
        )
    })?;
    let vocab = Vocab::load(&dir.join("vocab.json"))?;
    if vocab.len() != config.vocab_size {
        return Err(format!(
            "{}: {} characters, but the model has {}",
            dir.join("vocab.json").display(),
            vocab.len(),
            config.vocab_size
        ));
    }
    let record = dir.join("model");
    let model = config
        .init(device)
        .try_load_file(&record)
        .map_err(|e| format!("loading {}: {e}", record.display()))?;
    Ok((model, vocab))
}
