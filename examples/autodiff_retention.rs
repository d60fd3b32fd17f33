//! Forward passes on the autodiff device that no backward follows can keep
//! their saved tensors in Burn 0.22.1 itself (no burn-norm code involved):
//! a small program that shows it, and the workaround.
//!
//! ```sh
//! cargo run --release --example autodiff_retention
//! ```
//!
//! Each step multiplies the previous, detached result by a parameter that
//! requires a gradient (`Param::from_tensor`), as a chain of layers run for
//! their outputs alone would. The multiplication saves its input for the
//! parameter's gradient, and that input stays although the result is
//! detached and dropped: the resident set grows by about one
//! [8, 128, 56, 56] tensor (12.8 MB) per step. With a parameter that
//! requires no gradient (`set_require_grad(false)`, what a module's
//! `no_grad()` does to each of its parameters) nothing is saved and memory
//! stays flat. The benchmark's
//! chained training-mode BatchNorm forwards (burn-norm's and burn-nn's
//! alike) grew the same way, to 8.4 GB after a run on flex, until they ran
//! on `no_grad()` copies of the layers (docs/benchmarks.md).

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// 40 chained steps `y = (y * w).detach()`; the resident set after each 10.
fn chain(w: &Param<Tensor<1>>, device: &Device) -> Vec<String> {
    let mut y = Tensor::<4>::random([8, 128, 56, 56], Distribution::Default, device);
    let mut resident = vec![resident_mib()];
    for step in 1..=40 {
        y = (y * w.val().reshape([1, 128, 1, 1])).detach();
        if step % 10 == 0 {
            std::hint::black_box(y.clone().sum().into_scalar::<f32>());
            resident.push(resident_mib());
        }
    }
    resident.iter().map(|m| format!("{m:.0}")).collect()
}

fn main() {
    let device = Device::flex().autodiff();
    // The untracked case first, so that the tracked one's growth does not
    // hide it.
    let untracked = Param::from_tensor(Tensor::<1>::ones([128], &device)).set_require_grad(false);
    let tracked = Param::from_tensor(Tensor::<1>::ones([128], &device));
    for (name, w) in [("no grad", &untracked), ("requires grad", &tracked)] {
        println!(
            "{name:<14} resident MiB after 0, 10, 20, 30, 40 steps: {}",
            chain(w, &device).join(", ")
        );
    }
}
