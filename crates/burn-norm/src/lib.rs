//! # burn-norm
//!
//! PyTorch-exact normalization layers for [Burn](https://burn.dev) 0.22.
//!
//! - [`BatchNorm`]: `BatchNorm1d/2d/3d` with PyTorch's running statistics
//!   (unbiased running variance, `momentum = None` for a cumulative average,
//!   `affine`, `track_running_stats`, `num_batches_tracked`), and ghost
//!   batches (`virtual_batch_size`).
//! - [`BatchRenorm`]: Batch Renormalization (Ioffe, 2017), for small or
//!   non-i.i.d. batches.
//! - [`LayerNorm`]: `LayerNorm` with `elementwise_affine`, `bias` and a
//!   multi-axis `normalized_shape`.
//! - [`RmsNorm`]: `RMSNorm`, with `elementwise_affine` and a multi-axis
//!   `normalized_shape`.
//! - [`GroupNorm`]: `GroupNorm`, any batch size.
//! - [`InstanceNorm`]: `InstanceNorm1d/2d/3d` with `affine`,
//!   `track_running_stats` and PyTorch's train/eval behaviour.
//! - [`NormalizationConfig`] / [`Normalization`]: any of them, chosen by
//!   configuration.
//! - [`FoldBatchNorm`]: an evaluated BatchNorm folded into the `Conv2d` or
//!   `Linear` before it, for inference.
//! - [`scaler`]: `StandardScaler` and `MinMaxScaler`, the data-level
//!   normalization fitted on the training data (scikit-learn's semantics).
//! - `pytorch` (feature `pytorch`): PyTorch `state_dict`s in and out through
//!   burn-store, every key checked.
//!
//! The layers are Burn [`Module`](burn::module::Module)s built from
//! [`Config`](burn::config::Config)s, as in `burn::nn`; the math lives in
//! [`functional`], and per-backend fused kernels (each layer's normalization
//! as one operation with a handwritten backward, described by one
//! [`Layout`](backend::Layout): a CPU kernel on flex and ndarray, CubeCL
//! kernels on wgpu) sit behind Burn's
//! `#[backend_extension]` in [`backend`]. The backend is chosen at run time
//! by the device the tensors live on (`Device::flex()`, `Device::ndarray()`,
//! `Device::wgpu(..)`), and `device.autodiff()` turns on gradients. On wgpu
//! the kernels work in Burn's default configuration (`Fusion<CubeBackend>`,
//! fusion and autotune on) and without fusion alike: a GPU user adds
//! `features = ["wgpu"]` to burn-norm and nothing else.
//!
//! ```
//! use burn_norm::{BatchNormConfig, LayerNormConfig};
//! use burn::tensor::{Device, Tensor, Distribution};
//!
//! let device = Device::flex().autodiff();
//! let bn = BatchNormConfig::new(16).init(&device);
//! let x = Tensor::<4>::random([8, 16, 5, 5], Distribution::Default, &device);
//! let y = bn.forward(x); // batch statistics; running statistics updated
//! assert_eq!(bn.num_batches_tracked(), Some(1));
//!
//! let ln = LayerNormConfig::new(32).init(&device);
//! let h = ln.forward(Tensor::<3>::zeros([2, 7, 32], &device));
//! # let _ = (y, h);
//! ```

#![warn(missing_docs)]

pub mod backend;
mod batch_norm;
mod batch_renorm;
mod error;
mod fold;
pub mod functional;
mod group_norm;
mod instance_norm;
mod layer_norm;
mod normalization;
#[cfg(feature = "pytorch")]
pub mod pytorch;
mod rms_norm;
mod running_counter;
mod running_stats;
pub mod scaler;
pub mod sync;

pub use batch_norm::{BatchNorm, BatchNormConfig};
pub use batch_renorm::{BatchRenorm, BatchRenormConfig};
pub use error::NormError;
pub use fold::FoldBatchNorm;
pub use group_norm::{GroupNorm, GroupNormConfig};
pub use instance_norm::{InstanceNorm, InstanceNormConfig};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use normalization::{Normalization, NormalizationConfig};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use running_counter::RunningCounter;

/// The README's Rust snippets, compiled and run as doc tests so that they
/// cannot drift from the API.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
