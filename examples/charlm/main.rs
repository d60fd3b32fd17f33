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
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use data::{Corpus, Vocab};
use indicatif::{ProgressBar, ProgressStyle};
use model::{CharTransformer, CharTransformerConfig, GeluKind, Placement};
use report::Row;
use std::path::{Path, PathBuf};
use std::time::Instant;
use train_helpers::{Rng, warmup_cosine};

const USAGE: &str = "\
usage: charlm [options]
  --device flex|ndarray|wgpu   backend (default flex)
  --norm pre|post|rms|none     pre-LN, post-LN, pre-RMSNorm (Llama) or none (default pre)
  --gelu tanh|exact            the MLP's GELU: PyTorch's tanh approximation
                               (default), or the exact erf form (slower on flex
                               as training goes on; see model.rs)
  --compare                    train pre-LN, pre-RMS, post-LN and no-norm alike, one chart
  --steps N                    optimizer steps (default 1000; 500 with --compare)
  --batch-size N               sequences per step (default 32)
  --context N                  characters per sequence (default 128)
  --d-model N                  width (default 128)
  --layers N                   transformer blocks (default 4)
  --heads N                    attention heads (default 4)
  --dropout X                  (default 0)
  --lr X                       peak AdamW learning rate (default 0.003; 0.01 with --compare)
  --warmup N                   linear warm-up steps (default 100)
  --weight-decay X             AdamW decoupled weight decay (default 0.01)
  --clip X                     clip each parameter's gradient to norm X; 0 = off (default 1)
  --eval-every N               validate every N steps (default 100)
  --eval-windows N             windows for periodic validation (default 64; the
                               final validation covers the whole split)
  --seed N                     (default 42)
  --data FILE                  any UTF-8 text (default: Tiny Shakespeare, see README)
  --out DIR                    outputs (default out/charlm)
  --smoke                      tiny model, 20 steps on a slice of the text (for CI)
  --generate N                 load the model in --out and sample N characters
  --prompt TEXT                start of the sample (default: a newline)
  --temperature X              sampling temperature (default 0.8)
  --top-k N                    sample among the N likeliest characters; 0 = all (default 0)
  --replot DIR                 redraw DIR's chart from its metrics.csv, no training";

struct Args {
    device: String,
    norm: Placement,
    gelu: GeluKind,
    compare: bool,
    steps: Option<usize>,
    batch_size: usize,
    context: usize,
    d_model: usize,
    layers: usize,
    heads: usize,
    dropout: f64,
    lr: Option<f64>,
    warmup: usize,
    weight_decay: f64,
    clip: f64,
    eval_every: usize,
    eval_windows: usize,
    seed: u64,
    data: Option<PathBuf>,
    out: PathBuf,
    smoke: bool,
    generate: Option<usize>,
    prompt: String,
    temperature: f64,
    top_k: usize,
    replot: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: "flex".into(),
        norm: Placement::Pre,
        gelu: GeluKind::Tanh,
        compare: false,
        steps: None,
        batch_size: 32,
        context: 128,
        d_model: 128,
        layers: 4,
        heads: 4,
        dropout: 0.0,
        lr: None,
        warmup: 100,
        weight_decay: 0.01,
        clip: 1.0,
        eval_every: 100,
        eval_windows: 64,
        seed: 42,
        data: None,
        out: "out/charlm".into(),
        smoke: false,
        generate: None,
        prompt: "\n".into(),
        temperature: 0.8,
        top_k: 0,
        replot: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: `{v}` is not a valid number"))
        }
        match flag.as_str() {
            "--device" => args.device = value()?,
            "--norm" => args.norm = Placement::parse(&value()?)?,
            "--gelu" => args.gelu = GeluKind::parse(&value()?)?,
            "--compare" => args.compare = true,
            "--steps" => args.steps = Some(num(&flag, value()?)?),
            "--batch-size" => args.batch_size = num(&flag, value()?)?,
            "--context" => args.context = num(&flag, value()?)?,
            "--d-model" => args.d_model = num(&flag, value()?)?,
            "--layers" => args.layers = num(&flag, value()?)?,
            "--heads" => args.heads = num(&flag, value()?)?,
            "--dropout" => args.dropout = num(&flag, value()?)?,
            "--lr" => args.lr = Some(num(&flag, value()?)?),
            "--warmup" => args.warmup = num(&flag, value()?)?,
            "--weight-decay" => args.weight_decay = num(&flag, value()?)?,
            "--clip" => args.clip = num(&flag, value()?)?,
            "--eval-every" => args.eval_every = num(&flag, value()?)?,
            "--eval-windows" => args.eval_windows = num(&flag, value()?)?,
            "--seed" => args.seed = num(&flag, value()?)?,
            "--data" => args.data = Some(value()?.into()),
            "--out" => args.out = value()?.into(),
            "--smoke" => args.smoke = true,
            "--generate" => args.generate = Some(num(&flag, value()?)?),
            "--prompt" => args.prompt = value()?,
            "--temperature" => args.temperature = num(&flag, value()?)?,
            "--top-k" => args.top_k = num(&flag, value()?)?,
            "--replot" => args.replot = Some(value()?.into()),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
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
        return Err(format!("{flag} must be at least 1"));
    }
    if !args.d_model.is_multiple_of(args.heads) {
        return Err(format!(
            "--d-model {} is not a multiple of --heads {}",
            args.d_model, args.heads
        ));
    }
    if !(0.0..1.0).contains(&args.dropout)
        || args.lr.is_some_and(|lr| !is_positive(lr))
        || args.clip < 0.0
        || !is_positive(args.temperature)
    {
        return Err("--dropout must be in [0, 1), --lr and --temperature > 0, --clip >= 0".into());
    }
    Ok(args)
}

