//! Whether the caller of [`NormOps::normalize`](super::NormOps::normalize)
//! reads the statistics the operation normalized with.

/// What becomes of [`Normalized`](super::Normalized)'s `mean`, `var` and
/// `rstd`.
///
/// An inference LayerNorm, RMSNorm or GroupNorm drops them; a training
/// BatchNorm or InstanceNorm feeds its running statistics from them, and
/// the autodiff backend keeps `rstd` for the backward. A GPU pays for
/// statistics that nobody reads: each allocation is a task on CubeCL's
/// device thread, as a launch is, and on lavapipe an inference LayerNorm
/// [8, 768] took 280-288 us a layer with the statistics' buffer against
/// 198-203 us without it (a chain of 100, three alternating runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Statistics {
    /// One value per group in each.
    Returned,
    /// The caller does not read them. The CubeCL kernels return them empty,
    /// `[0]`, and make no buffer for them where the groups take one launch
    /// (the blocks' merge writes them for the last launch to read); the
    /// CPU kernels, and the autodiff backend where the backward needs
    /// `rstd`, return them whole.
    Discarded,
    /// `mean` and `var` come back as the running statistics that the
    /// operation's `running_mean` and `running_var` inputs become with this
    /// batch ([`RunningUpdate`]); `rstd` as `Returned`. The inputs hold one
    /// value per group (a training BatchNorm: a group per channel), or
    /// one per channel that every sample's groups take in turn (group `g`
    /// takes value `g mod len`: InstanceNorm, whose `n * c` instances each
    /// blend their channel's running statistics, which the layer then
    /// averages over the samples, as PyTorch does).
    ///
    /// One operation reads the old running statistics and writes the new
    /// ones, so each step's update depends on an operation that fusion
    /// executes: composed from tensor operations, the updates of a layer
    /// called many times with nothing reading its statistics (forwards
    /// that only recalibrate them) chained into ever longer blocks, which
    /// Burn 0.22.1's fusion ran unfused past about 25 steps, seven to nine
    /// launches a layer (docs/benchmarks.md, twenty-first session).
    Running,
}

/// PyTorch's running-statistics update, as [`Statistics::Running`] applies
/// it per group: `running_mean' = (1 - f) running_mean + f mean`,
/// `running_var' = (1 - f) running_var + f var n / (n - 1)`, with the
/// batch's biased variance `var` over its `n` values per group. The
/// kernels repeat [`crate::functional::update_running_statistics`]'s
/// operations in its order, each scalar rounded as a tensor's scalar
/// operation rounds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunningUpdate {
    /// `f`: the momentum, or `1 / steps` for a cumulative average.
    pub factor: f64,
    /// `n`, the batch's values per group (more than one).
    pub count: usize,
}

impl RunningUpdate {
    /// What an operation that returns no running statistics is passed.
    pub const NONE: RunningUpdate = RunningUpdate {
        factor: 0.0,
        count: 2,
    };

    /// Bessel's correction, `n / (n - 1)`.
    pub fn correction(&self) -> f64 {
        let n = self.count as f64;
        n / (n - 1.0)
    }
}
