//! The environment variables that switch or tune the kernels: comparisons
//! and tuning aids (`benches/gpu.sh` and CI set them). Each caller reads its
//! variable once per process, into a `OnceLock`.

use std::ops::RangeInclusive;

/// Whether `name` is set to anything but `0` (a switch that is off by
/// default).
pub(crate) fn on(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v != "0")
}

/// Whether `name` is set to `0` (a switch that is on by default).
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(crate) fn off(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "0")
}

/// `name`'s value as a count, where it is set to one within `range`.
#[cfg_attr(
    not(any(feature = "flex", feature = "ndarray", feature = "wgpu")),
    allow(dead_code)
)]
pub(crate) fn count(name: &str, range: RangeInclusive<usize>) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| range.contains(n))
}
