//! The training skeleton both examples share: the runs of a comparison,
//! one optimizer step with its divergence check, and the progress of a run
//! (bar, windowed loss, throughput since the start and since the last
//! report). Each example brings its data, its model and its evaluation.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where each run of a comparison writes: `out/<name>` when there are
/// several runs, `out` itself for one.
pub fn run_dirs<K: Copy>(out: &Path, runs: &[(&'static str, K)]) -> Vec<PathBuf> {
    runs.iter()
        .map(|(name, _)| {
            if runs.len() > 1 {
                out.join(name)
            } else {
                out.to_path_buf()
            }
        })
        .collect()
}

/// One optimizer step on `loss`. A loss that is not finite is reported as
/// `Err(value)` and no step is taken (the caller stops the run rather than
/// train on NaN).
pub fn optimizer_step<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    loss: Tensor<1>,
    lr: f64,
) -> Result<(M, f64), (M, f64)> {
    let value = loss.clone().into_scalar::<f64>();
    if !value.is_finite() {
        return Err((model, value));
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    Ok((optim.step(lr, model, grads), value))
}

/// A run's progress: the bar, the mean loss since the last report, and the
/// throughput since the start and over an interval of steps (their training
/// time only: what the caller spends between steps, validating say, is not
/// counted).
pub struct Progress {
    bar: ProgressBar,
    /// What a step's items are (images, tokens).
    unit: &'static str,
    start: Instant,
    items: usize,
    /// The steps since the last [`report`](Self::report).
    window: Window,
    /// The steps since the last [`interval`](Self::interval).
    since: Window,
}

/// Some consecutive steps.
#[derive(Default)]
struct Window {
    loss: f64,
    steps: usize,
    items: usize,
    time: Duration,
}

impl Window {
    fn add(&mut self, loss: f64, items: usize, took: Duration) {
        self.loss += loss;
        self.steps += 1;
        self.items += items;
        self.time += took;
    }

    /// Items per second of training time.
    fn rate(&self) -> f64 {
        self.items as f64 / self.time.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// What [`Progress::report`] hands back and starts afresh.
#[allow(dead_code)] // Not every example reads every figure.
pub struct Report {
    /// Mean training loss of the steps since the last report.
    pub train_loss: f64,
    /// Items per second since the start (wall time, everything included).
    pub rate: f64,
    /// Seconds since the start.
    pub wall_s: f64,
}

/// What [`Progress::interval`] hands back and starts afresh.
#[allow(dead_code)] // Not every example measures intervals.
pub struct Interval {
    /// Steps since the last interval.
    pub steps: usize,
    /// Items per second over those steps' training time.
    pub rate: f64,
}

impl Progress {
    /// A bar of `len` steps, labelled `prefix`, counting `unit`s.
    pub fn new(len: usize, prefix: String, unit: &'static str) -> Self {
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        Progress {
            bar,
            unit,
            start: Instant::now(),
            items: 0,
            window: Window::default(),
            since: Window::default(),
        }
    }

    /// Records one step of `items` items that took `took` and ended at
    /// `loss`, and shows it on the bar.
    pub fn step(&mut self, loss: f64, items: usize, took: Duration) {
        self.items += items;
        self.window.add(loss, items, took);
        self.since.add(loss, items, took);
        self.bar.inc(1);
        self.bar.set_message(format!(
            "loss {loss:.4} | {:.0} {}/s",
            self.rate(),
            self.unit
        ));
    }

    /// Items per second since the start.
    pub fn rate(&self) -> f64 {
        self.items as f64 / self.start.elapsed().as_secs_f64()
    }

    /// Seconds since the start.
    pub fn wall_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The figures since the last report; the next report starts afresh.
    pub fn report(&mut self) -> Report {
        let window = std::mem::take(&mut self.window);
        Report {
            train_loss: window.loss / window.steps.max(1) as f64,
            rate: self.rate(),
            wall_s: self.wall_s(),
        }
    }

    /// The throughput since the last interval; the next starts afresh.
    #[allow(dead_code)] // Not every example measures intervals.
    pub fn interval(&mut self) -> Interval {
        let since = std::mem::take(&mut self.since);
        Interval {
            steps: since.steps,
            rate: since.rate(),
        }
    }

    /// Prints `line` above the bar.
    pub fn println(&self, line: String) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// Removes the bar (the run's summary lines follow).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
