//! Timing of burn-norm's layers against burn-nn's, forward and
//! forward + backward of `sum(y * g)`, f32.
//!
//! ```sh
//! cargo bench --bench norm                          # flex, CPU shapes
//! cargo bench --bench norm -- --device wgpu --large # GPU shapes
//! cargo bench --bench norm -- --json                # one JSON object per line
//! cargo bench --bench norm -- --chain 10            # 10 chained layers per wait
//! python3 benches/compare.py                        # this and PyTorch, with ratios
//! cargo bench --bench norm -- --device wgpu --probe # where a GPU forward's time goes
//! cargo bench --bench norm -- --device wgpu --probe-batch-norm  # BatchNorm's chains
//! cargo bench --bench norm -- --device wgpu --probe-host  # the host's cost alone
//! cargo bench --bench norm -- --long-groups         # also groups too long to hold
//! ```
//!
//! Prints the median of 20 timed runs after 3 warm-up runs.
//! `benches/torch_norm.py` times PyTorch on the same shapes with the same
//! harness; `docs/benchmarks.md` has the results. `BURN_NORM_COMPOSED=1`
//! turns burn-norm's fused kernels off (its composed path).

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::{Duration, Instant};

#[path = "../examples/common/device.rs"]
mod device;

#[path = "common/timing.rs"]
mod timing;
use timing::median;

/// One layer under test: its forward on the inference device (`valid`) and
/// on the autodiff device (`train`).
struct Layer<'a, const D: usize> {
    name: &'static str,
    valid: &'a dyn Fn(Tensor<D>) -> Tensor<D>,
    train: &'a dyn Fn(Tensor<D>) -> Tensor<D>,
    /// The training-mode forward timed alone: the layer with `no_grad()`
    /// parameters (PyTorch's `no_grad` forward). With tracked parameters,
    /// Burn 0.22.1 keeps each forward's saved input until a backward
    /// (`examples/autodiff_retention.rs`), and chained forwards then time
    /// the allocator.
    train_forward: &'a dyn Fn(Tensor<D>) -> Tensor<D>,
}

/// The identity "layer": what the harness itself costs (the wait for the
/// device; in the training step also the product `y * g`, the sum and its
/// backward).
fn identity<const D: usize>() -> Layer<'static, D> {
    fn same<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        x
    }
    Layer {
        name: "identity",
        valid: &same::<D>,
        train: &same::<D>,
        train_forward: &same::<D>,
    }
}

struct Bench {
    json: bool,
    /// `--chain K`: each timed call runs `K` layers in a chain (the output,
    /// or in the backward the input gradient, feeds the next) and waits for
    /// the device once; the time is divided by `K`. On a GPU this keeps the
    /// wait's latency (tens of microseconds, as long as the kernels
    /// themselves) out of the figure, and nothing is left unused for a lazy
    /// backend to skip.
    chain: usize,
    /// `--only TEXT`: run the cases whose name and shape contain TEXT.
    only: Option<String>,
}

