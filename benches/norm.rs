//! Timing of burn-norm's layers against burn-nn's, forward and
//! forward + backward of `sum(y * g)`, f32.
//!
//! ```sh
//! cargo bench --bench norm                    # flex
//! cargo bench --bench norm -- --device wgpu   # or ndarray
//! ```
//!
//! Prints the median of 20 timed runs after 3 warm-up runs. The issue on
//! fused kernels adds PyTorch's numbers and the full table.

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

/// Forward only, then forward + backward, of `layer` on `x`.
fn bench<const D: usize>(
    name: &str,
    device: &Device,
    shape: [usize; D],
    ours: impl Fn(Tensor<D>) -> Tensor<D>,
    theirs: impl Fn(Tensor<D>) -> Tensor<D>,
) {
    let ad = device.clone().autodiff();
    let x = Tensor::<D>::random(shape, Distribution::Default, &ad);
    let g = Tensor::<D>::random(shape, Distribution::Default, &ad);
    let sync = |t: Tensor<D>| {
        let _ = t.sum().into_data();
    };
    for (what, layer) in [("burn-norm", &ours as &dyn Fn(Tensor<D>) -> Tensor<D>), ("burn-nn", &theirs)] {
        let fwd = median(|| sync(layer(x.clone())));
        let bwd = median(|| {
            let x = x.clone().require_grad();
            let grads = (layer(x.clone()) * g.clone()).sum().backward();
            sync(x.grad(&grads).unwrap());
        });
        println!("{name:<44} {what:<10} fwd {fwd:>10.2?}   fwd+bwd {bwd:>10.2?}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1));
    let device = device::device_named(name.map_or("flex", String::as_str)).unwrap_or_else(|e| panic!("{e}"));
    let ad = device.clone().autodiff();
    println!("device: {device:?}");

    let ln = burn_norm::LayerNormConfig::new(768).init(&ad);
    let ln_nn = burn::nn::LayerNormConfig::new(768).init(&ad);
    bench("LayerNorm [4096, 768]", &device, [4096, 768], |x| ln.forward(x), |x| ln_nn.forward(x));

    let bn = burn_norm::BatchNormConfig::new(128).init(&ad);
    let bn_nn = burn::nn::BatchNormConfig::new(128).init(&ad);
    bench(
        "BatchNorm2d train [8, 128, 56, 56]",
        &device,
        [8, 128, 56, 56],
        |x| bn.forward(x),
        |x| bn_nn.forward(x),
    );
}