/// Inputs `[B, T]` and next-character targets `[B*T]` for the windows
/// starting at `starts`.
fn batch(
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
fn loss_of(
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
fn validation_starts(valid: &[usize], context: usize, limit: Option<usize>) -> Vec<usize> {
    let all: Vec<usize> = (0..valid.len().saturating_sub(context + 1) / context + 1)
        .map(|i| i * context)
        .collect();
    match limit {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n]).collect(),
        _ => all,
    }
}

/// Validation loss over `starts`, in evaluation mode.
fn evaluate(
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

struct Outcome {
    val_loss: f64,
    wall_s: f64,
    tokens_per_s: f64,
    diverged: bool,
}

fn train(
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

    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("[{run}]"));
    let start = Instant::now();
    let (mut window_loss, mut window_steps) = (0.0, 0usize);
    // Training time of the steps since the last validation (validation
    // excluded): the throughput now, where `rate` averages since the start.
    let mut recent = (0usize, std::time::Duration::ZERO);
    let mut diverged = false;
    for step in 1..=steps {
        let step_start = Instant::now();
        let starts: Vec<usize> = (0..args.batch_size)
            .map(|_| rng.below(corpus.train.len() - t))
            .collect();
        let loss = loss_of(&model, &corpus.train, &starts, t, &train_device);
        let loss_value = loss.clone().into_scalar::<f64>();
        let lr = warmup_cosine(peak_lr, peak_lr / 10.0, step - 1, steps, args.warmup);
        if !loss_value.is_finite() {
            // Keep the record of the failure rather than training on NaN.
            diverged = true;
            bar.suspend(|| {
                println!("[{run}] step {step}: loss is {loss_value}; the run diverged, stopping it")
            });
            rows.push(Row {
                run: run.into(),
                step,
                lr,
                train_loss: loss_value,
                val_loss: Some(loss_value),
                tokens_per_s: 0.0,
                wall_s: start.elapsed().as_secs_f64(),
            });
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        window_loss += loss_value;
        window_steps += 1;
        recent = (recent.0 + 1, recent.1 + step_start.elapsed());
        let rate = (step * args.batch_size * t) as f64 / start.elapsed().as_secs_f64();
        bar.inc(1);
        bar.set_message(format!("loss {loss_value:.3} | {rate:.0} tok/s"));
        let validate = step % args.eval_every == 0 || step == steps;
        if step % 10 == 0 || validate {
            let val_loss = validate
                .then(|| evaluate(&model.clone().valid(), &corpus.valid, &quick, t, device));
            if let Some(v) = val_loss {
                let recent_rate = (recent.0 * args.batch_size * t) as f64 / recent.1.as_secs_f64();
                bar.suspend(|| println!("[{run}] step {step}/{steps}: train {:.4} | val {v:.4} (quick, {} windows) | lr {lr:.2e} | {rate:.0} tok/s ({recent_rate:.0} over the last {} steps)", window_loss / window_steps as f64, quick.len(), recent.0));
                recent = (0, std::time::Duration::ZERO);
            }
            rows.push(Row {
                run: run.into(),
                step,
                lr,
                train_loss: window_loss / window_steps as f64,
                val_loss,
                tokens_per_s: rate,
                wall_s: start.elapsed().as_secs_f64(),
            });
            (window_loss, window_steps) = (0.0, 0);
        }
    }
    bar.finish_and_clear();
    let wall_s = start.elapsed().as_secs_f64();
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
fn load_model(dir: &Path, device: &Device) -> Result<(CharTransformer, Vocab), String> {
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

/// Whether `v > 0`: false for NaN, which the option checks must reject.
fn is_positive(v: f64) -> bool {
    v > 0.0
}

/// Samples `n` characters after `prompt`, one at a time, from the last
/// `context` characters: softmax(logits / temperature), optionally over the
/// `top_k` likeliest characters only.
#[allow(clippy::too_many_arguments)]
fn generate(
    model: &CharTransformer,
    vocab: &Vocab,
    prompt: &str,
    n: usize,
    temperature: f64,
    top_k: usize,
    seed: u64,
    device: &Device,
) -> Result<String, String> {
    let mut ids = vocab.encode(prompt).map_err(|e| format!("--prompt: {e}"))?;
    if ids.is_empty() {
        return Err("--prompt must not be empty".into());
    }
    let mut rng = Rng(seed);
    let start = ids.len();
    for _ in 0..n {
        let window = &ids[ids.len().saturating_sub(model.context())..];
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(
                window.iter().map(|&i| i as i64).collect(),
                [1, window.len()],
            ),
            device,
        );
        let logits: Vec<f32> = model
            .forward(input)
            .slice([0..1, window.len() - 1..window.len()])
            .into_data()
            .try_to_vec()
            .map_err(|e| format!("reading logits: {e:?}"))?;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if top_k > 0 {
            order.truncate(top_k);
        }
        let max = logits[order[0]] as f64;
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i] as f64 - max) / temperature).exp())
            .collect();
        let mut pick = rng.uniform() * weights.iter().sum::<f64>();
        let mut chosen = order[order.len() - 1];
        for (&i, w) in order.iter().zip(&weights) {
            if pick < *w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        ids.push(chosen);
    }
    Ok(vocab.decode(&ids[start..]))
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
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
        let (model, vocab) = load_model(&args.out, &device)?;
        let text = generate(
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
    let runs = if args.compare {
        vec![
            Placement::Pre,
            Placement::Rms,
            Placement::Post,
            Placement::None,
        ]
    } else {
        vec![args.norm]
    };
    let mut rows = Vec::new();
    let mut outcomes = Vec::new();
    for norm in runs {
        let out = if args.compare {
            args.out.join(norm.name())
        } else {
            args.out.clone()
        };
        outcomes.push((
            norm.name(),
            train(norm.name(), norm, &args, &corpus, &device, &out, &mut rows)?,
        ));
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

    println!("\n| run | validation loss (nats/char) | wall time | tokens/s |\n|---|---|---|---|");
    for (name, o) in &outcomes {
        let loss = if o.diverged {
            "diverged".to_string()
        } else {
            format!("{:.4}", o.val_loss)
        };
        println!(
            "| {name} | {loss} | {:.1} s | {:.0} |",
            o.wall_s, o.tokens_per_s
        );
    }
    println!("\nwrote {} and {}", csv.display(), chart.display());

    // Show what the (first) trained model learned, from the saved files.
    let dir = if args.compare {
        args.out.join(Placement::Pre.name())
    } else {
        args.out.clone()
    };
    let (model, vocab) = load_model(&dir, &device)?;
    let n = if args.smoke { 60 } else { 400 };
    // A corpus of one's own may lack the default prompt's newline.
    let prompt = if vocab.encode(&args.prompt).is_ok() {
        args.prompt.clone()
    } else {
        vocab.decode(&corpus.train[..1])
    };
    let sample = generate(
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
