//! Fused kernels behind Burn's `#[backend_extension]`.
//!
//! [`NormOps`] is one backend operation for the whole family: normalize
//! groups of values (the rows of LayerNorm and RMSNorm, the channels of a
//! training BatchNorm, the channel groups of GroupNorm and InstanceNorm, as
//! a [`Layout`] describes them), forward and backward, implemented per
//! backend. The autodiff
//! backend records it as *one* operation whose handwritten backward keeps
//! only the input, the per-group `rstd` and `gamma`, instead of every
//! intermediate tensor of the composed formula.
//!
//! Backends with a kernel: flex and ndarray (the same CPU kernel, threaded,
//! f32 and f64) and, with the `wgpu` feature, Burn's CubeCL backend (CubeCL
//! kernels, f32; wgpu, and any other CubeCL runtime the application compiles
//! in), plain or wrapped in Burn's `Fusion` (what Burn's default features
//! give a wgpu user). Under fusion the operation is queued lazily, like
//! Burn's own operations: its output shapes come from the input shapes
//! alone, the fused operations before it are flushed into its inputs, and
//! the operations after it fuse among themselves. Everywhere else (and
//! inside [`with_composed_path`]) [`has_fused_kernel`] says no and the
//! functional layer keeps its composed path, so every backend still runs
//! every layer.

// Burn 0.22 deprecates ndarray in favour of flex but still ships it; it keeps
// its kernel until Burn removes it (the extension macro names it here).
#![allow(deprecated)]

mod autodiff;
mod combine;
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub(crate) mod cpu;
#[cfg(feature = "wgpu")]
mod cube;
#[cfg(feature = "wgpu")]
mod cube_blocks;
#[cfg(feature = "wgpu")]
mod cube_kernels;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "wgpu")]
mod fusion;
pub mod layout;
#[cfg(feature = "ndarray")]
mod ndarray;
mod settings;
mod statistics;
#[cfg(feature = "wgpu")]
mod submission;

// With `wgpu`, `burn` below names the shim in `fusion`, which gives the
// code that `#[backend_extension]` generates for `Fusion` the
// `burn::backend::fusion` paths it expects even when Burn's own `fusion`
// feature (which would force fusion on for the application) is off.
#[cfg(feature = "wgpu")]
use fusion::burn;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, ExtensionType, backend_extension};
use burn::tensor::{DType, Device, Tensor};
pub use combine::CombineOps;
pub use layout::{Centering, Grouping, Layout, Params};
pub use statistics::{RunningUpdate, Statistics};

/// What [`NormOps::normalize`] returns: the output and, per group, the
/// statistics it normalized with (empty where the caller discarded them, see
/// [`Statistics`]).
#[derive(ExtensionType)]
#[extension_type(fusion: cfg(feature = "wgpu"))]
pub struct Normalized<B: Backend> {
    /// `y`, the shape of `x`.
    pub output: FloatTensor<B>,
    /// Each group's mean (0 where the layout does not center), `[groups]`.
    pub mean: FloatTensor<B>,
    /// Each group's biased variance (the mean square where the layout does
    /// not center), `[groups]`.
    pub var: FloatTensor<B>,
    /// Each group's `1 / sqrt(var + epsilon)`, `[groups]`.
    pub rstd: FloatTensor<B>,
}

/// What [`NormOps::normalize_backward`] returns.
#[derive(ExtensionType)]
#[extension_type(fusion: cfg(feature = "wgpu"))]
pub struct NormGrads<B: Backend> {
    /// The gradient of `x`, its shape.
    pub dx: FloatTensor<B>,
    /// The gradient of `gamma`, `[params]`.
    pub dgamma: FloatTensor<B>,
    /// The gradient of `beta`, `[params]`.
    pub dbeta: FloatTensor<B>,
}

/// Group normalization as a backend operation; see the module docs.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    // `Cube` is Burn's CubeCL backend as the application configured it:
    // `CubeBackend`, or `Fusion<CubeBackend>` when burn-wgpu's `fusion`
    // feature (a default) is on. Both have an implementation.
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait NormOps: Backend {
    /// Normalizes `x` (`[n, c, ..]` for channels; rows: any rank, the
    /// layout's last axes the row) in the groups that `layout` describes (see [`layout`]):
    /// `y = (x - mean) * rstd * gamma + beta`, `rstd = 1 / sqrt(var + epsilon)`,
    /// biased variance (`mean = 0` and `var = mean(x²)` where the layout
    /// does not center). `gamma`, `beta` are `[s]` along rows, `[c]` per
    /// channel.
    ///
    /// An absent `gamma` or `beta` is passed as any tensor (never read) with
    /// its `affine` flag `false`: Burn 0.22.1's `#[backend_extension]` does not
    /// route `Option` tensor arguments. `statistics` says whether the caller
    /// reads the statistics returned with `y`, or the running statistics
    /// `running_mean` and `running_var` (`[groups]`, `x`'s dtype) become
    /// with `running` ([`Statistics::Running`]); otherwise those two are
    /// stand-ins, never read, as absent parameters are.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = fusion::normalize_metadata)]
    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        affine: [bool; 2],
        layout: Layout,
        epsilon: f64,
        statistics: Statistics,
        running: RunningUpdate,
    ) -> Normalized<Self>;

    /// Backward of [`normalize`](NormOps::normalize) from `x`, `rstd` and
    /// the output gradient `dy`. `gamma` is read only when `has_gamma`.
    #[fusion(meta = fusion::normalize_backward_metadata)]
    fn normalize_backward(
        x: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        has_gamma: bool,
        layout: Layout,
        dy: FloatTensor<Self>,
    ) -> NormGrads<Self>;
}