impl Bench {
    /// Times each layer on a random `shape`: forward, then forward +
    /// backward of `sum(y * g)`. The forward is inference (plain device,
    /// `.valid()` module) unless `train_forward` (BatchNorm's training mode
    /// needs the autodiff device, Burn's rule). Each timed call ends by
    /// waiting for the device (`Device::sync`) with its result held.
    fn run<const D: usize>(
        &self,
        op: &str,
        device: &Device,
        shape: [usize; D],
        train_forward: bool,
        layers: &[Layer<D>],
    ) {
        let ad = device.clone().autodiff();
        let x = Tensor::<D>::random(shape, Distribution::Default, device);
        let g = Tensor::<D>::random(shape, Distribution::Default, &ad);
        // Each timed call ends by waiting for the device with the result
        // still held, so a lazy backend (fusion) has had to write it. No
        // reduction of the result is timed: that would be the framework's
        // own sum (burn-flex 0.22.1 sums [4096, 768] f32 on one thread in
        // 0.46-0.49 ms, PyTorch in 0.27-0.31), not the layer. An older
        // `let _ = ....into_data()` did not wait on wgpu at all.
        let sync = |t: Tensor<D>| {
            t.device()
                .sync()
                .expect("the device finishes the timed work");
            std::hint::black_box(t);
        };
        let shape_text = format!("{shape:?}");
        if self
            .only
            .as_ref()
            .is_some_and(|only| !format!("{op} {shape_text}").contains(only.as_str()))
        {
            return;
        }
        for layer in layers {
            if std::env::var("BENCH_IMPL").is_ok_and(|only| only != layer.name) {
                continue;
            }
            let chain = self.chain.max(1);
            let fwd = if train_forward {
                median(|| {
                    let mut y = x.clone().autodiff();
                    for _ in 0..chain {
                        y = (layer.train_forward)(y);
                    }
                    sync(y)
                })
            } else {
                median(|| {
                    let mut y = x.clone();
                    for _ in 0..chain {
                        y = (layer.valid)(y);
                    }
                    sync(y)
                })
            } / chain as u32;
            let bwd = median(|| {
                let mut input = x.clone();
                for _ in 0..chain {
                    let x = input.autodiff().require_grad();
                    let grads = ((layer.train)(x.clone()) * g.clone()).sum().backward();
                    input = x.grad(&grads).unwrap();
                }
                sync(input);
            }) / chain as u32;
            if self.json {
                println!(
                    "{{\"op\": \"{op}\", \"shape\": \"{shape_text}\", \"impl\": \"{}\", \"fwd_ms\": {:.4}, \"fwd_bwd_ms\": {:.4}}}",
                    layer.name,
                    ms(fwd),
                    ms(bwd)
                );
            } else {
                println!(
                    "{:<44} {:<10} fwd {:>9.3} ms   fwd+bwd {:>9.3} ms",
                    format!("{op} {shape_text}"),
                    layer.name,
                    ms(fwd),
                    ms(bwd)
                );
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times burn-norm's layer against burn-nn's on the same shape: `$ours` and
/// `$theirs` are built on the autodiff device `$ad`; the inference forward
/// uses their `.valid()` copies, the training passes the layers themselves;
/// the identity row times the harness.
macro_rules! versus {
    ($bench:expr, $device:expr, $op:expr, $shape:expr, $train_forward:expr,
     |$ad:ident| $ours:expr, $theirs:expr) => {{
        let $ad = $device.clone().autodiff();
        let (ours, theirs) = ($ours, $theirs);
        let (ours_valid, theirs_valid) = (ours.valid(), theirs.valid());
        let (ours_untracked, theirs_untracked) = (ours.clone().no_grad(), theirs.clone().no_grad());
        $bench.run(
            $op,
            $device,
            $shape,
            $train_forward,
            &[
                Layer {
                    name: "burn-norm",
                    valid: &|x| ours_valid.forward(x),
                    train: &|x| ours.forward(x),
                    train_forward: &|x| ours_untracked.forward(x),
                },
                Layer {
                    name: "burn-nn",
                    valid: &|x| theirs_valid.forward(x),
                    train: &|x| theirs.forward(x),
                    train_forward: &|x| theirs_untracked.forward(x),
                },
                identity(),
            ],
        )
    }};
}

fn layer_norm(bench: &Bench, device: &Device, rows: usize, d: usize) {
    versus!(
        bench,
        device,
        "LayerNorm",
        [rows, d],
        false,
        |ad| { burn_norm::LayerNormConfig::new(d).init(&ad) },
        burn::nn::LayerNormConfig::new(d).init(&ad)
    );
}

/// BatchNorm in training mode: its forward needs the autodiff device.
fn batch_norm(bench: &Bench, device: &Device, shape: [usize; 4]) {
    versus!(
        bench,
        device,
        "BatchNorm2d train",
        shape,
        true,
        |ad| { burn_norm::BatchNormConfig::new(shape[1]).init(&ad) },
        burn::nn::BatchNormConfig::new(shape[1]).init(&ad)
    );
}

/// burn-nn's default epsilon (1e-5) on both, as PyTorch's bench sets it.
fn rms_norm(bench: &Bench, device: &Device, rows: usize, d: usize) {
    versus!(
        bench,
        device,
        "RMSNorm",
        [rows, d],
        false,
        |ad| {
            burn_norm::RmsNormConfig::new(d)
                .with_epsilon(1e-5)
                .init(&ad)
        },
        burn::nn::RmsNormConfig::new(d).init(&ad)
    );
}

fn group_norm(bench: &Bench, device: &Device, groups: usize, shape: [usize; 4]) {
    versus!(
        bench,
        device,
        "GroupNorm 32 groups",
        shape,
        false,
        |ad| { burn_norm::GroupNormConfig::new(groups, shape[1]).init(&ad) },
        burn::nn::GroupNormConfig::new(groups, shape[1]).init(&ad)
    );
}

/// PyTorch's and burn-nn's InstanceNorm2d with gamma and beta (burn-nn's
/// default).
fn instance_norm(bench: &Bench, device: &Device, shape: [usize; 4]) {
    versus!(
        bench,
        device,
        "InstanceNorm2d",
        shape,
        false,
        |ad| {
            burn_norm::InstanceNormConfig::new(shape[1])
                .with_affine(true)
                .init(&ad)
        },
        burn::nn::InstanceNormConfig::new(shape[1]).init(&ad)
    );
}

/// Resident-set figures of this process, in KiB, from `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const MEMORY_LAYERS: usize = 8;
const MEMORY_SHAPE: [usize; 2] = [4096, 768];

/// One training step (forward + backward) through a stack of LayerNorms
/// on flex; prints the rise of the peak resident set over the set-up, in
/// MiB: the memory the step's autodiff graph and gradients take.
fn memory_probe(which: &str) {
    let ad = Device::flex().autodiff();
    let d = MEMORY_SHAPE[1];
    let ours: Vec<_> = (0..MEMORY_LAYERS)
        .map(|_| burn_norm::LayerNormConfig::new(d).init(&ad))
        .collect();
    let theirs: Vec<_> = (0..MEMORY_LAYERS)
        .map(|_| burn::nn::LayerNormConfig::new(d).init(&ad))
        .collect();
    let x = Tensor::<2>::random(MEMORY_SHAPE, Distribution::Default, &ad).require_grad();
    std::hint::black_box(x.clone().sum().into_scalar::<f32>());
    // Writing 5 to clear_refs resets the peak (VmHWM) to the current size.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:").unwrap_or(0);
    let mut y = x.clone();
    for i in 0..MEMORY_LAYERS {
        y = if which == "burn-norm" {
            ours[i].forward(y)
        } else {
            theirs[i].forward(y)
        };
    }
    let grads = y.sum().backward();
    std::hint::black_box(x.grad(&grads).unwrap().sum().into_scalar::<f32>());
    let peak = status_kib("VmHWM:").unwrap_or(0);
    println!("{:.1}", peak.saturating_sub(before) as f64 / 1024.0);
}

/// Runs [`memory_probe`] in a fresh process per implementation.
fn memory(json: bool) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let one_tensor = (MEMORY_SHAPE[0] * MEMORY_SHAPE[1] * 4) as f64 / (1 << 20) as f64;
    for which in ["burn-norm", "burn-nn"] {
        let out = std::process::Command::new(&exe)
            .args(["--memory-probe", which])
            .output()
            .expect("run the probe");
        let mib: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN);
        if json {
            println!(
                "{{\"op\": \"LayerNorm x{MEMORY_LAYERS} training step, peak memory\", \"shape\": \"{MEMORY_SHAPE:?}\", \"impl\": \"{which}\", \"mib\": {mib:.1}}}"
            );
        } else {
            println!(
                "LayerNorm x{MEMORY_LAYERS} {MEMORY_SHAPE:?} training step on flex, {which:<9}: peak +{mib:.1} MiB ({:.1} input-sized tensors)",
                mib / one_tensor
            );
        }
    }
}

/// Whether `BENCH_IMPL` leaves out the probe's implementation `name`.
fn skipped(name: &str) -> bool {
    std::env::var("BENCH_IMPL").is_ok_and(|only| !name.starts_with(&only))
}

/// `run(chain)` (a chain of that many layers and its read-back) timed
/// per layer in chains of 10 and 100, as the probes print it.
fn per_layer(run: impl Fn(u32)) -> String {
    [10, 100]
        .map(|chain| {
            let total = median(|| run(chain)) / chain;
            format!("chain {chain}: {:.1} us", total.as_secs_f64() * 1e6)
        })
        .join("; ")
}

/// Where LayerNorm [32768, 768]'s inference forward spends its time on
/// `device` (`--probe`; `--rows N` for a smaller shape on lavapipe): per
/// layer, in chains of 10 and 100 layers per read-back (with 100 the GPU's
/// own time dominates where the host keeps ahead), the host's time to
/// enqueue a chain of 100 (before the read-back), the same without gamma
/// and beta (what loading the parameters costs), burn-nn's, and the
/// harness alone (identity layers); then the training step (forward and
/// backward) per layer in chains of 10 and 100. `BENCH_IMPL=burn-norm`
/// keeps ours.
fn probe(device: &Device, rows: usize) {
    const D: usize = 768;
    let x = Tensor::<2>::random([rows, D], Distribution::Default, device);
    let affine = burn_norm::LayerNormConfig::new(D).init(device);
    let plain = burn_norm::LayerNormConfig::new(D)
        .with_elementwise_affine(false)
        .init(device);
    let theirs = burn::nn::LayerNormConfig::new(D).init(device);
    let layers: [(&str, &dyn Fn(Tensor<2>) -> Tensor<2>); 4] = [
        ("burn-norm", &|x| affine.forward(x)),
        ("burn-norm, no gamma/beta", &|x| plain.forward(x)),
        ("burn-nn", &|x| theirs.forward(x)),
        ("identity", &|x| x),
    ];
    let bytes = 2.0 * (rows * D * 4) as f64;
    println!("LayerNorm [{rows}, {D}] inference forward, per layer:");
    for (name, layer) in layers {
        if skipped(name) {
            continue;
        }
        let mut cells = Vec::new();
        for chain in [10, 100] {
            let mut enqueue = Vec::new();
            let total = median(|| {
                let start = Instant::now();
                let mut y = x.clone();
                for _ in 0..chain {
                    y = layer(y);
                }
                enqueue.push(start.elapsed());
                std::hint::black_box(y.sum().into_scalar::<f32>());
            }) / chain;
            enqueue.sort();
            let host = enqueue[enqueue.len() / 2] / chain;
            cells.push(format!(
                "chain {chain}: {:.1} us ({:.0} GB/s), enqueue {:.1} us",
                total.as_secs_f64() * 1e6,
                bytes / total.as_secs_f64() / 1e9,
                host.as_secs_f64() * 1e6
            ));
        }
        println!("  {name:<26} {}", cells.join("; "));
    }
    // The training step: the backward adds our second operation, and its
    // launches and allocations, to the host's cost per layer.
    let ad = device.clone().autodiff();
    let ours = burn_norm::LayerNormConfig::new(D).init(&ad);
    let theirs = burn::nn::LayerNormConfig::new(D).init(&ad);
    let g = Tensor::<2>::random([rows, D], Distribution::Default, &ad);
    let steps: [(&str, &dyn Fn(Tensor<2>) -> Tensor<2>); 3] = [
        ("burn-norm", &|x| ours.forward(x)),
        ("burn-nn", &|x| theirs.forward(x)),
        ("identity", &|x| x),
    ];
    println!("LayerNorm [{rows}, {D}] training step (backward of sum(y * g)), per layer:");
    for (name, layer) in steps {
        if skipped(name) {
            continue;
        }
        let cells = per_layer(|chain| {
            let mut input = x.clone();
            for _ in 0..chain {
                let x = input.autodiff().require_grad();
                let grads = (layer(x.clone()) * g.clone()).sum().backward();
                input = x.grad(&grads).unwrap();
            }
            std::hint::black_box(input.sum().into_scalar::<f32>());
        });
        println!("  {:<26} {cells}", format!("{name}, step"));
    }
}

/// BatchNorm's training-mode forward (`no_grad()` layers, as the tables
/// time it: one layer called `chain` times per read-back) with and without
/// its running statistics, per layer in chains of 10 and 100: whether a
/// long chain's extra cost per layer comes with the running update, which
/// Burn's fusion defers (docs/benchmarks.md, nineteenth session). The
/// shape is the tables' [64, 128, 56, 56] at the probe's default rows,
/// `[rows / 512, 128, 56, 56]`, and `[rows, 16, 4, 4]` below 512 rows
/// (lavapipe). `--probe-batch-norm`.
fn batch_norm_probe(device: &Device, rows: usize) {
    let shape = match rows / 512 {
        0 => [rows, 16, 4, 4],
        n => [n, 128, 56, 56],
    };
    let ad = device.clone().autodiff();
    let x = Tensor::<4>::random(shape, Distribution::Default, &ad);
    let c = shape[1];
    let tracking = burn_norm::BatchNormConfig::new(c).init(&ad).no_grad();
    let not_tracking = burn_norm::BatchNormConfig::new(c)
        .with_track_running_stats(false)
        .init(&ad)
        .no_grad();
    let theirs = burn::nn::BatchNormConfig::new(c).init(&ad).no_grad();
    let layers: [(&str, &dyn Fn(Tensor<4>) -> Tensor<4>); 3] = [
        ("burn-norm", &|x| tracking.forward(x)),
        ("burn-norm, no running stats", &|x| not_tracking.forward(x)),
        ("burn-nn", &|x| theirs.forward(x)),
    ];
    println!("BatchNorm2d {shape:?} training-mode forward, per layer:");
    for (name, layer) in layers {
        if skipped(name) {
            continue;
        }
        let cells = per_layer(|chain| {
            let mut y = x.clone();
            for _ in 0..chain {
                y = layer(y);
            }
            std::hint::black_box(y.sum().into_scalar::<f32>());
        });
        println!("  {name:<28} {cells}");
    }
}

/// The host's own cost per layer on `device`, with every kernel launch
/// dropped: CubeCL's dry run compiles and caches each launch and never
/// runs it, while everything before it (Burn's fusion, our operation,
/// CubeCL's allocations and queues) happens as usual. That is what a layer
/// costs where the device takes no time at all, on the tables' small
/// shapes, whose PyTorch CUDA forwards take 13-57 us on an H200: where
/// this is more, the row's target is out of reach through Burn's wgpu
/// runtime whatever the kernel. Against it, Burn's own LayerNorm, a
/// reduction with a broadcast add (`x + sum(x, 1)`, which Burn fuses) and
/// the harness alone; then BatchNorm's training forward and GroupNorm's
/// and InstanceNorm's forwards (the tables' CPU shapes: the host's cost
/// hardly depends on the shape). Per layer in chains of 10 and 100 after a
/// real warm-up; values read back are meaningless. `--probe-host`.
#[cfg(feature = "wgpu")]
fn host_probe(device: &Device) {
    let x = Tensor::<2>::random([4096, 128], Distribution::Default, device);
    let ours = burn_norm::LayerNormConfig::new(128).init(device);
    let theirs = burn::nn::LayerNormConfig::new(128).init(device);
    let rows: [(&str, &dyn Fn(Tensor<2>) -> Tensor<2>); 4] = [
        ("burn-norm", &|x| ours.forward(x)),
        ("burn-nn", &|x| theirs.forward(x)),
        ("x + sum(x, 1)", &|x: Tensor<2>| x.clone().sum_dim(1) + x),
        ("identity", &|x| x),
    ];
    let ad = device.clone().autodiff();
    let images = Tensor::<4>::random([128, 16, 28, 28], Distribution::Default, &ad);
    let ours_bn = burn_norm::BatchNormConfig::new(16).init(&ad).no_grad();
    let theirs_bn = burn::nn::BatchNormConfig::new(16).init(&ad).no_grad();
    let channels: [(&str, &dyn Fn(Tensor<4>) -> Tensor<4>); 2] = [
        ("burn-norm", &|x| ours_bn.forward(x)),
        ("burn-nn", &|x| theirs_bn.forward(x)),
    ];
    let maps = Tensor::<4>::random([8, 128, 56, 56], Distribution::Default, device);
    let ours_gn = burn_norm::GroupNormConfig::new(32, 128).init(device);
    let theirs_gn = burn::nn::GroupNormConfig::new(32, 128).init(device);
    let groups: [(&str, &dyn Fn(Tensor<4>) -> Tensor<4>); 2] = [
        ("burn-norm", &|x| ours_gn.forward(x)),
        ("burn-nn", &|x| theirs_gn.forward(x)),
    ];
    let ours_in = burn_norm::InstanceNormConfig::new(128)
        .with_affine(true)
        .init(device);
    let theirs_in = burn::nn::InstanceNormConfig::new(128).init(device);
    let instances: [(&str, &dyn Fn(Tensor<4>) -> Tensor<4>); 2] = [
        ("burn-norm", &|x| ours_in.forward(x)),
        ("burn-nn", &|x| theirs_in.forward(x)),
    ];
    // Compiled, tuned and cached for real first: the dry run drops launches.
    warm(&x, &rows);
    warm(&images, &channels);
    warm(&maps, &groups);
    warm(&maps, &instances);
    let _dry = cubecl::dry_run::DryRun::new();
    println!("The host's cost per layer, kernel launches dropped (CubeCL's dry run):");
    println!("LayerNorm [4096, 128] inference forward:");
    host_rows(&x, &rows);
    println!("BatchNorm2d [128, 16, 28, 28] training-mode forward, running statistics:");
    host_rows(&images, &channels);
    println!("GroupNorm 32 groups [8, 128, 56, 56] forward:");
    host_rows(&maps, &groups);
    println!("InstanceNorm2d [8, 128, 56, 56] forward:");
    host_rows(&maps, &instances);
}

/// A probe's named layers, as `(name, layer)`.
#[cfg(feature = "wgpu")]
type Named<'a, const D: usize> = [(&'a str, &'a dyn Fn(Tensor<D>) -> Tensor<D>)];

/// `layer` applied `chain` times from `x`, then a read-back.
#[cfg(feature = "wgpu")]
fn chained<const D: usize>(x: &Tensor<D>, layer: &dyn Fn(Tensor<D>) -> Tensor<D>, chain: u32) {
    let mut y = x.clone();
    for _ in 0..chain {
        y = layer(y);
    }
    std::hint::black_box(y.sum().into_scalar::<f32>());
}

/// Each of `layers` run for real a few times.
#[cfg(feature = "wgpu")]
fn warm<const D: usize>(x: &Tensor<D>, layers: &Named<D>) {
    for (_, layer) in layers {
        chained(x, *layer, 3);
    }
}

/// [`host_probe`]'s rows: each layer's time per layer from `x`.
#[cfg(feature = "wgpu")]
fn host_rows<const D: usize>(x: &Tensor<D>, layers: &Named<D>) {
    for (name, layer) in layers {
        if !skipped(name) {
            println!(
                "  {name:<16} {}",
                per_layer(|chain| chained(x, *layer, chain))
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory-probe") {
        return memory_probe(&args[i + 1]);
    }
    let name = args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1));
    let device =
        device::device_named(name.map_or("flex", String::as_str)).unwrap_or_else(|e| panic!("{e}"));
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let bench = Bench {
        json: args.iter().any(|a| a == "--json"),
        chain: args
            .iter()
            .position(|a| a == "--chain")
            .and_then(|i| args.get(i + 1))
            .map_or(1, |k| k.parse().expect("--chain takes a count")),
        only,
    };
    let large = args.iter().any(|a| a == "--large");
    let rows = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .map_or(32768, |r| r.parse().expect("--rows takes a count"));
    if args.iter().any(|a| a == "--probe") {
        return probe(&device, rows);
    }
    if args.iter().any(|a| a == "--probe-batch-norm") {
        return batch_norm_probe(&device, rows);
    }
    #[cfg(feature = "wgpu")]
    if args.iter().any(|a| a == "--probe-host") {
        return host_probe(&device);
    }
    if !bench.json {
        println!("device: {device:?}");
    }
    // The issue's shapes (CPU / GPU), then the examples' shapes: the
    // transformer's [batch 32 x context 128, 128] and the MNIST CNN's
    // second block.
    let scale = if large { 8 } else { 1 };
    layer_norm(&bench, &device, 4096 * scale, 768);
    layer_norm(&bench, &device, 4096, 128);
    batch_norm(&bench, &device, [8 * scale, 128, 56, 56]);
    batch_norm(&bench, &device, [128, 16, 28, 28]);
    // The rest of the family on the shapes of its issue.
    rms_norm(&bench, &device, 4096 * scale, 768);
    group_norm(&bench, &device, 32, [8 * scale, 128, 56, 56]);
    instance_norm(&bench, &device, [8 * scale, 64, 56, 56]);
    // Groups longer than a GPU team holds (65,536 values: a diffusion
    // model's GroupNorm at 128 x 128, a style-transfer InstanceNorm at
    // 256 x 256; the GroupNorm's input normalized per sample by a
    // LayerNorm over [128, 128, 128], rows of 2,097,152), which the GPU
    // cuts into blocks.
    if args.iter().any(|a| a == "--long-groups") {
        group_norm(&bench, &device, 32, [scale, 128, 128, 128]);
        instance_norm(&bench, &device, [scale, 32, 256, 256]);
        layer_norm(&bench, &device, scale, 128 * 128 * 128);
    }
    if name.is_none_or(|n| n == "flex") && bench.only.is_none() {
        memory(bench.json);
    }
}
