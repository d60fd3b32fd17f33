//! Burn 0.22.1's `exp` on flex takes glibc's slow path for every value
//! that underflows: a minimal program for the time the transformer
//! example spent in causal attention's softmax.
//!
//! ```sh
//! cargo run --release --example exp_speed
//! ```
//!
//! Burn's `MultiHeadAttention` fills masked scores with `min_float`
//! (-1e4 by default) before the softmax, whose `exp(score - max)` then
//! underflows to 0 for every masked score. flex calls a scalar `expf` per
//! value, and glibc's `expf` handles underflow out of line (it also sets
//! `errno`); `exp(-inf)` is 0 on the fast path. The weights are the same
//! zeros either way. Times `exp` on [32 x 4 x 128, 128] (the transformer's
//! attention scores: batch 32, 4 heads, context 128) filled with one value,
//! and the softmax of random scores under a causal mask filled with -1e4
//! and with -inf (checking first that both give the same weights, bit for
//! bit). Median of 20 calls.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Distribution, Tensor};

#[path = "../benches/common/timing.rs"]
mod timing;
use timing::median_ms;

fn main() {
    let device = Device::flex();
    let shape = [32 * 4 * 128, 128];
    let sum = |t: Tensor<2>| t.sum().into_scalar::<f32>();
    println!("| exp of [16384, 128] filled with | time |");
    println!("|---|---|");
    for (name, value) in [
        ("0", 0.0f32),
        ("-10", -10.0),
        ("-1e4 (underflows)", -1.0e4),
        ("-inf", f32::NEG_INFINITY),
    ] {
        let x = Tensor::<2>::full(shape, value, &device);
        println!("| {name} | {:.2} ms |", median_ms(|| sum(x.clone().exp())));
    }
    // Scores [32, 4, 128, 128] and the causal mask (true above the diagonal).
    let scores = Tensor::<4>::random([32, 4, 128, 128], Distribution::Normal(0.0, 1.0), &device);
    let row = Tensor::<1, burn::tensor::Int>::arange(0..128, &device);
    let above: Tensor<2, Bool> = row.clone().reshape([1, 128]).greater(row.reshape([128, 1]));
    let mask = above.reshape([1, 1, 128, 128]).expand([32, 4, 128, 128]);
    let weights = |value: f32| softmax(scores.clone().mask_fill(mask.clone(), value), 3);
    assert_eq!(
        weights(-1.0e4).into_data().try_to_vec::<f32>().unwrap(),
        weights(f32::NEG_INFINITY)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        "the two masks give the same weights"
    );
    println!("\n| causal softmax, masked scores set to | time |");
    println!("|---|---|");
    for (name, value) in [
        ("-1e4 (Burn's default)", -1.0e4f32),
        ("-inf", f32::NEG_INFINITY),
    ] {
        let time = median_ms(|| weights(value).sum().into_scalar::<f32>());
        println!("| {name} | {time:.2} ms |");
    }
}
