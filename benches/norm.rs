//! Timing of burn-norm's layers against burn-nn's, forward and
//! forward + backward of `sum(y * g)`, f32.
//!
//! ```sh
//! cargo bench --bench norm                    # flex
//! cargo bench --bench norm -- --device wgpu   # or ndarray
//! ```
//!
//! Prints the median of 20 timed runs after 3 warm-up runs.
//! `benches/torch_norm.py` times PyTorch on the same shapes with the same
//! harness; `docs/benchmarks.md` has the results.

use burn::tensor::{Device, Distribution, Tensor};
use std::time::{Duration, Instant};

#[path = "../examples/common/device.rs"]
mod device;

fn median(mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Times `ours` and `theirs` (burn-nn) on a random `shape`: forward, then
/// forward + backward of `sum(y * g)`. The forward runs on the autodiff
/// device only when `train` (BatchNorm's training mode needs it, Burn's
/// rule), else on the plain device, as inference does. Each timed call ends
/// by reading back a sum, which also synchronizes GPU backends.
fn bench<const D: usize>(
    name: &str,
    device: &Device,
    shape: [usize; D],
    train: bool,
    ours: impl Fn(Tensor<D>) -> Tensor<D>,
    theirs: impl Fn(Tensor<D>) -> Tensor<D>,
) {
    let ad = device.clone().autodiff();
    let x = Tensor::<D>::random(shape, Distribution::Default, device);
    let g = Tensor::<D>::random(shape, Distribution::Default, &ad);
    let x_fwd = if train { x.clone().autodiff() } else { x.clone() };
    let sync = |t: Tensor<D>| {
        let _ = t.sum().into_data();
    };
    for (what, layer) in [("burn-norm", &ours as &dyn Fn(Tensor<D>) -> Tensor<D>), ("burn-nn", &theirs)] {
        let fwd = median(|| sync(layer(x_fwd.clone())));
        let bwd = median(|| {
            let x = x.clone().autodiff().require_grad();
            let grads = (layer(x.clone()) * g.clone()).sum().backward();
            sync(x.grad(&grads).unwrap());
        });
        println!("{name:<36} {what:<10} fwd {:>9.3} ms   fwd+bwd {:>9.3} ms", ms(fwd), ms(bwd));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1));
    let device = device::device_named(name.map_or("flex", String::as_str)).unwrap_or_else(|e| panic!("{e}"));
    let ad = device.clone().autodiff();
    println!("device: {device:?}");

    let ln = burn_norm::LayerNormConfig::new(768).init(&ad);
    let ln_nn = burn::nn::LayerNormConfig::new(768).init(&ad);
    bench("LayerNorm fwd [4096, 768]", &device, [4096, 768], false, |x| ln.forward(x), |x| ln_nn.forward(x));

    let bn = burn_norm::BatchNormConfig::new(128).init(&ad);
    let bn_nn = burn::nn::BatchNormConfig::new(128).init(&ad);
    bench(
        "BatchNorm2d train [8, 128, 56, 56]",
        &device,
        [8, 128, 56, 56],
        true,
        |x| bn.forward(x),
        |x| bn_nn.forward(x),
    );
}