/// Whether [`NormOps`] has a kernel for tensors of `dtype` on `device`
/// (with or without autodiff). Setting `BURN_NORM_COMPOSED=1` turns the
/// kernels off, to compare them with the composed path.
pub fn has_fused_kernel(device: &Device, dtype: DType) -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *DISABLED.get_or_init(|| settings::on("BURN_NORM_COMPOSED")) || COMPOSED.get() {
        return false;
    }
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => matches!(dtype, DType::F32 | DType::F64),
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => matches!(dtype, DType::F32 | DType::F64),
        // f32 only: wgpu has no f64 on most adapters (f16/bf16 reach the
        // kernels widened to f32 by the functional layer).
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => dtype == DType::F32,
        _ => false,
    }
}

thread_local! {
    /// Set by [`with_composed_path`] for the calls it wraps.
    static COMPOSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the fused kernels turned off on this thread: the layers
/// called inside take the composed path (generic tensor operations,
/// differentiated by autodiff), on the same device. For comparisons and
/// tests; `BURN_NORM_COMPOSED=1` does the same for a whole process.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex();
/// let layer = burn_norm::LayerNormConfig::new(4).init(&device);
/// let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0, 4.0]], &device);
/// let fused = layer.forward(x.clone());
/// let composed = burn_norm::backend::with_composed_path(|| layer.forward(x));
/// fused.into_data().assert_approx_eq::<f32>(&composed.into_data(), Default::default());
/// ```
pub fn with_composed_path<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the previous setting, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPOSED.set(self.0);
        }
    }
    let _restore = Restore(COMPOSED.replace(true));
    f()
}

/// The statistics [`normalize`] returns with its output, one per group:
/// the batch's, or the updated running statistics where it was given
/// [`RunningInput`].
pub(crate) struct GroupStatistics {
    pub mean: Tensor<1>,
    pub var: Tensor<1>,
}

/// The running statistics that [`normalize`] updates with the batch
/// ([`Statistics::Running`]), one per group, in the dtype `x` has when it
/// reaches the kernel.
#[derive(Clone)]
pub(crate) struct RunningInput {
    pub mean: Tensor<1>,
    pub var: Tensor<1>,
    pub update: RunningUpdate,
}

/// [`NormOps::normalize`] on high-level tensors (`x`: `[n, c, ..]`, rows
/// of any rank): differentiable with respect to `x`, `gamma` and `beta`; the statistics
/// are constants, and empty where `statistics` discards them. With
/// `running` they are the updated running statistics
/// ([`Statistics::Running`], whatever `statistics` says).
pub(crate) fn normalize<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    layout: Layout,
    epsilon: f64,
    statistics: Statistics,
    running: Option<RunningInput>,
) -> (Tensor<D>, GroupStatistics) {
    // An absent parameter travels as a stand-in that is never read: the
    // other parameter, else `x` itself, not a view of it (a reshape is one
    // operation more under fusion, and a copy where `x` is not
    // contiguous). The kernels drop the stand-in on arrival (on wgpu an
    // inference forward writes its output over an `x` it alone holds).
    let affine = [gamma.is_some(), beta.is_some()];
    let (gamma, beta) = match (gamma, beta) {
        (Some(gamma), Some(beta)) => (gamma.into_dispatch(), beta.into_dispatch()),
        (Some(gamma), None) => (gamma.clone().into_dispatch(), gamma.into_dispatch()),
        (None, Some(beta)) => (beta.clone().into_dispatch(), beta.into_dispatch()),
        (None, None) => (x.clone().into_dispatch(), x.clone().into_dispatch()),
    };
    // Without running statistics, their slots take the parameters'
    // stand-ins: tensors passed anyway, never read.
    let (running_mean, running_var, statistics, update) = match running {
        Some(RunningInput { mean, var, update }) => (
            mean.into_dispatch(),
            var.into_dispatch(),
            Statistics::Running,
            update,
        ),
        None => (gamma.clone(), beta.clone(), statistics, RunningUpdate::NONE),
    };
    let out = Dispatch::normalize(
        x.into_dispatch(),
        gamma,
        beta,
        running_mean,
        running_var,
        affine,
        layout,
        epsilon,
        statistics,
        update,
    );
    let stats = GroupStatistics {
        mean: Tensor::from_dispatch(out.mean),
        var: Tensor::from_dispatch(out.var),
    };
    (Tensor::from_dispatch(out.output), stats)
}

/// Whether [`CombineOps`] runs on `device` (with or without autodiff):
/// flex, ndarray and wgpu, whose replicas are threads of one process.
pub fn has_combine(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => true,
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => true,
        _ => false,
    }
}

/// `local` summed over the replicas of `replica`'s group, element-wise:
/// the sum is taken on the host through the replica's combiner, and the
/// backward sums the gradient the same way ([`CombineOps`]).
pub(crate) fn combine_sum(local: Tensor<1>, replica: &crate::sync::SyncReplica) -> Tensor<1> {
    let values = local
        .clone()
        .detach()
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("f64 values");
    let total = replica.sum(&values);
    // With the dtype named: from a device alone, Burn 0.22.1 converts the
    // data to the device's default float (an f64 sum came back f32).
    let combined = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(total, [values.len()]),
        (&local.device(), local.dtype()),
    );
    Tensor::from_dispatch(Dispatch::combined(
        local.into_dispatch(),
        combined.into_dispatch(),
        replica.id(),
    ))
}
