//! Burn 0.22.1's GELU on flex gets slower as its inputs spread: a minimal
//! program for the slowdown the transformer example saw as it trained.
//!
//! ```sh
//! cargo run --release --example gelu_speed
//! ```
//!
//! Times `gelu` on [4096, 512] tensors (the transformer's MLP activations)
//! drawn with standard deviations 0.1 to 10: flex's exact GELU calls a
//! scalar `erff` whose branches for larger |x| are more expensive, and
//! Burn's `gelu_approximate` goes through `tanh`, also branchy. The tanh
//! approximation written with a sigmoid (what the transformer example uses)
//! and a plain `exp` are shown for comparison. Median of 20 calls.

use burn::tensor::activation::{gelu, gelu_approximate, sigmoid};
use burn::tensor::{Device, Distribution, Tensor};

#[path = "../benches/common/timing.rs"]
mod timing;
use timing::median_ms;

fn main() {
    let device = Device::flex();
    println!(
        "| std of x | gelu (exact) | gelu_approximate | x * sigmoid(1.5958 (x + 0.044715 x^3)) | exp |"
    );
    println!("|---|---|---|---|---|");
    for std in [0.1, 1.0, 3.0, 10.0] {
        let x = Tensor::<2>::random([4096, 512], Distribution::Normal(0.0, std), &device);
        let sum = |t: Tensor<2>| t.sum().into_scalar::<f32>();
        let exact = median_ms(|| sum(gelu(x.clone())));
        let approximate = median_ms(|| sum(gelu_approximate(x.clone())));
        let by_sigmoid = median_ms(|| {
            let z = (x.clone() * x.clone() * x.clone() * 0.044715 + x.clone()) * 1.595_769_1;
            sum(x.clone() * sigmoid(z))
        });
        let exp = median_ms(|| sum(x.clone().exp()));
        println!(
            "| {std} | {exact:.1} ms | {approximate:.1} ms | {by_sigmoid:.1} ms | {exp:.1} ms |"
        );
    }
}
