//! When our CubeCL operations hand their launches to the GPU.
//!
//! CubeCL's wgpu runtime queues launches and submits every 32
//! (`CUBECL_WGPU_MAX_TASKS`) or when a read waits for them, so on a short
//! chain of operations the GPU sits idle while the host prepares the rest.
//! For a large operation (tens of microseconds of GPU time) submitting at
//! once costs less host time than it saves: on an H100, LayerNorm
//! [32768, 768]'s forward in chains of 10 took 116-125 us per layer against
//! 154-169 us, three alternating rounds, and every 25-million-value row of
//! `benches/gpu.sh`'s tables took 3-37% less time; in chains of 100 it was
//! level (96-98 us against 94-100). Small operations took up to 32% longer
//! (BatchNorm [128, 16, 28, 28]'s training step: the blocking submission
//! outweighs their microseconds of GPU time), so they keep CubeCL's
//! batching. docs/benchmarks.md, eighth session.
//!
//! A submission is not free: on the H200 (seventeenth session) it added
//! about 50 us of host time to LayerNorm [32768, 768]'s forward (the host's
//! enqueue, chain of 100: 104 us a layer against 53 us without), more than
//! the kernel's own time, so in long chains the host set the pace.
//! `BURN_NORM_FLUSH_INTERVAL_US` paces the submissions (at most one per
//! interval on a device), which keeps the GPU fed at the start of a chain
//! and spreads the cost over several operations after; `benches/gpu.sh`
//! times it.

use super::settings;
use burn::backend::TensorMetadata;
use burn_cubecl::CubeDevice;
use burn_cubecl::tensor::CubeTensor;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Operations on at least this many values (64 MiB of f32) submit their
/// launches to the GPU at once (see [`Submission`]).
pub const SUBMIT_VALUES: usize = 1 << 24;

/// When our operation hands its launches to the GPU; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Submission {
    /// Operations on at least [`SUBMIT_VALUES`] values submit at once, at
    /// most once per `interval` on a device (the default: every one).
    Large {
        /// The least time between two of our submissions on a device
        /// (`BURN_NORM_FLUSH_INTERVAL_US`, zero without it).
        interval: Duration,
    },
    /// Every operation submits at once (`BURN_NORM_FLUSH=1`, a tuning aid).
    Always,
    /// CubeCL's batching alone (`BURN_NORM_FLUSH=0`).
    Queued,
}

impl Submission {
    /// The policy `BURN_NORM_FLUSH` and `BURN_NORM_FLUSH_INTERVAL_US` set,
    /// [`Submission::Large`] without a pace by default.
    fn get() -> Self {
        static SUBMISSION: OnceLock<Submission> = OnceLock::new();
        *SUBMISSION.get_or_init(|| match std::env::var("BURN_NORM_FLUSH").as_deref() {
            Ok("1") => Submission::Always,
            Ok("0") => Submission::Queued,
            _ => Submission::Large {
                interval: Duration::from_micros(
                    settings::count("BURN_NORM_FLUSH_INTERVAL_US", 1..=1_000_000).unwrap_or(0)
                        as u64,
                ),
            },
        })
    }

    /// Whether an operation on `values` values submits at once, the last
    /// of our submissions on its device having been at `last` (`None`:
    /// none yet), the time now being `now`.
    pub(super) fn now(self, values: usize, last: Option<Instant>, now: Instant) -> bool {
        match self {
            Submission::Large { interval } => {
                values >= SUBMIT_VALUES
                    && last.is_none_or(|last| now.saturating_duration_since(last) >= interval)
            }
            Submission::Always => true,
            Submission::Queued => false,
        }
    }
}

/// Submits the launches queued on `x`'s device where [`Submission`] says so
/// for an operation on `x`'s values.
pub(super) fn submit(x: &CubeTensor) {
    let policy = Submission::get();
    let values = x.shape().num_elements();
    let now = Instant::now();
    let due = match policy {
        Submission::Large { interval } if !interval.is_zero() => {
            /// Each device's last submission of ours.
            static LAST: OnceLock<Mutex<HashMap<CubeDevice, Instant>>> = OnceLock::new();
            let mut last = LAST
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = policy.now(values, last.get(&x.device).copied(), now);
            if due {
                last.insert(x.device.clone(), now);
            }
            due
        }
        // Without a pace, no clock to keep.
        _ => policy.now(values, None, now),
    };
    if due {
        x.client.flush().unwrap_or_else(|e| {
            panic!("burn-norm: the device failed on submitting its kernels: {e:?}")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{SUBMIT_VALUES, Submission};
    use std::time::{Duration, Instant};

    #[test]
    fn large_operations_submit_at_once_unless_told_otherwise() {
        let large = Submission::Large {
            interval: Duration::ZERO,
        };
        let t = Instant::now();
        let now = |policy: Submission, values| policy.now(values, Some(t), t);
        assert!(now(large, 32768 * 768));
        assert!(now(large, SUBMIT_VALUES));
        assert!(!now(large, SUBMIT_VALUES - 1));
        assert!(!now(large, 4096 * 128));
        assert!(now(Submission::Always, 1));
        assert!(!now(Submission::Queued, 32768 * 768));
    }

    /// With a pace, a device's first large operation submits, and the next
    /// ones once the interval has passed since the last submission.
    #[test]
    fn paced_submissions_wait_for_their_interval() {
        let paced = Submission::Large {
            interval: Duration::from_micros(150),
        };
        let last = Instant::now();
        let after = |us| last + Duration::from_micros(us);
        assert!(paced.now(SUBMIT_VALUES, None, last));
        assert!(!paced.now(SUBMIT_VALUES, Some(last), after(0)));
        assert!(!paced.now(SUBMIT_VALUES, Some(last), after(149)));
        assert!(paced.now(SUBMIT_VALUES, Some(last), after(150)));
        assert!(paced.now(SUBMIT_VALUES, Some(last), after(10_000)));
        // Small operations keep CubeCL's batching whatever the clock says.
        assert!(!paced.now(SUBMIT_VALUES - 1, None, last));
    }
}
