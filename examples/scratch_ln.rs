use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn t(name: &str, mut f: impl FnMut()) {
    for _ in 0..5 { f(); }
    let mut v: Vec<f64> = (0..40).map(|_| { let s = Instant::now(); f(); s.elapsed().as_secs_f64() * 1e3 }).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name:<30} {:.3} ms", v[v.len() / 2]);
}
fn main() {
    let device = Device::flex();
    for d in std::env::args().skip(1).map(|a| a.parse::<usize>().unwrap()) {
        let x = Tensor::<2>::random([4096, d], Distribution::Default, &device);
        let ours = burn_norm::LayerNormConfig::new(d).init(&device);
        let theirs = burn::nn::LayerNormConfig::new(d).init(&device);
        t(&format!("ours {d}"), || { let y = ours.forward(x.clone()); std::hint::black_box(y); });
        t(&format!("burn-nn {d}"), || { let y = theirs.forward(x.clone()); std::hint::black_box(y); });
        t(&format!("ours+sum {d}"), || { let y = ours.forward(x.clone()).sum().into_data(); std::hint::black_box(y); });
    }
}
