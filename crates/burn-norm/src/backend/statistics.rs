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
}
