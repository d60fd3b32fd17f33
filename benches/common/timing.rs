//! The benches' timing: the median of 20 timed calls after 3 warm-up calls.

use std::time::{Duration, Instant};

/// The median time of `f` over 20 calls, after 3 untimed ones.
pub fn median(mut f: impl FnMut()) -> Duration {
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

/// [`median`] in milliseconds, for `f` whose result is kept from the
/// optimizer (`examples/gelu_speed.rs`, `examples/exp_speed.rs`).
#[allow(dead_code)] // The benches use `median` itself.
pub fn median_ms<R>(f: impl Fn() -> R) -> f64 {
    median(|| {
        std::hint::black_box(f());
    })
    .as_secs_f64()
        * 1e3
}
